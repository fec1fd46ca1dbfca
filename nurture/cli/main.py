"""The `nurture` command line: thin commands over the engine. Entry point: `main`."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import (
    EXAMPLES,
    STATE,
    app,
    console,
    db_app,
    emit,
    now,
    settings,
)
from nurture.config.settings import find_config
from nurture.engine.build import build_runtime
from nurture.errors import NurtureError, SchemaOutdated, ValidationFailed
from nurture.store import schema as store_schema
from nurture.store.database import Database


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
def init(directory: Annotated[Path, typer.Argument(help="Folder to create")]) -> None:
    """Write a working project (config, example journeys and templates, FR + EN)."""
    if directory.exists() and any(directory.iterdir()):
        raise NurtureError(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "journeys", directory / "journeys")
    shutil.copytree(EXAMPLES / "templates", directory / "templates")
    shutil.copy(EXAMPLES / "config.toml", directory / "config.toml")
    from nurture.cli.journeys import apply_new_project

    applied = apply_new_project(directory / "config.toml")
    console.print(f"Created {directory}: config.toml, journeys/, templates/. "
                  f"Next: cd {directory} && nurture validate")
    console.print(f"Applied {applied} journeys (the daemon runs applied versions: after an "
                  "edit, `nurture plan` then `nurture apply`)")


@app.command()
def validate(as_json: Annotated[bool, typer.Option(
        "--json", help="Print the problems as a JSON list (path, line, severity, message).")]
        = False) -> None:
    """Check config, every journey and every template; list ALL problems as path:line.

    Exit 1 on any error; warnings are printed (prefixed `warning:`) but pass."""
    from nurture.services.validate import validate_project

    path = find_config(STATE.config)
    problems = validate_project(path)
    errors = sum(problem.is_error for problem in problems)
    if not emit([problem.as_dict() for problem in problems], as_json):
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
def schema() -> None:
    """Print the JSON Schema of journey files (for editor autocompletion)."""
    from nurture.authoring.schema import journey_schema

    typer.echo(json.dumps(journey_schema(), indent=2))


@app.command()
def run(once: Annotated[bool, typer.Option("--once", help="One tick, then exit.")] = False) -> None:
    """The scheduler daemon: advance every contact, send only with consent.

    It refuses to start on a project `nurture validate` rejects (exit 1)."""
    from nurture.cli.journeys import require_applied
    from nurture.daemon import Daemon, summary
    from nurture.services.validate import validate_project

    errors = [p for p in validate_project(find_config(STATE.config)) if p.is_error]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise NurtureError(f"not starting: {errors[0]}{more}; `nurture validate` lists them")
    daemon = Daemon(require_applied(build_runtime(settings())))
    if once:
        typer.echo(summary(daemon.run_once()))
        return
    daemon.run_forever()


@db_app.command("upgrade")
def db_upgrade(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Apply the schema migrations to the database, keeping its data."""
    database = Database(settings().database_url)
    try:
        before, after = store_schema.upgrade(database)
    finally:
        database.dispose()
    where = database.engine.url.render_as_string(hide_password=True)
    if not emit({"database": where, "from": before, "to": after,
                 "changed": before != after}, as_json):
        state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        typer.echo(f"database {state} revision {after}: {where}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project")] = Path(
        "nurture-demo"),
    days: Annotated[int, typer.Option(help="Simulated days")] = 21,
) -> None:
    """Run the whole engine on sample contacts over simulated weeks; messages land in outbox/."""
    from nurture.services.demo import run_demo

    run_demo(directory, days, console, start=now())


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
