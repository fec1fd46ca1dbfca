"""`nurture report` (funnels, conversions, templates; `--html` for a page with charts) and
`nurture status` (the daemon's state at a glance)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import app, now, settings
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

# ---- shapes ----------------------------------------------------------------------------


class TickCounts(output.Shape):
    """What one tick did (`run --once`, and each daemon's last tick in `status`)."""

    entered: int = Field(0, description="enrollments that entered a journey")
    processed: int = Field(0, description="enrollment steps run")
    sent: int = Field(0, description="messages the providers accepted")
    deferred: int = Field(0, description="sends deferred to a send window")
    failed: int = Field(0, description="enrollments whose step failed")
    blocked: int = Field(0, description="enrollments blocked at their step (see retry)")
    unknown: int = Field(0, description="sends whose outcome is not known (not retried)")
    retried: int = Field(0, description="message retries attempted")
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="skipped messages by reason")
    messages_failed: dict[str, int] = Field(default_factory=dict,
                                            description="messages failed for good, by cause")
    messages_retrying: dict[str, int] = Field(default_factory=dict,
                                              description="messages to retry later, by cause")


class DaemonRow(output.Shape):
    """A daemon's heartbeat."""

    worker: str = Field(description="host:pid")
    started_at: datetime
    last_tick_at: datetime
    last_tick: TickCounts


@output.shape("status")
class StatusShape(output.Shape):
    """`nurture status --json`: counts by state, and each daemon's last tick."""

    contacts_by_stage: dict[str, int]
    contacts_by_temperature: dict[str, int]
    enrollments: dict[str, dict[str, int]] = Field(
        description="journey id → enrollment state → count")
    messages_by_state: dict[str, int]
    skipped_by_reason: dict[str, int] = Field(description="skipped messages by reason")
    daemons: list[DaemonRow] = Field(description="latest tick first")


class Funnel(output.Shape):
    """Enrollments of a journey reaching each stage."""

    entered: int
    sent: int
    opened: int
    clicked: int
    replied: int
    goal_reached: int


class StepReport(output.Shape):
    """One step's figures; message figures are null on steps that do not send."""

    step: str
    type: str = Field(description="the step's type, or 'removed' (no applied version has it)")
    channel: str | None
    template: str | None = Field(description="its template(s), comma-separated")
    entered: int
    messages: int | None
    sent: int | None
    delivered: int | None
    opened: int | None
    clicked: int | None
    replied: int | None
    unsubscribed: int | None
    bounced: int | None
    failed: int | None
    skipped: int | None
    skipped_by_reason: dict[str, int]
    goal_reached: int
    here_now: int = Field(description="live enrollments standing at this step")


class JourneyReport(output.Shape):
    """One journey: its funnel, live and ended enrollments, and its steps in file order."""

    id: str
    name: str
    applied: bool = Field(description="false: only its history is left in the database")
    funnel: Funnel
    live: int = Field(description="live enrollments")
    ended: dict[str, int] = Field(description="ended enrollments by end reason")
    steps: list[StepReport]


class TemplateReport(output.Shape):
    """A template (and variant)'s message figures."""

    channel: str
    template: str
    variant: str | None = None
    contacts: int = Field(description="distinct contacts reached (the sample size)")
    messages: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int
    unsubscribed: int
    bounced: int
    failed: int
    skipped: int
    goal_reached: int = Field(description="enrollments it was part of that reached the goal")


class Week(output.Shape):
    """One week of conversions (weeks without moves are there, with zeros)."""

    week: date = Field(description="the Monday starting the week")
    new_contacts: int
    prospect: int = Field(description="contacts that became prospects that week")
    customer: int = Field(description="contacts that became customers that week")
    median_days_to_qualify: float | None


class Conversions(output.Shape):
    """Stage moves per week and the median time from lead to prospect."""

    weeks: list[Week]
    qualified: int
    median_days_to_qualify: float | None


class ContactCounts(output.Shape):
    """Today's contacts by stage and by temperature."""

    by_stage: dict[str, int]
    by_temperature: dict[str, int]


@output.shape("report")
class ReportShape(output.Shape):
    """`nurture report --json`: funnels, steps, templates, conversions."""

    generated_at: datetime
    since: datetime | None = Field(description="the scope's start (null: everything)")
    journey: str | None = Field(description="the one journey reported (null: all)")
    contacts: ContactCounts = Field(description="today's contacts (whatever --since says)")
    conversions: Conversions
    journeys: list[JourneyReport]
    templates: list[TemplateReport]
    skipped_by_reason: dict[str, int]


# ---- commands --------------------------------------------------------------------------


def _enrollments(found: Mapping[str, int]) -> dict[str, dict[str, int]]:
    by_journey: dict[str, dict[str, int]] = {}
    for key, count in found.items():
        journey, _, state = key.rpartition("/")
        by_journey.setdefault(journey, {})[state] = count
    return by_journey


@app.command()
def status(as_json: output.AsJson = False, wide: output.Wide = False) -> None:
    """Contacts by stage and temperature; enrollments and messages by state; skip reasons;
    each daemon's last tick (in your time zone)."""
    runtime = build_runtime(settings())
    with runtime.db.reader() as conn:
        counts = status_counts(conn)
        beats = daemons.beats(conn)
    data = {
        "contacts_by_stage": counts["contacts by stage"],
        "contacts_by_temperature": counts["contacts by temperature"],
        "enrollments": _enrollments(counts["enrollments by journey/state"]),
        "messages_by_state": counts["messages by state"],
        "skipped_by_reason": counts["skipped by reason"],
        "daemons": [{"worker": b["worker"], "started_at": b["started_at"],
                     "last_tick_at": b["last_tick_at"], "last_tick": b["last_report"]}
                    for b in beats]}
    if output.emit("status", data, as_json):
        return
    items: list[Any] = [
        _table(section, ["value", "count"], [[key, count] for key, count in found.items()])
        for section, found in counts.items()]
    zone = output.operator_zone()  # operational times: the operator's own zone, named
    items.append(_table("daemons", ["worker", "last tick", "sent", "skipped"], [
        [b["worker"], output.when(b["last_tick_at"], zone, seconds=True),
         b["last_report"].get("sent", 0), sum((b["last_report"].get("skipped") or {}).values())]
        for b in beats] or [["none yet", "", "", ""]], text=2, times={"last tick": output.DATE}))
    output.show(*items)


@app.command()
def report(
    since: Annotated[str | None, typer.Option(
        metavar="DATE", help="Only messages, enrollments and stage moves since this date "
        "(YYYY-MM-DD, UTC) or ISO time.")] = None,
    journey: Annotated[str | None, typer.Option(
        metavar="JOURNEY", help="Only this journey (its id).")] = None,
    as_json: output.AsJson = False,
    html: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Also write a self-contained HTML page with charts to this "
        "file.")] = None,
    wide: output.Wide = False,
) -> None:
    """Per journey and step: entered, sent, delivered, opened, clicked, replied,
    unsubscribed, bounced, skipped by reason, goal reached; per template; stages,
    temperatures, conversions per week and the median time to qualify.

    Example: nurture report --since 2026-12-01 --journey cold-education --html report.html
    """
    runtime = build_runtime(settings())
    scope = Scope(since=parse_since(since) if since else None, journey=journey)
    with runtime.db.reader() as conn:
        data = build_report(conn, runtime.journeys, now(), scope)
    if html is not None:
        html.write_text(report_page.render(data), encoding="utf-8")
        if not as_json:
            typer.echo(f"wrote {html}")
    if output.emit("report", data, as_json):
        return
    output.show(*_report_tables(data))


#: the step figures a terminal shows, with short headers (`--json` and `--html` have all)
_SHORT = {"sent": "sent", "delivered": "deliv", "opened": "open", "clicked": "click",
          "replied": "reply", "unsubscribed": "unsub", "bounced": "bounce", "skipped": "skip"}


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
           caption: str | None = None, text: int = 1,
           times: Mapping[str, int] | None = None) -> Any:
    """Counts right-aligned: every column after the first `text` ones."""
    return output.table(title, headers, rows, right=headers[text:], caption=caption,
                        times=times)


def _reasons(found: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(found.items()))


def _report_tables(data: Mapping[str, Any]) -> list[Any]:
    tables = [_table(title, ["value", "count"], list(data["contacts"][key].items()))
              for key, title in (("by_stage", "contacts by stage"),
                                 ("by_temperature", "contacts by temperature"))]
    conv = data["conversions"]
    tables.append(_table(
        f"conversions per week (median time to qualify: {conv['median_days_to_qualify']} "
        f"days over {conv['qualified']} contacts)",
        ["week of", "new", *CONVERSIONS, "median days"],
        [[w["week"], w["new_contacts"], *(w[s] for s in CONVERSIONS),
          w["median_days_to_qualify"]] for w in conv["weeks"]]))
    for journey in data["journeys"]:
        funnel = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in journey["funnel"].items())
        skipped = "; ".join(f"{s['step']}: {_reasons(s['skipped_by_reason'])}"
                            for s in journey["steps"] if s["skipped_by_reason"])
        tables.append(_table(
            f"{journey['id']}: {funnel}", ["step", "in", *_SHORT.values(), "goal", "here"],
            [[s["step"], s["entered"], *(s[n] for n in _SHORT), s["goal_reached"],
              s["here_now"]] for s in journey["steps"]],
            caption=f"skipped: {skipped}" if skipped else None))
    keys = [k for k in ("channel", "template", "variant")
            if data["templates"] and k in data["templates"][0]]
    tables.append(_table("templates", [*keys[1:], "contacts", *_SHORT.values()],
                         [[*(t[k] for k in keys[1:]), t["contacts"], *(t[n] for n in _SHORT)]
                          for t in data["templates"]], text=len(keys[1:])))
    tables.append(_table("skipped by reason", ["reason", "count"],
                         list(data["skipped_by_reason"].items())))
    return tables
