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
    consent_app,
    console,
    contact_app,
    db_app,
    emit,
    now,
    pairs,
    settings,
)
from nurture.config.settings import find_config
from nurture.engine.build import build_runtime, catalog_for
from nurture.errors import NurtureError, SchemaOutdated, ValidationFailed
from nurture.intake import ledger
from nurture.services import contacts
from nurture.store import schema as store_schema
from nurture.store.database import Database


@app.callback()
def _options(
    config: Annotated[str | None, typer.Option("--config", "-c", envvar="NURTURE_CONFIG",
                                               help="config.toml (default: ./config.toml)")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks and debug logs.")] = False,
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
def preview(
    template: Annotated[str, typer.Argument(help="e.g. cold/welcome-guide")],
    channel: Annotated[str, typer.Option(help="email or sms")] = "email",
    locale: Annotated[str | None, typer.Option(help="fr, en…")] = None,
    contact_json: Annotated[Path | None, typer.Option(help="contact fields as JSON")] = None,
    html: Annotated[bool, typer.Option(help="print the HTML part too")] = False,
) -> None:
    """Render a template with sample (or given) contact data."""
    config = settings()
    catalog = catalog_for(config)
    locale = locale or config.default_locale
    overrides = json.loads(contact_json.read_text()) if contact_json else None
    context = catalog.sample_context(locale, overrides)
    if channel not in ("email", "sms"):
        raise NurtureError(f"--channel must be email or sms, not {channel!r}")
    if channel == "sms":
        sms = catalog.render_sms(template, locale, context,
                                 stop_mention=config.sms.stop_mention.get(locale))
        typer.echo(f"SMS ({sms.locale}, {sms.segments} segment(s), {sms.encoding})")
        typer.echo(sms.text)
        return
    email = catalog.render_email(template, locale, context)
    # plain echo: a subject is shown as written (no wrapping, no markup interpretation)
    typer.echo(f"Subject ({email.locale}): {email.subject}")
    typer.echo("\n" + email.text)
    if html:
        typer.echo("\n" + email.html)


@app.command()
def run(once: Annotated[bool, typer.Option("--once", help="One tick, then exit.")] = False) -> None:
    """The scheduler daemon: advance every contact, send only with consent."""
    from nurture.cli.journeys import require_applied
    from nurture.daemon import Daemon, summary

    daemon = Daemon(require_applied(build_runtime(settings())))
    if once:
        typer.echo(summary(daemon.run_once()))
        return
    daemon.run_forever()


@contact_app.command("add")
def contact_add(
    email: Annotated[str, typer.Argument()],
    phone: Annotated[str | None, typer.Option()] = None,
    locale: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option()] = None,
    country: Annotated[str | None, typer.Option()] = None,
    attr: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
) -> None:
    """Add a contact (or update the one with this email)."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        contact_id = contacts.add_contact(conn, runtime.settings, now(), email=email, phone=phone,
                                          locale=locale, timezone=timezone, country=country,
                                          attributes=pairs(attr, "--attr"))
    typer.echo(f"contact {contact_id}: {email}")


@contact_app.command("show")
def contact_show(who: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Profile, score and stage explained, journeys, messages (with skip reasons), consent."""
    from nurture.cli.explain import print_contact

    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = contacts.describe(conn, contacts.find_contact(conn, who))
    if not emit(data, as_json):
        print_contact(console, data)


def _consent(action: str, who: str, channel: str, purpose: str, source: str,
             basis: str, evidence: list[str] | None) -> None:
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        contact = contacts.find_contact(conn, who)
        record = ledger.record_consent(conn, runtime.settings, now(), contact=contact,
                                         channel=channel, purpose=purpose, action=action,
                                         source=source, legal_basis=basis,
                                         evidence=pairs(evidence, "--evidence"))
    typer.echo(f"consent record {record}: {action} {channel}/{purpose} for {who}")


Channel = Annotated[str, typer.Option(help="email or sms")]
Purpose = Annotated[str, typer.Option(help="a purpose from config (granted one at a time)")]
AnyPurpose = Annotated[str, typer.Option(help="a purpose from config, or * for the whole "
                                              "channel")]
Source = Annotated[str, typer.Option(help="where it came from: form id, cli, import…")]
Evidence = Annotated[list[str] | None, typer.Option(help="key=value, repeatable")]


@consent_app.command("grant")
def consent_grant(who: str, channel: Channel, purpose: Purpose, source: Source = "cli",
                  basis: Annotated[str, typer.Option(help="consent | legitimate_interest "
                                                     "| contract")] = "consent",
                  evidence: Evidence = None) -> None:
    """Record consent (or another lawful basis) for a channel and purpose."""
    _consent("granted", who, channel, purpose, source, basis, evidence)


@consent_app.command("withdraw")
def consent_withdraw(who: str, channel: Channel, purpose: AnyPurpose, source: Source = "cli",
                     evidence: Evidence = None) -> None:
    """Record a withdrawal: nothing more is sent for that channel and purpose."""
    _consent("withdrawn", who, channel, purpose, source, "consent", evidence)


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
from nurture.cli import gdpr as cli_gdpr  # noqa: E402,F401
from nurture.cli import importing as cli_importing  # noqa: E402,F401
from nurture.cli import journeys as cli_journeys  # noqa: E402,F401
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
