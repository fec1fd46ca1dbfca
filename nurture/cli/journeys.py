"""Journey versions and operators: `plan`, `apply`, `journey pause|resume`, `retry`,
`enroll`, `unenroll`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ConfigDict, Field

from nurture.cli import output
from nurture.cli.common import STATE, app, now, settings
from nurture.config.settings import find_config, load_settings
from nurture.engine import versions
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError
from nurture.services import journeys as service

journey_app = typer.Typer(help="Pause or resume an applied journey.", no_args_is_help=True)
app.add_typer(journey_app, name="journey")

JourneyId = Annotated[str, typer.Argument(metavar="JOURNEY", help="a journey id")]
Who = Annotated[str, typer.Argument(metavar="CONTACT", help="email, E.164 phone or contact id")]


def require_applied(runtime: Runtime) -> Runtime:
    """`nurture run` refuses to start before anything was applied (exit 3: not ready)."""
    with runtime.db.reader() as conn:
        ready = versions.anything_applied(conn)
    if not ready:
        typer.echo("error: no journey is applied yet: run `nurture plan`, then "
                   "`nurture apply`", err=True)
        raise typer.Exit(3)
    return runtime


def apply_new_project(config: Path) -> int:
    """`nurture init`: the new project's journeys are applied, so `run` just works.
    Returns how many."""
    runtime = build_runtime(load_settings(config))
    try:
        return len(service.apply_project(runtime, config, now()).versions)
    finally:
        runtime.db.dispose()


def _short(version: str | None) -> str:
    return version[:8] if version else "-"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if value is not None else "(none)"


# ---- shapes ----------------------------------------------------------------------------


class StepChanges(output.Shape):
    """Step ids by what the new version does to them."""

    added: list[str]
    removed: list[str]
    changed: list[str]


class SettingChange(output.Shape):
    """One setting of the journey (entry, exit or other), before and after."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    key: str = Field(description="dotted path of the setting, e.g. entry.when")
    before: Any = Field(alias="from", description="the applied value (null: none)")
    after: Any = Field(alias="to", description="the file's value (null: none)")


class ContactsOnRemovedStep(output.Shape):
    """Live contacts on a step the new version removes, and where they would go."""

    step: str = Field(description="a step the new version removes")
    contacts: int = Field(description="live contacts standing there")
    migrate_to: str | None = Field(description="where `migrate` moves them (null: nowhere, "
                                   "apply refuses)")


class JourneyPlanRow(output.Shape):
    """What applying one journey file would change, and whom it concerns."""

    journey: str
    status: Literal["added", "removed", "changed", "unchanged"]
    applied_version: str | None = Field(description="the version the daemon runs now")
    file_version: str | None = Field(description="the version in journeys/ (null: removed)")
    steps: StepChanges
    entry: list[SettingChange]
    exit: list[SettingChange]
    other: list[SettingChange]
    contacts_on_removed_steps: list[ContactsOnRemovedStep]
    waiting_on_changed_waits: dict[str, int] = Field(
        description="changed wait step → live contacts waiting in it (they finish that wait)")
    newly_entering: int | None = Field(
        description="contacts a sweep of the entry would enroll (null: not counted)")
    live_contacts: int
    blocked: int = Field(description="blocked enrollments apply resumes at their step")


@output.shape("plan")
class PlanShape(output.Shape):
    """`nurture plan --json`: what `apply` would do; nothing changes."""

    journeys: list[JourneyPlanRow]
    problems: list[str] = Field(description="what `validate` found (errors stop apply)")
    unreadable: list[str] = Field(description="journey files that do not load")
    refusals: list[str] = Field(description="why apply would refuse (empty: it would go "
                                "ahead)")
    blocked: int = Field(description="blocked enrollments apply would resume")


class AppliedJourney(output.Shape):
    """One journey file after `apply`."""

    journey: str
    change: output.Change = Field(
        description="created: a new journey; updated: a new version; unchanged: the file is "
        "what was applied")
    version: str = Field(description="the version the daemon now runs")
    previous_version: str | None = Field(description="the version it ran before (null: new)")


@output.shape("apply")
class ApplyShape(output.Shape):
    """`nurture apply --json`: what was applied."""

    journeys: list[AppliedJourney]
    removed: list[str] = Field(description="journeys whose file is gone, now removed")
    created: int
    updated: int
    unchanged: int
    exited: int = Field(description="contacts that exited removed journeys")
    migrated: int = Field(description="contacts moved by `migrate`")
    resumed: int = Field(description="blocked enrollments resumed at their step")


@output.shape("journey pause", "journey resume")
class PauseShape(output.Shape):
    """`nurture journey pause|resume --json`."""

    journey: str
    paused: bool = Field(description="whether the journey is paused now")
    change: Literal["updated", "unchanged"] = Field(
        description="unchanged: it already was paused (pause) or running (resume)")


@output.shape("retry")
class RetryShape(output.Shape):
    """`nurture retry --json`."""

    resumed: int = Field(description="blocked enrollments that run their step again")
    journey: str | None
    step: str | None
    change: Literal["updated", "unchanged"] = Field(
        description="unchanged: no enrollment was blocked there")


@output.shape("enroll")
class EnrollShape(output.Shape):
    """`nurture enroll --json`."""

    contact_id: int
    journey: str
    enrollment_id: int
    reason: str
    change: Literal["created", "unchanged"] = Field(
        description="unchanged: the contact was already live in the journey (left as is)")
    step: str | None = Field(description="the step it stands at (null: not started)")
    state: str = Field(description="the enrollment's state (active, waiting, blocked…)")


@output.shape("unenroll")
class UnenrollShape(output.Shape):
    """`nurture unenroll --json`."""

    contact_id: int
    journey: str
    enrollment_id: int
    step: str | None = Field(description="the step it stood at")
    reason: str
    change: Literal["updated"] = Field(description="the enrollment exited")


# ---- commands --------------------------------------------------------------------------


def _print_journey(jp: dict[str, Any]) -> None:
    console = output.console()
    status, jid = jp["status"], jp["journey"]
    versions = f"{_short(jp['applied_version'])} → {_short(jp['file_version'])}"
    if status == "unchanged":
        console.print(f"[dim]= {jid}: unchanged ({_short(jp['applied_version'])})[/]")
        return
    mark = {"added": "+", "removed": "-", "changed": "~"}[status]
    console.print(f"[bold]{mark} {jid}[/]: {status} ({versions})", highlight=False)
    if status == "removed":
        console.print(f"    {jp['live_contacts']} live contact(s) would exit "
                      f"({service.REMOVED!r})" if jp["live_contacts"] else
                      "    no live contact")
        return
    steps = jp["steps"]
    for sid in steps["added"] if status == "changed" else []:
        console.print(f"    + step {sid}", highlight=False)
    for sid in steps["removed"]:
        console.print(f"    - step {sid}", highlight=False)
    for sid in steps["changed"]:
        console.print(f"    ~ step {sid}", highlight=False)
    for item in jp["contacts_on_removed_steps"]:
        where = (f"continue at '{item['migrate_to']}' (migrate)" if item["migrate_to"]
                 else "NOT MAPPED: add migrate")
        console.print(f"    {item['contacts']} contact(s) at removed step '{item['step']}': "
                      f"{where}", highlight=False)
    for section in ("entry", "exit", "other"):
        for change in jp[section]:
            console.print(f"    ~ {change['key']}: {_value(change['from'])} → "
                          f"{_value(change['to'])}", highlight=False, markup=False)
    for sid, count in sorted(jp["waiting_on_changed_waits"].items()):
        console.print(f"    {count} contact(s) wait in changed wait '{sid}' (they finish the "
                      "wait they are in)", highlight=False)
    if jp["newly_entering"] is not None:
        console.print(f"    {jp['newly_entering']} contact(s) would newly enter at the next "
                      "tick", highlight=False)


@app.command("plan")
def plan(as_json: output.AsJson = False) -> None:
    """What applying journeys/ would change and whom it concerns; nothing changes."""
    runtime = build_runtime(settings())
    found = service.plan_project(runtime, find_config(STATE.config), now())
    data = found.as_dict()
    if output.emit("plan", data, as_json):
        return
    for jp in data["journeys"]:
        _print_journey(jp)
    for stem in data["unreadable"]:
        typer.echo(f"? {stem}: the file does not load (see nurture validate)")
    if data["blocked"]:
        typer.echo(f"{data['blocked']} blocked enrollment(s) would resume at their step")
    for reason in data["refusals"]:
        typer.echo(f"apply would refuse: {reason}")
    if not found.changes and not data["blocked"]:
        typer.echo("nothing to apply: journeys/ is what is applied")


_CHANGE = {"added": "created", "changed": "updated", "unchanged": "unchanged"}


def applied_rows(done: service.Applied) -> list[dict[str, Any]]:
    """Each journey file after an apply: created, updated or unchanged, with its version."""
    rows = []
    for jp in done.plan.journeys if done.plan else []:
        if jp.file is None:
            continue
        rows.append({"journey": jp.journey_id, "change": _CHANGE[jp.diff.status],
                     "version": jp.file.version,
                     "previous_version": jp.applied.version if jp.applied else None})
    return rows


@app.command("apply")
def apply(
    remove_live: Annotated[bool, typer.Option(
        "--remove-live", help="Remove journeys whose file is gone even though contacts are "
        "in them (they exit, reason 'journey removed').")] = False,
    as_json: output.AsJson = False,
) -> None:
    """Record the journeys in journeys/ as the versions the daemon runs (after `plan`).

    Example: nurture plan && nurture apply
    """
    runtime = build_runtime(settings())
    done = service.apply_project(runtime, find_config(STATE.config), now(),
                                 remove_live=remove_live)
    rows = applied_rows(done)
    counts = {change: sum(r["change"] == change for r in rows)
              for change in ("created", "updated", "unchanged")}
    data = {"journeys": rows, "removed": done.removed, **counts, "exited": done.exited,
            "migrated": done.migrated, "resumed": done.resumed}
    if output.emit("apply", data, as_json):
        return
    for row in rows:
        version = (f"{_short(row['previous_version'])} → {_short(row['version'])}"
                   if row["change"] == "updated" else _short(row["version"]))
        typer.echo(f"{row['change']} journey {row['journey']}: {version}")
    for jid in done.removed:
        typer.echo(f"removed journey {jid}")
    if done.exited:
        typer.echo(f"{done.exited} contact(s) exited removed journeys")
    if done.migrated:
        typer.echo(f"{done.migrated} contact(s) moved by migrate")
    if done.resumed:
        typer.echo(f"{done.resumed} blocked enrollment(s) resume at their step")
    if not (done.versions or done.removed or done.resumed):
        typer.echo("nothing to apply: journeys/ is what is applied")


def _pause(command: str, journey_id: str, paused: bool, as_json: bool) -> None:
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        change = (service.pause if paused else service.resume)(conn, runtime, journey_id, now())
    if not output.emit(command, {"journey": journey_id, "paused": paused, "change": change},
                       as_json):
        state = "paused" if paused else "running"
        typer.echo(f"{change} journey {journey_id}: "
                   f"{'already ' if change == 'unchanged' else ''}{state}")


@journey_app.command("pause")
def journey_pause(journey_id: JourneyId, as_json: output.AsJson = False) -> None:
    """Stop a journey's steps (no sends): contacts keep their place, entries are held."""
    _pause("journey pause", journey_id, True, as_json)


@journey_app.command("resume")
def journey_resume(journey_id: JourneyId, as_json: output.AsJson = False) -> None:
    """Let a paused journey run again from where each contact stands."""
    _pause("journey resume", journey_id, False, as_json)


@app.command("retry")
def retry(
    journey: Annotated[str | None, typer.Option(metavar="JOURNEY",
                                                help="only this journey's")] = None,
    step: Annotated[str | None, typer.Option(metavar="STEP",
                                             help="only those blocked at this step")] = None,
    as_json: output.AsJson = False,
) -> None:
    """Run blocked enrollments' step again (after fixing what blocked them)."""
    runtime = build_runtime(settings())
    if journey is None and step is not None:
        raise NurtureError("--step needs --journey")
    with runtime.db.begin() as conn:
        count = service.retry(conn, runtime, now(), journey_id=journey, step_id=step)
    change = "updated" if count else "unchanged"
    if not output.emit("retry", {"resumed": count, "journey": journey, "step": step,
                                 "change": change}, as_json):
        where = f" in {journey}" + (f" at step {step}" if step else "") if journey else ""
        typer.echo(f"updated {count} blocked enrollment(s){where}: they resume at their step"
                   if count else f"unchanged: no blocked enrollment{where}")


Reason = Annotated[str, typer.Option(help="why (kept with the enrollment)")]


@app.command("enroll")
def enroll(who: Who, journey_id: JourneyId, reason: Reason = "enrolled by hand",
           as_json: output.AsJson = False) -> None:
    """Put a contact in an applied journey now (entry conditions aside; consent still
    gates every send). A contact already in the journey stays where it is."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = service.enroll(conn, runtime, who, journey_id, reason, now(), existing_ok=True)
    if output.emit("enroll", data, as_json):
        return
    if data["change"] == "unchanged":
        typer.echo(f"unchanged enrollment {data['enrollment_id']}: {who} is already in "
                   f"{journey_id} (at step {data['step'] or '-'}, {data['state']})")
    else:
        typer.echo(f"created enrollment {data['enrollment_id']}: {who} in {journey_id}")


@app.command("unenroll")
def unenroll(who: Who, journey_id: JourneyId, reason: Reason = "unenrolled by hand",
             as_json: output.AsJson = False) -> None:
    """Take a contact out of a journey now, with the reason."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = service.unenroll(conn, runtime, who, journey_id, reason, now())
    if not output.emit("unenroll", {**data, "change": "updated"}, as_json):
        typer.echo(f"updated enrollment {data['enrollment_id']}: {who} left {journey_id} at "
                   f"step {data['step']}: {reason}")
