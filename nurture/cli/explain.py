"""Print a contact for a person: score and stage explained, journeys, messages, consent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(v) if v is not None else "" for v in row])
    return table


def print_contact(console: Console, data: dict[str, Any]) -> None:
    c = data["contact"]
    console.print(f"[bold]{c['email'] or c['phone']}[/]  id {c['id']}  phone {c['phone'] or '-'}"
                  f"  locale {c['locale']}  tz {c['timezone']}  country {c['country'] or '-'}")
    console.print(f"stage [bold]{c['stage']}[/]  temperature [bold]{c['temperature']}[/]  "
                  f"score {c['score']:.1f}  fit {c['fit']:.1f}  attributes {c['attributes']}")
    console.print(_table("Why: every change with its rule and event", [
        "when", "field", "change", "delta", "rule", "event", "reason"], [
        [_when(x["at"]), x["field"], f"{x['old']} → {x['new']}",
         f"{x['delta']:+g}" if x["delta"] is not None else "", x["rule"], x["event_id"],
         x["reason"]] for x in data["changes"]]))
    console.print(_table("Journeys", ["journey", "step", "state", "next run", "ended", "why"], [
        [e["journey_id"], e["step_id"], e["state"], _when(e["next_run_at"]), _when(e["ended_at"]),
         e["end_reason"] or e["last_error"]] for e in data["enrollments"]]))
    console.print(_table("Messages", ["when", "channel", "template", "purpose", "state",
                                      "skip reason", "detail"], [
        [_when(m["created_at"]), m["channel"], m["template"], m["purpose"], m["state"],
         m["skip_reason"], m["error"] or m["subject"]] for m in data["messages"]]))
    console.print(_table("Consent history", ["when", "channel", "purpose", "action", "basis",
                                             "source", "evidence"], [
        [_when(r["recorded_at"]), r["channel"], r["purpose"], r["action"], r["legal_basis"],
         r["source"], r["evidence"]] for r in data["consent"]]))
    console.print(_table("Events", ["when", "type", "source", "properties"], [
        [_when(e["occurred_at"]), e["type"], e["source"], e["properties"]]
        for e in data["events"][:20]]))
