"""`nurture report` (funnels, conversions, templates; `--html` for a page with charts) and
`nurture status` (the daemon's state at a glance)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nurture.cli.common import app, console, emit, now, settings
from nurture.engine.build import build_runtime
from nurture.services import report_page
from nurture.services.report import (
    CONVERSIONS,
    Scope,
    build_report,
    parse_since,
    status_counts,
)
from nurture.store import daemons


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Contacts by stage and temperature; enrollments and messages by state; skip reasons."""
    runtime = build_runtime(settings())
    with runtime.db.reader() as conn:
        counts = status_counts(conn)
        beats = daemons.beats(conn)
    data: dict[str, Any] = {**counts, "daemons": [
        {"worker": b["worker"], "started_at": b["started_at"].isoformat(),
         "last_tick_at": b["last_tick_at"].isoformat(), "last_tick": b["last_report"]}
        for b in beats]}
    if emit(data, as_json):
        return
    for section, found in counts.items():
        _print(section, ["value", "count"], [[key, count] for key, count in found.items()])
    here = now().astimezone()  # operational times: the operator's own zone, named
    _print("daemons", ["worker", "last tick", "sent", "skipped"], [
        [b["worker"], b["last_tick_at"].astimezone(here.tzinfo).strftime("%Y-%m-%d %H:%M:%S %Z"),
         b["last_report"].get("sent", 0), sum((b["last_report"].get("skipped") or {}).values())]
        for b in beats] or [["none yet", "", "", ""]])


@app.command()
def report(
    since: Annotated[str | None, typer.Option(
        help="Only messages, enrollments and stage moves since this date (YYYY-MM-DD, UTC) "
             "or ISO time.")] = None,
    journey: Annotated[str | None, typer.Option(help="Only this journey (its id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    html: Annotated[Path | None, typer.Option(
        help="Also write a self-contained HTML page with charts to this file.")] = None,
) -> None:
    """Per journey and step: entered, sent, delivered, opened, clicked, replied,
    unsubscribed, bounced, skipped by reason, goal reached; per template; stages,
    temperatures, conversions per week and the median time to qualify."""
    runtime = build_runtime(settings())
    scope = Scope(since=parse_since(since) if since else None, journey=journey)
    with runtime.db.reader() as conn:
        data = build_report(conn, runtime.journeys, now(), scope)
    if html is not None:
        html.write_text(report_page.render(data), encoding="utf-8")
        if not as_json:
            typer.echo(f"wrote {html}")
    if emit(data, as_json):
        return
    _print_report(data)


#: the step figures a terminal shows, with short headers (`--json` and `--html` have all)
_SHORT = {"sent": "sent", "delivered": "deliv", "opened": "open", "clicked": "click",
          "replied": "reply", "unsubscribed": "unsub", "bounced": "bounce", "skipped": "skip"}


def _print(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
           caption: str | None = None) -> None:
    table = Table(title=title, caption=caption)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def _reasons(found: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(found.items()))


def _print_report(data: Mapping[str, Any]) -> None:
    for key, title in (("by_stage", "contacts by stage"),
                       ("by_temperature", "contacts by temperature")):
        _print(title, ["value", "count"], list(data["contacts"][key].items()))
    conv = data["conversions"]
    _print(f"conversions per week (median time to qualify: "
           f"{conv['median_days_to_qualify']} days over {conv['qualified']} contacts)",
           ["week of", "new", *CONVERSIONS, "median days"],
           [[w["week"], w["new_contacts"], *(w[s] for s in CONVERSIONS),
             w["median_days_to_qualify"]] for w in conv["weeks"]])
    for journey in data["journeys"]:
        funnel = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in journey["funnel"].items())
        skipped = "; ".join(f"{s['step']}: {_reasons(s['skipped_by_reason'])}"
                            for s in journey["steps"] if s["skipped_by_reason"])
        _print(f"{journey['id']}: {funnel}", ["step", "in", *_SHORT.values(), "goal", "here"],
               [[s["step"], s["entered"], *(s[n] for n in _SHORT), s["goal_reached"],
                 s["here_now"]] for s in journey["steps"]],
               caption=f"skipped: {skipped}" if skipped else None)
    keys = [k for k in ("channel", "template", "variant")
            if data["templates"] and k in data["templates"][0]]
    _print("templates", [*keys[1:], "contacts", *_SHORT.values()],
           [[*(t[k] for k in keys[1:]), t["contacts"], *(t[n] for n in _SHORT)]
            for t in data["templates"]])
    _print("skipped by reason", ["reason", "count"], list(data["skipped_by_reason"].items()))
