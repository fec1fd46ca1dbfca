"""Journey versions and operators: `plan`, `apply`, `journey pause|resume`, `retry`,
`enroll`, `unenroll`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nurture.cli.common import STATE, app, console, emit, now, settings
from nurture.config.settings import find_config, load_settings
from nurture.engine import versions
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError
from nurture.services import journeys as service

journey_app = typer.Typer(help="Pause or resume an applied journey.", no_args_is_help=True)
app.add_typer(journey_app, name="journey")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
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


def _print_journey(jp: dict[str, Any]) -> None:
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
def plan(as_json: AsJson = False) -> None:
    """What applying journeys/ would change and whom it concerns; nothing changes."""
    runtime = build_runtime(settings())
    found = service.plan_project(runtime, find_config(STATE.config), now())
    data = found.as_dict()
    if emit(data, as_json):
        return
    for jp in data["journeys"]:
        _print_journey(jp)
    for stem in data["unreadable"]:
        console.print(f"? {stem}: the file does not load (see nurture validate)")
    if data["blocked"]:
        console.print(f"{data['blocked']} blocked enrollment(s) would resume at their step")
    for reason in data["refusals"]:
        typer.echo(f"apply would refuse: {reason}")
    if not found.changes and not data["blocked"]:
        typer.echo("nothing to apply: journeys/ is what is applied")


@app.command("apply")
def apply(
    remove_live: Annotated[bool, typer.Option(
        "--remove-live", help="Remove journeys whose file is gone even though contacts are "
        "in them (they exit, reason 'journey removed').")] = False,
    as_json: AsJson = False,
) -> None:
    """Record the journeys in journeys/ as the versions the daemon runs (after `plan`)."""
    runtime = build_runtime(settings())
    done = service.apply_project(runtime, find_config(STATE.config), now(),
                                 remove_live=remove_live)
    if emit(done.as_dict(), as_json):
        return
    for jid, version in sorted(done.versions.items()):
        typer.echo(f"applied {jid} {_short(version)}")
    for jid in done.removed:
        typer.echo(f"removed {jid}")
    if done.exited:
        typer.echo(f"{done.exited} contact(s) exited removed journeys")
    if done.migrated:
        typer.echo(f"{done.migrated} contact(s) moved by migrate")
    if done.resumed:
        typer.echo(f"{done.resumed} blocked enrollment(s) resume at their step")
    if not (done.versions or done.removed or done.resumed):
        typer.echo("nothing to apply: journeys/ is what is applied")


def _pause(journey_id: str, paused: bool, as_json: bool) -> None:
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        (service.pause if paused else service.resume)(conn, runtime, journey_id, now())
    if not emit({"journey": journey_id, "paused": paused}, as_json):
        typer.echo(f"journey {journey_id} {'paused' if paused else 'resumed'}")


@journey_app.command("pause")
def journey_pause(journey_id: JourneyId, as_json: AsJson = False) -> None:
    """Stop a journey's steps (no sends): contacts keep their place, entries are held."""
    _pause(journey_id, True, as_json)


@journey_app.command("resume")
def journey_resume(journey_id: JourneyId, as_json: AsJson = False) -> None:
    """Let a paused journey run again from where each contact stands."""
    _pause(journey_id, False, as_json)


@app.command("retry")
def retry(
    journey: Annotated[str | None, typer.Option(help="only this journey's")] = None,
    step: Annotated[str | None, typer.Option(help="only those blocked at this step")] = None,
    as_json: AsJson = False,
) -> None:
    """Run blocked enrollments' step again (after fixing what blocked them)."""
    runtime = build_runtime(settings())
    if journey is None and step is not None:
        raise NurtureError("--step needs --journey")
    with runtime.db.begin() as conn:
        count = service.retry(conn, runtime, now(), journey_id=journey, step_id=step)
    if not emit({"resumed": count, "journey": journey, "step": step}, as_json):
        typer.echo(f"{count} blocked enrollment(s) resume at their step")


Reason = Annotated[str, typer.Option(help="why (kept with the enrollment)")]


@app.command("enroll")
def enroll(who: Who, journey_id: JourneyId, reason: Reason = "enrolled by hand",
           as_json: AsJson = False) -> None:
    """Put a contact in an applied journey now (entry conditions aside; consent still
    gates every send)."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = service.enroll(conn, runtime, who, journey_id, reason, now())
    if not emit(data, as_json):
        typer.echo(f"{who} enrolled in {journey_id} (enrollment {data['enrollment_id']})")


@app.command("unenroll")
def unenroll(who: Who, journey_id: JourneyId, reason: Reason = "unenrolled by hand",
             as_json: AsJson = False) -> None:
    """Take a contact out of a journey now, with the reason."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = service.unenroll(conn, runtime, who, journey_id, reason, now())
    if not emit(data, as_json):
        typer.echo(f"{who} left {journey_id} at step {data['step']}: {reason}")
