"""`nurture simulate`: what the journeys would do over the next days, without sending."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import app, now, settings
from nurture.errors import NurtureError
from nurture.services import simulate as service


class Moment(output.Shape):
    """One line of a contact's timeline."""

    at: datetime
    what: str = Field(description="what happened: email sent, entered journey, skipped…")
    detail: str


class SimulatedContact(output.Shape):
    """A simulated contact and what would happen to it."""

    id: int
    email: str
    timezone: str = Field(description="the contact's IANA zone (people see times in it)")
    timeline: list[Moment] = Field(description="in time order")


@output.shape("simulate")
class SimulateShape(output.Shape):
    """`nurture simulate --json`: each simulated contact's timeline; nothing was sent."""

    start: datetime
    end: datetime
    ticks: int = Field(description="ticks the simulated clock ran")
    contacts: list[SimulatedContact]


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
    as_json: output.AsJson = False,
    wide: output.Wide = False,
) -> None:
    """Dry run: the real journeys, gates, scoring and windows over a copy of the chosen
    contacts with a simulated clock. Nothing is sent or stored.

    Example: nurture simulate --days 21 --contact camille@example.com --events week.jsonl
    """
    began = _start(start)
    script = service.read_script(events, began) if events else []
    result = service.simulate(settings(), days=days, start=began, emails=contact or (),
                              sample=sample, script=script, use_files=not applied, seed=seed)
    if output.emit("simulate", result.as_json(), as_json):
        return
    items: list[object] = []
    for _, (email, zone, moments) in sorted(result.timelines.items()):
        tz = output.zone_named(zone)  # contact-facing: the contact's own zone, named
        rows = [[output.when(m.at, tz), m.what, m.detail] for m in moments] or [
            ["", "nothing", "no journey does anything for this contact"]]
        items.append(output.table(f"{email} ({zone})", ["when", "what", "detail"], rows,
                                  times={"when": output.DATE}))
    items.append(f"{len(result.timelines)} contact(s), {days} day(s) from "
                 f"{output.when(began, output.operator_zone())}, {result.ticks} tick(s); "
                 "nothing was sent or stored.")
    output.show(*items)


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
