"""`nurture simulate`: what the journeys would do over the next days, without sending."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nurture.cli.common import app, console, emit, now, settings
from nurture.errors import NurtureError
from nurture.services import simulate as service


@app.command("simulate")
def simulate(
    days: Annotated[int, typer.Option("--days", min=1, max=366,
                                      help="How many days to simulate.")] = 14,
    contact: Annotated[list[str] | None, typer.Option(
        "--contact", metavar="EMAIL", help="A contact to simulate (repeatable; default: all).")
    ] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", metavar="K", min=1, help="Simulate K contacts drawn at random.")] = None,
    events: Annotated[Path | None, typer.Option(
        "--events", metavar="FILE", help="JSON lines of scripted events: "
        '{"contact": EMAIL, "day": 2, "time": "10:00", "type": "email.opened"}.')] = None,
    applied: Annotated[bool, typer.Option(
        "--applied", help="Run the applied journey versions instead of the files.")] = False,
    start: Annotated[str | None, typer.Option(
        "--start", metavar="TIME", help="Simulated start, ISO 8601 with a zone (default: now).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --sample's draw.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (times in UTC).")] = False,
) -> None:
    """Dry run: the real journeys, gates, scoring and windows over a copy of the chosen
    contacts with a simulated clock. Nothing is sent or stored.

    Example: nurture simulate --days 21 --contact camille@example.com --events week.jsonl
    """
    began = _start(start)
    script = service.read_script(events, began) if events else []
    result = service.simulate(settings(), days=days, start=began, emails=contact or (),
                              sample=sample, script=script, use_files=not applied, seed=seed)
    if emit(result.as_json(), as_json):
        return
    for heading, lines in service.iter_lines(result):
        table = Table(title=heading, title_justify="left", show_lines=False, expand=False)
        table.add_column("when", no_wrap=True)
        table.add_column("what", no_wrap=True)
        table.add_column("detail", overflow="fold")
        for when, what, detail in lines:
            table.add_row(when, escape(what), escape(detail))
        if not lines:
            table.add_row("", "nothing", "no journey does anything for this contact")
        console.print(table)
    console.print(f"{len(result.timelines)} contact(s), {days} day(s) from "
                  f"{began.isoformat(timespec='minutes')}, {result.ticks} tick(s); nothing "
                  "was sent or stored.")


def _start(text: str | None) -> datetime:
    if text is None:
        return now()
    try:
        found = datetime.fromisoformat(text)
    except ValueError as e:
        raise NurtureError(f"--start {text!r} is not an ISO 8601 time") from e
    if found.tzinfo is None:
        raise NurtureError(f"--start {text!r} needs a time zone (e.g. +01:00 or Z)")
    return found
