"""The `nurture` command line: thin commands over the engine. Entry point: `main`."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ConfigDict, Field

from nurture.cli import output
from nurture.cli.common import EXAMPLES, STATE, app, db_app, now, settings
from nurture.cli.report import TickCounts
from nurture.config.settings import find_config
from nurture.engine.build import build_runtime
from nurture.errors import NurtureError, SchemaOutdated, ValidationFailed
from nurture.store import schema as store_schema
from nurture.store.database import Database
from nurture.views import score_text, shown_score

# ---- shapes ----------------------------------------------------------------------------


@output.shape("init")
class InitShape(output.Shape):
    """`nurture init --json`: the project written."""

    directory: str
    change: Literal["created"] = Field(description="init only writes into an empty folder")
    files: list[str] = Field(description="what was written in it")
    journeys_applied: int = Field(description="example journeys applied (run just works)")


class ProblemRow(output.Shape):
    """One problem, as `path:line: message`."""

    path: str
    line: int
    severity: Literal["error", "warning"]
    message: str


@output.shape("validate")
class ValidateShape(output.Shape):
    """`nurture validate --json`: every problem of config, journeys and templates."""

    ok: bool = Field(description="no error (warnings pass); false exits 1")
    errors: int
    warnings: int
    problems: list[ProblemRow]


@output.shape("run")
class RunShape(TickCounts):
    """`nurture run --once --json`: what the tick did."""

    worker: str = Field(description="host:pid of this daemon (its heartbeat in status)")
    at: datetime = Field(description="the tick's time")


@output.shape("db upgrade")
class DbUpgradeShape(output.Shape):
    """`nurture db upgrade --json`."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    database: str = Field(description="the database URL, password hidden")
    before: str | None = Field(alias="from", description="the revision before (null: empty)")
    after: str = Field(alias="to", description="the revision now")
    change: Literal["updated", "unchanged"] = Field(
        description="unchanged: it already was at the latest revision")


class DemoContactRow(output.Shape):
    """A sample contact after the simulated weeks."""

    email: str
    stage: str
    temperature: str
    score: float = Field(description="one decimal")
    sent: int = Field(description="messages sent to the contact")
    skipped: int = Field(description="messages a gate skipped")


@output.shape("demo")
class DemoShape(output.Shape):
    """`nurture demo --json`: what the run sent, counted from the database, and the files
    it wrote."""

    directory: str
    config: str
    days: int
    start: datetime = Field(description="simulated start (Monday 07:00 UTC)")
    journeys: int
    entered: int = Field(description="enrollments that entered a journey")
    sent: int = Field(description="every message sent, the sales notification included")
    sent_by_kind: dict[str, int] = Field(description="kind (journey, notification…) → sent")
    deferred: int = Field(description="sends deferred to a send window")
    skipped_by_reason: dict[str, int]
    outbox: str
    outbox_files: int = Field(description="files the outbox holds: one per message sent")
    contacts: list[DemoContactRow]


@app.callback()
def _options(
    config: Annotated[str | None, typer.Option("--config", "-c", envvar="NURTURE_CONFIG",
                                               help="config.toml (default: ./config.toml)")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    STATE.config, STATE.debug = config, debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def init(directory: Annotated[Path, typer.Argument(metavar="DIRECTORY",
                                                   help="Folder to create")],
         as_json: output.AsJson = False) -> None:
    """Write a working project (config, example journeys and templates, FR + EN)."""
    if directory.exists() and any(directory.iterdir()):
        raise NurtureError(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "journeys", directory / "journeys")
    shutil.copytree(EXAMPLES / "templates", directory / "templates")
    shutil.copy(EXAMPLES / "config.toml", directory / "config.toml")
    from nurture.cli.journeys import apply_new_project

    applied = apply_new_project(directory / "config.toml")
    files = ["config.toml", "journeys/", "templates/"]
    if output.emit("init", {"directory": str(directory), "change": "created", "files": files,
                            "journeys_applied": applied}, as_json):
        return
    output.show(f"created {directory}: {', '.join(files)}. Next: cd {directory} && "
                "nurture validate",
                f"Applied {applied} journeys (the daemon runs applied versions: after an "
                "edit, `nurture plan` then `nurture apply`)")


@app.command()
def validate(as_json: Annotated[bool, typer.Option(
        "--json", help="Print the problems as JSON (path, line, severity, message).")]
        = False) -> None:
    """Check config, every journey and every template; list ALL problems as path:line.

    Exit 1 on any error; warnings are printed (prefixed `warning:`) but pass."""
    from nurture.services.validate import validate_project

    path = find_config(STATE.config)
    problems = validate_project(path)
    errors = sum(problem.is_error for problem in problems)
    data = {"ok": not errors, "errors": errors, "warnings": len(problems) - errors,
            "problems": [problem.as_dict() for problem in problems]}
    if not output.emit("validate", data, as_json):
        for problem in problems:
            typer.echo(str(problem))
        warnings = f" and {len(problems) - errors} warning(s)" if len(problems) > errors else ""
        if errors:
            typer.echo(f"{errors} problem(s){warnings}", err=True)
        else:
            typer.echo("ok: config, journeys and templates are valid"
                       + (f" ({len(problems)} warning(s))" if problems else ""))
    if errors:
        raise typer.Exit(1)


@app.command()
def schema(
    command: Annotated[str | None, typer.Option(
        "--command", metavar="COMMAND", help='The JSON Schema of what COMMAND prints with '
        '--json instead, e.g. --command "contact add".')] = None,
    commands: Annotated[bool, typer.Option(
        "--commands", help="List the commands whose --json output has a schema.")] = False,
) -> None:
    """Print the JSON Schema of journey files (for editor autocompletion), or of a
    command's --json output.

    Example: nurture schema --command status
    """
    from nurture.authoring.schema import journey_schema

    if commands:
        for name in sorted(output.SHAPES):
            typer.echo(name)
        return
    if command is None:
        typer.echo(json.dumps(journey_schema(), indent=2))
        return
    model = output.SHAPES.get(" ".join(command.split()))
    if model is None:
        raise NurtureError(f"no command {command!r} prints JSON; known: "
                           f"{', '.join(sorted(output.SHAPES))}")
    typer.echo(json.dumps(model.model_json_schema(mode="serialization"), indent=2,
                          ensure_ascii=False))


@app.command()
def run(once: Annotated[bool, typer.Option("--once", help="One tick, then exit.")] = False,
        as_json: Annotated[bool, typer.Option(
            "--json", help="With --once: print what the tick did as JSON.")] = False) -> None:
    """The scheduler daemon: advance every contact, send only with consent.

    It refuses to start on a project `nurture validate` rejects (exit 1)."""
    from nurture.cli.journeys import require_applied
    from nurture.daemon import Daemon, summary
    from nurture.services.validate import validate_project

    if as_json and not once:
        raise NurtureError("--json needs --once (the daemon itself logs each tick)")
    errors = [p for p in validate_project(find_config(STATE.config)) if p.is_error]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise NurtureError(f"not starting: {errors[0]}{more}; `nurture validate` lists them")
    runtime = require_applied(build_runtime(settings()))
    if not once:
        Daemon(runtime).run_forever()
        return
    daemon = Daemon(runtime, clock=now)  # the real clock: a long tick's batches move on
    report = daemon.run_once()
    at = daemon.last_tick_at
    if not output.emit("run", {**report.as_dict(), "worker": runtime.worker, "at": at},
                       as_json):
        typer.echo(f"tick at {output.when(at, output.operator_zone(), seconds=True)}: "
                   f"{summary(report)}")


@db_app.command("upgrade")
def db_upgrade(as_json: output.AsJson = False) -> None:
    """Apply the schema migrations to the database, keeping its data."""
    database = Database(settings().database_url)
    try:
        before, after = store_schema.upgrade(database)
    finally:
        database.dispose()
    where = database.engine.url.render_as_string(hide_password=True)
    change = "unchanged" if before == after else "updated"
    if not output.emit("db upgrade", {"database": where, "from": before, "to": after,
                                      "change": change}, as_json):
        state = ("already at" if before == after
                 else f"upgraded from {before or 'empty'} to")
        typer.echo(f"{change} database: {state} revision {after}: {where}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(metavar="DIRECTORY",
                                              help="Folder for the demo project")] = Path(
        "nurture-demo"),
    days: Annotated[int, typer.Option(help="Simulated days")] = 21,
    as_json: output.AsJson = False,
    wide: output.Wide = False,
) -> None:
    """Run the whole engine on sample contacts over simulated weeks; messages land in outbox/."""
    from nurture.services.demo import PEOPLE, run_demo

    zones = {person.email: output.zone_named(person.timezone) for person in PEOPLE}

    def heard(at: datetime, email: str, what: str) -> None:
        output.show(f"  {output.when(at, zones[email])}  {email}: {what}")

    done = run_demo(directory, days, now(), on_event=None if as_json else heard)
    rows = [{"email": c.email, "stage": c.stage, "temperature": c.temperature,
             "score": shown_score(c.score), "sent": c.sent, "skipped": c.skipped}
            for c in done.contacts]
    data = {"directory": str(directory), "config": str(done.config), "days": days,
            "start": done.start, "journeys": done.journeys, "entered": done.entered,
            "sent": done.sent, "sent_by_kind": done.sent_by_kind, "deferred": done.deferred,
            "skipped_by_reason": done.skipped_by_reason, "outbox": str(done.outbox),
            "outbox_files": len(done.files), "contacts": rows}
    if output.emit("demo", data, as_json):
        return
    table = output.table(
        f"Contacts after the simulation: {days} days from "
        f"{output.when(done.start, output.operator_zone())}",
        ["contact", "stage", "temperature", "score", "sent", "skipped"],
        [[c.email, c.stage, c.temperature, score_text(c.score), c.sent, c.skipped]
         for c in done.contacts], right=["score", "sent", "skipped"])
    reasons = ", ".join(f"{k}: {v}" for k, v in done.skipped_by_reason.items()) or "none"
    kinds = ", ".join(f"{v} {k}" for k, v in done.sent_by_kind.items())
    output.show(table,
                f"{done.sent} message(s) sent ({kinds}); enrollments entered {done.entered}, "
                f"deferred to a send window {done.deferred}, skipped ({reasons})",
                f"{len(done.files)} files in {done.outbox}; e.g. "
                f"{done.files[0] if done.files else '-'}",
                f"Explain a contact: nurture --config {done.config} contact show "
                f"{PEOPLE[0].email}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
) -> None:
    """The HTTP endpoints: unsubscribe and preferences, consent, events, provider webhooks."""
    import uvicorn

    from nurture.web.app import create_app

    # forwarded headers are the app's to judge (`trusted_proxies`), not uvicorn's
    uvicorn.run(create_app(build_runtime(settings())), host=host, port=port,
                proxy_headers=False, log_level="info")


# Commands of other areas register themselves on `app` when imported.
from nurture.cli import contacts as cli_contacts  # noqa: E402,F401
from nurture.cli import gdpr as cli_gdpr  # noqa: E402,F401
from nurture.cli import importing as cli_importing  # noqa: E402,F401
from nurture.cli import journeys as cli_journeys  # noqa: E402,F401
from nurture.cli import preview as cli_preview  # noqa: E402,F401
from nurture.cli import report as cli_report  # noqa: E402,F401
from nurture.cli import scoring as cli_scoring  # noqa: E402,F401
from nurture.cli import simulate as cli_simulate  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except ValidationFailed as e:
        for problem in e.problems:
            typer.echo(str(problem), err=True)
        sys.exit(1)
    except SchemaOutdated as e:
        if STATE.debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(3)  # not ready: the schema is behind
    except NurtureError as e:
        if STATE.debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
