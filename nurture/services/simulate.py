"""`nurture simulate`: the real engine on a copy of chosen contacts under a simulated clock.

The chosen contacts (with their consent, enrollments, events, messages and changes), the
suppression list and the applied journeys are copied into a scratch SQLite file; the
daemon's own `tick` then runs there, its clock jumping from one due moment to the next
(an enrollment's next step, a retry, a decay, a re-evaluation, a scripted event), with
in-memory providers and no sales webhook. Nothing is written to the real store, outbox
or providers. What happened is read back from the copy as each contact's timeline.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.config.settings import Settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ContactError, NurtureError
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.memory import MemoryProvider
from nurture.services import journeys
from nurture.store import maturity as ms
from nurture.store import schema
from nurture.store import simulation as sim_store
from nurture.store.database import Database

#: a run stops here rather than loop for ever on a journey that keeps itself busy
MAX_TICKS = 100_000


@dataclass(frozen=True)
class ScriptedEvent:
    """"Opens on day 2 at 10:00": an event the script makes a contact do."""

    email: str
    at: datetime
    type: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Moment:
    """One line of a contact's timeline."""

    at: datetime
    what: str
    detail: str


@dataclass
class Simulation:
    start: datetime
    end: datetime
    ticks: int
    #: contact id → (email, time zone, timeline in time order)
    timelines: dict[int, tuple[str, str, list[Moment]]]

    def as_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "ticks": self.ticks, "contacts": [
                    {"id": cid, "email": email, "timezone": zone,
                     "timeline": [{"at": m.at.isoformat(), "what": m.what, "detail": m.detail}
                                  for m in moments]}
                    for cid, (email, zone, moments) in sorted(self.timelines.items())]}


def read_script(path: Path, start: datetime) -> list[ScriptedEvent]:
    """JSON lines: {"contact": EMAIL, "day": 2, "time": "10:00", "type": "email.opened",
    "properties": {...}} — day 0 is the start day (UTC), time defaults to the start's."""
    found: list[ScriptedEvent] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            hour, _, minute = str(item.get("time") or start.strftime("%H:%M")).partition(":")
            day = start.replace(hour=int(hour), minute=int(minute or 0), second=0,
                                microsecond=0) + timedelta(days=int(item.get("day", 0)))
            found.append(ScriptedEvent(str(item["contact"]).lower(), day, str(item["type"]),
                                       dict(item.get("properties") or {})))
        except (ValueError, KeyError, TypeError) as e:
            raise NurtureError(f"{path}:{number}: not a scripted event ({e})") from e
    return sorted(found, key=lambda e: e.at)


def simulate(settings: Settings, *, days: int, start: datetime,
             emails: Sequence[str] = (), sample: int | None = None,
             script: Sequence[ScriptedEvent] = (), use_files: bool = True,
             seed: int = 0) -> Simulation:
    """Run `days` of the engine over a copy; `use_files` runs the journey files as if
    applied (what `apply` would do), otherwise the versions applied in the store."""
    source = Database(settings.database_url)
    schema.require_current(source)
    with tempfile.TemporaryDirectory(prefix="nurture-simulate-") as scratch:
        copy = Database(f"sqlite:///{Path(scratch) / 'simulation.db'}")
        schema.upgrade(copy)
        with source.reader() as conn:
            ids = _chosen(conn, emails, sample, seed)
            with copy.begin() as target:
                sim_store.copy_contacts(conn, target, ids)
        source.dispose()
        rt = build_runtime(_scratch_settings(settings, Path(scratch)), database=copy,
                           providers={"email": MemoryProvider(), "sms": MemoryProvider()})
        if use_files:
            files, _, _ = journeys.read_files(rt)
            journeys.apply_files(rt, files, start, remove_live=True)
        ticks = run_clock(rt, start, start + timedelta(days=days), script)
        with copy.reader() as conn:
            timelines = sim_store.timelines(conn, ids, start)
        copy.dispose()
    return Simulation(start, start + timedelta(days=days), ticks, {
        cid: (email, zone, [Moment(*m) for m in moments])
        for cid, (email, zone, moments) in timelines.items()})


def _chosen(conn: Any, emails: Sequence[str], sample: int | None, seed: int) -> list[int]:
    if emails:
        found = ms.contact_ids_by_email(conn, [e.lower() for e in emails])
        missing = sorted({e.lower() for e in emails} - set(found))
        if missing:
            raise ContactError(f"no contact {', '.join(missing)}")
        return sorted(found.values())
    ids = sim_store.all_contact_ids(conn)
    if sample is not None and sample < len(ids):
        ids = sorted(random.Random(seed).sample(ids, sample))
    return ids


def _scratch_settings(settings: Settings, scratch: Path) -> Settings:
    """The project's settings pointed at the copy; no message or webhook leaves it."""
    return settings.model_copy(update={
        "database_url": f"sqlite:///{scratch / 'simulation.db'}",
        "providers": settings.providers.model_copy(update={"outbox_dir": str(scratch / "out")}),
        "handoff": settings.handoff.model_copy(update={"webhook_url": ""}),
    })


def run_clock(rt: Runtime, start: datetime, end: datetime,
              script: Sequence[ScriptedEvent] = ()) -> int:
    """Tick at `start`, then at every moment something is due, until `end`."""
    pending = list(script)
    now, ticks = start, 0
    while now <= end and ticks < MAX_TICKS:
        while pending and pending[0].at <= now:
            play(rt, pending.pop(0), now)
        tick(rt, now)
        ticks += 1
        with rt.db.reader() as conn:
            due = sim_store.next_due(conn, now)
        upcoming = [t for t in (due, pending[0].at if pending else None) if t is not None]
        if not upcoming:
            break
        now = max(min(upcoming), now + timedelta(seconds=1))
    return ticks


def play(rt: Runtime, event: ScriptedEvent, now: datetime) -> None:
    """A scripted event happens (as a webhook or the events API would tell it)."""
    with rt.db.begin() as conn:
        found = ms.contact_ids_by_email(conn, [event.email])
        if event.email not in found:
            raise ContactError(f"scripted event for {event.email}: not among the simulated "
                               "contacts")
        ingest(conn, rt, IncomingEvent(event.type, "simulation", event.at,
                                       contact_id=found[event.email],
                                       properties=event.properties), now)

