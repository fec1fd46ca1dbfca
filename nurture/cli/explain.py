"""Print a contact for a person: score and stage explained, journeys and the path taken in
each (branch cases, wait_for outcomes), messages, consent.

Times are shown in the contact's time zone, named with each time (`2026-12-02 08:30
CET`; `--json` keeps them in UTC). Tables fold long cells instead of cutting them
(`--wide` lets them run on).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from rich.markup import escape
from rich.table import Table

from nurture.cli import output
from nurture.views import score_text

#: fields whose old and new values are scores, shown one decimal like every score
_SCORES = ("score", "fit")


def _value(field: str, value: str) -> str:
    if field in _SCORES:
        try:
            return score_text(float(value))
        except ValueError:
            return value
    return value


def _pairs(values: dict[str, Any]) -> str:
    """Properties and evidence as they are given on the command line: `key=value`."""
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _delta(value: float | None) -> str:
    if value is None:
        return ""
    return ("+" if value >= 0 else "") + score_text(value)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """`output.table` whose first column is a time."""
    return output.table(title, columns, rows, times={columns[0]: output.DATE})


def _path(enrollment: dict[str, Any], zone: tzinfo) -> Table:
    """The steps one enrollment took, in order."""
    rows = []
    for step in enrollment.get("steps", []):
        outcome = step["outcome"]
        if step["until"] is not None:
            outcome += f" until {output.when(step['until'], zone)}"
        rows.append([output.when(step["at"], zone), step["step_id"] or "-", step["kind"],
                     outcome, step["detail"]])
    title = (f"Path in {enrollment['journey_id']} (version "
             f"{str(enrollment['journey_version'])[:8]}, {enrollment['state']})")
    return _table(title, ["when", "step", "kind", "outcome", "detail"], rows)


def _times(enrollment: dict[str, Any], zone: tzinfo) -> str:
    """An enrollment's times, one labelled line each."""
    times = (("entered", enrollment["entered_at"]), ("next run", enrollment["next_run_at"]),
             ("ended", enrollment["ended_at"]))
    return "\n".join(f"{label} {output.when(t, zone)}" for label, t in times if t is not None)


def _change(row: dict[str, Any]) -> str:
    field = row["field"]
    text = f"{_value(field, row['old'])} → {_value(field, row['new'])}"
    return text + (f" ({_delta(row['delta'])})" if row["delta"] is not None else "")


def _reason(row: dict[str, Any]) -> str:
    return str(row["reason"]) + (f" (event {row['event_id']})" if row["event_id"] else "")


def _state(message: dict[str, Any]) -> str:
    reason = message["skip_reason"]
    return str(message["state"]) + (f": {reason}" if reason else "")


def print_contact(data: dict[str, Any]) -> None:
    """`contact show` for people: `data` is what its `--json` prints (`ContactShown`)."""
    c = data["contact"]
    zone = output.zone_named(c["timezone"])

    def when(value: datetime | None) -> str:
        return output.when(value, zone)

    rows = [[e["journey_id"], e["state"], e["step_id"], _times(e, zone),
             e["end_reason"] or e["last_error"]] for e in data["enrollments"]]
    journeys = output.table("Journeys", ["journey", "state", "step", "times", "why"], rows,
                            times={"times": len("next run ") + output.DATE})
    items: list[Any] = [
        f"[bold]{escape(str(c['email'] or c['phone']))}[/]  id {c['id']}  phone "
        f"{escape(c['phone'] or '-')}  locale {escape(c['locale'])}  country "
        f"{escape(c['country'] or '-')}  times in {escape(c['timezone'])}",
        f"stage [bold]{c['stage']}[/]  temperature [bold]{c['temperature']}[/]  score "
        f"{score_text(c['score'])}  fit {score_text(c['fit'])}  attributes "
        f"{escape(str(c['attributes']))}",
        _table("Why: every change with its rule and event",
               ["when", "field", "change", "rule", "reason"],
               [[when(x["at"]), x["field"], _change(x), x["rule"], _reason(x)]
                for x in data["changes"]]),
        journeys,
    ]
    items += [_path(e, zone) for e in data["enrollments"] if e.get("steps")]
    items += [
        _table("Messages", ["when", "channel", "template", "purpose", "state", "detail"], [
            [when(m["created_at"]), m["channel"], m["template"], m["purpose"], _state(m),
             m["error"] or m["subject"]] for m in data["messages"]]),
        _table("Consent history", ["when", "consent", "action", "basis", "source",
                                   "evidence"], [
            [when(r["recorded_at"]), f"{r['channel']}/{r['purpose']}", r["action"],
             r["legal_basis"], r["source"], _pairs(r["evidence"])] for r in data["consent"]]),
        _table("Events", ["when", "type", "source", "properties"], [
            [when(e["occurred_at"]), e["type"], e["source"], _pairs(e["properties"])]
            for e in data["events"][:20]]),
    ]
    output.show(*items)
