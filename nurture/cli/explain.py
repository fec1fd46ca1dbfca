"""Print a contact for a person: score and stage explained, journeys and the path taken in
each (branch cases, wait_for outcomes), messages, consent.

Times are shown in the contact's time zone, named in each table's title (`--json` keeps
them in UTC).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Clock:
    """Shows stored (UTC) times in one zone, with the zone's abbreviation (CET, CEST…)."""

    def __init__(self, zone_name: str) -> None:
        self.zone = _zone(zone_name)
        self.name = self.zone.key

    def __call__(self, value: Any) -> str:
        if not isinstance(value, datetime):
            return ""
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[escape(str(v)) if v is not None else "" for v in row])
    return table


def _path(enrollment: dict[str, Any], when: Clock) -> Table:
    """The steps one enrollment took, in order."""
    rows = []
    for step in enrollment.get("steps", []):
        outcome = step["outcome"]
        if step["until"] is not None:
            outcome += f" until {when(step['until'])}"
        rows.append([when(step["at"]), step["step_id"] or "-", step["kind"], outcome,
                     step["detail"]])
    title = (f"Path in {enrollment['journey_id']} (version "
             f"{str(enrollment['journey_version'])[:8]}, {enrollment['state']}; times in "
             f"{when.name})")
    return _table(title, ["when", "step", "kind", "outcome", "detail"], rows)


def print_contact(console: Console, data: dict[str, Any]) -> None:
    c = data["contact"]
    when = Clock(c["timezone"])
    zone = f"times in {when.name}"
    console.print(f"[bold]{escape(str(c['email'] or c['phone']))}[/]  id {c['id']}  phone "
                  f"{c['phone'] or '-'}  locale {c['locale']}  tz {c['timezone']}  "
                  f"country {c['country'] or '-'}")
    console.print(f"stage [bold]{c['stage']}[/]  temperature [bold]{c['temperature']}[/]  "
                  f"score {c['score']:.1f}  fit {c['fit']:.1f}  attributes "
                  f"{escape(str(c['attributes']))}")
    console.print(_table(f"Why: every change with its rule and event ({zone})", [
        "when", "field", "change", "delta", "rule", "event", "reason"], [
        [when(x["at"]), x["field"], f"{x['old']} → {x['new']}",
         f"{x['delta']:+g}" if x["delta"] is not None else "", x["rule"], x["event_id"],
         x["reason"]] for x in data["changes"]]))
    console.print(_table(f"Journeys ({zone})", ["journey", "step", "state", "entered",
                                                "next run", "ended", "why"], [
        [e["journey_id"], e["step_id"], e["state"], when(e["entered_at"]),
         when(e["next_run_at"]), when(e["ended_at"]), e["end_reason"] or e["last_error"]]
        for e in data["enrollments"]]))
    for enrollment in data["enrollments"]:
        if enrollment.get("steps"):
            console.print(_path(enrollment, when))
    console.print(_table(f"Messages ({zone})", ["when", "channel", "template", "purpose",
                                                "state", "skip reason", "detail"], [
        [when(m["created_at"]), m["channel"], m["template"], m["purpose"], m["state"],
         m["skip_reason"], m["error"] or m["subject"]] for m in data["messages"]]))
    console.print(_table(f"Consent history ({zone})", ["when", "channel", "purpose", "action",
                                                       "basis", "source", "evidence"], [
        [when(r["recorded_at"]), r["channel"], r["purpose"], r["action"], r["legal_basis"],
         r["source"], r["evidence"]] for r in data["consent"]]))
    console.print(_table(f"Events ({zone})", ["when", "type", "source", "properties"], [
        [when(e["occurred_at"]), e["type"], e["source"], e["properties"]]
        for e in data["events"][:20]]))
