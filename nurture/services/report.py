"""What `nurture report`, `/admin/report` and `nurture status` show, as plain data.

The database counts (`store.reports`, GROUP BY); this module only puts the counts
side by side: journeys' steps in file order, weeks without moves filled with zeros,
seconds as days. Scope: `--since` keeps messages recorded, enrollments entered and
stage moves made since that time (the per-journey funnel follows the enrollments that
entered since then, with all their messages); contacts by stage and temperature are
always today's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.journey import SendStep
from nurture.authoring.loader import LoadedJourney
from nurture.errors import NurtureError
from nurture.store import reports
from nurture.store.reports import FUNNEL, MESSAGE_FIGURES, Scope
from nurture.vocab import Stage

__all__ = ["FUNNEL", "MESSAGE_FIGURES", "Scope", "build_report", "parse_since",
           "status_counts"]

#: the stage moves counted per week, in funnel order
CONVERSIONS = (Stage.PROSPECT.value, Stage.CUSTOMER.value)
STEP_KEYS = ("journey_id", "step_id")
DAY = 86400.0


def status_counts(conn: Connection) -> dict[str, dict[str, int]]:
    return reports.status_counts(conn)


def parse_since(text: str) -> datetime:
    """`2026-03-01` (midnight UTC) or an ISO 8601 time (UTC unless it names a zone)."""
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise NurtureError(f"--since {text!r} is not a date (YYYY-MM-DD) or an ISO time") from e
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def build_report(conn: Connection, journeys: Mapping[str, LoadedJourney], now: datetime,
                 scope: Scope) -> dict[str, Any]:
    """Everything the report shows, JSON-ready."""
    funnels = {row["journey_id"]: row for row in reports.funnels(conn, scope)}
    if scope.journey is not None and scope.journey not in {*journeys, *funnels}:
        raise NurtureError(f"no journey {scope.journey!r} (neither applied nor in the database)")
    by_reason = _reasons(reports.skip_reasons(conn, (), scope))
    figures = reports.message_figures(conn, {"steps": STEP_KEYS,
                                             "templates": reports.template_keys()}, scope)
    return {
        "generated_at": now.isoformat(),
        "since": scope.since.isoformat() if scope.since else None,
        "journey": scope.journey,
        "contacts": {"by_stage": reports.contacts_by(conn, "stage"),
                     "by_temperature": reports.contacts_by(conn, "temperature")},
        "conversions": _conversions(conn, scope.since),
        "journeys": _journeys(conn, journeys, funnels, figures["steps"], scope),
        "templates": _templates(conn, figures["templates"], scope),
        "skipped_by_reason": by_reason.get((), {}),
    }


def _templates(conn: Connection, rows: Iterable[Mapping[str, Any]],
               scope: Scope) -> list[dict[str, Any]]:
    """Per template and variant: its message figures, `contacts` reached (the sample size)
    and the enrollments it was part of that reached their goal."""
    keys = reports.template_keys()
    goals = _counts(reports.goals_by(conn, keys, scope))
    return [{k: row[k] for k in keys} | _figures(row)
            | {"goal_reached": goals.get(tuple(row[k] for k in keys), 0)} for row in rows]


def _figures(row: Mapping[str, Any]) -> dict[str, int]:
    return {name: int(row[name]) for name in ("contacts", *MESSAGE_FIGURES)}


def _reasons(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], dict[str, int]]:
    """Skip-reason rows → {the row's other columns: {reason: count}}."""
    found: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    for row in rows:
        key = tuple(v for k, v in row.items() if k not in ("skip_reason", "count"))
        found[key][str(row["skip_reason"])] = int(row["count"])
    return found


def _counts(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], int]:
    return {tuple(v for k, v in row.items() if k != "count"): int(row["count"]) for row in rows}


def _journeys(conn: Connection, journeys: Mapping[str, LoadedJourney],
              funnels: Mapping[str, Mapping[str, Any]], figures: Iterable[Mapping[str, Any]],
              scope: Scope) -> list[dict[str, Any]]:
    keys = STEP_KEYS
    steps = {(r["journey_id"], r["step_id"]): r for r in figures}
    skipped = _reasons(reports.skip_reasons(conn, keys, scope))
    entries = reports.step_entries(conn, scope)
    goal = _counts(reports.enrollments_by(conn, keys, scope, end_reason=reports.GOAL_REACHED))
    here = _counts(reports.enrollments_by(conn, keys, scope, live=True))
    live = _counts(reports.enrollments_by(conn, ("journey_id",), scope, live=True))
    ended: dict[str, dict[str, int]] = defaultdict(dict)
    for row in reports.enrollments_by(conn, ("journey_id", "end_reason"), scope, live=False):
        ended[row["journey_id"]][row["end_reason"] or "ended"] = int(row["count"])
    ids = [j for j in sorted(journeys) if scope.journey in (None, j)]
    ids += sorted(({j for j, _ in steps} | set(funnels)) - set(ids))
    found = []
    for jid in ids:
        loaded = journeys.get(jid)
        seen = [s.id for s in loaded.journey.steps] if loaded else []
        seen += sorted({s for j, s in (*steps, *entries, *goal, *here) if j == jid and s}
                       - set(seen))
        rows = [_step(loaded, sid, steps.get((jid, sid)), entries.get((jid, sid), 0),
                      skipped.get((jid, sid), {}), goal.get((jid, sid), 0),
                      here.get((jid, sid), 0)) for sid in seen]
        funnel = funnels.get(jid, {})
        found.append({"id": jid, "name": loaded.journey.name if loaded else jid,
                      "applied": loaded is not None,
                      "funnel": {stage: int(funnel.get(stage, 0)) for stage in FUNNEL},
                      "live": live.get((jid,), 0), "ended": ended.get(jid, {}),
                      "steps": rows})
    return found


def _step(loaded: LoadedJourney | None, sid: str, figures: Mapping[str, Any] | None,
          entered: int, skipped: dict[str, int], goal: int, here: int) -> dict[str, Any]:
    step = loaded.steps.get(sid) if loaded else None
    row: dict[str, Any] = {"step": sid, "type": step.type if step else "removed",
                           "channel": None, "template": None}
    if isinstance(step, SendStep):
        row.update(channel=step.channel, template=", ".join(step.templates))
    # entered: the path trace, or the messages where the trace is younger than them
    row["entered"] = max(entered, int(figures["enrollments"]) if figures else 0)
    sends = figures is not None or isinstance(step, SendStep)
    row.update({name: int(figures[name]) if figures else 0 if sends else None
                for name in MESSAGE_FIGURES})
    row.update(skipped_by_reason=skipped, goal_reached=goal, here_now=here)
    return row


def _conversions(conn: Connection, since: datetime | None) -> dict[str, Any]:
    moves = reports.stage_moves_per_week(conn, CONVERSIONS, since)
    new = reports.new_contacts_per_week(conn, since)
    medians = reports.median_time_to_qualify(conn, since, per_week=True)
    overall = reports.median_time_to_qualify(conn, since, per_week=False).get(None)
    counted: dict[str, dict[str, int]] = defaultdict(dict)
    for row in moves:
        counted[row["week"]][row["stage"]] = int(row["count"])
    weeks = []
    for week in _weeks({*counted, *new}):
        median = medians.get(week)
        weeks.append({"week": week, "new_contacts": new.get(week, 0),
                      **{stage: counted[week].get(stage, 0) for stage in CONVERSIONS},
                      "median_days_to_qualify": round(median[1] / DAY, 2) if median else None})
    return {"weeks": weeks, "qualified": overall[0] if overall else 0,
            "median_days_to_qualify": round(overall[1] / DAY, 2) if overall else None}


def _weeks(found: Iterable[str]) -> list[str]:
    """Every Monday from the first week found to the last (charts show empty weeks)."""
    mondays = sorted(date.fromisoformat(w) for w in found)
    if not mondays:
        return []
    count = (mondays[-1] - mondays[0]).days // 7 + 1
    return [(mondays[0] + timedelta(weeks=i)).isoformat() for i in range(count)]
