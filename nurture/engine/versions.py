"""The journeys the engine runs: the applied versions kept in the database, never the files.

`nurture apply` records a journey file's content as a version (`journeyversion`, with its
source) and makes it current (`journeystate`). New entries take the current version; an
enrollment runs the version it entered until a newer one maps its step (`migrate`).
A daemon reloads when the generation counter moved (an apply, a pause, a resume):
an edited file that was not applied never reaches it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection

from nurture.authoring.loader import LoadedJourney, parse_journey
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError
from nurture.store import journeys as applied


def parse_version(journey_id: str, version: str, path: str, source: str) -> LoadedJourney:
    """An applied version from its stored source (it was valid when applied)."""
    loaded, problems = parse_journey(Path(path or f"{journey_id}.yaml"), source)
    if loaded is None or loaded.id != journey_id:
        detail = "; ".join(str(p) for p in problems) or "another journey id"
        raise NurtureError(f"applied version {version} of journey {journey_id!r} does not "
                           f"load: {detail}")
    return loaded


def load(rt: Runtime, conn: Connection) -> None:
    """Put the current applied journeys, the paused ones and the generation on `rt`."""
    generation = applied.generation(conn)
    rows = applied.current_sources(conn)
    current = {row["journey_id"]: parse_version(row["journey_id"], row["version"], row["path"],
                                                row["source"]) for row in rows}
    rt.journeys = current
    rt.versions.update({(j.id, j.version): j for j in current.values()})
    rt.paused = frozenset(row["journey_id"] for row in rows if row["paused"])
    rt.generation = generation


def refresh(rt: Runtime, conn: Connection) -> bool:
    """Reload when something was applied, paused or resumed since `rt` was loaded."""
    if applied.generation(conn) == rt.generation:
        return False
    load(rt, conn)
    return True


def version_of(rt: Runtime, conn: Connection, journey_id: str,
               version: str) -> LoadedJourney | None:
    """The version an enrollment runs: the one it entered, loaded once; an enrollment
    made before versions were recorded runs the current one. None: not applied."""
    key = (journey_id, version)
    if key not in rt.versions:
        row = applied.version_source(conn, journey_id, version)
        if row is None:
            return rt.journeys.get(journey_id)
        rt.versions[key] = parse_version(journey_id, version, row["path"], row["source"])
    return rt.versions[key]


def anything_applied(conn: Connection) -> bool:
    return bool(applied.journey_states(conn))
