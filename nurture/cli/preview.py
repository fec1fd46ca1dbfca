"""`nurture preview`: render a template as a contact would receive it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import app, settings
from nurture.engine.build import catalog_for
from nurture.errors import NurtureError


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
