"""`nurture preview`: render a template as a contact would receive it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import app, now, settings
from nurture.engine.build import catalog_for
from nurture.errors import NurtureError
from nurture.services import preview as service
from nurture.views import score_text, shown_score


@output.shape("preview")
class PreviewShape(output.Shape):
    """A template rendered for one contact, as the send path would send it."""

    channel: Literal["email", "sms"] = Field(
        description="The channel rendered: from --channel, else the template's folder.")
    template: str = Field(description="The template's name (without its channel folder).")
    locale: str = Field(description="The locale of the files used (after any fallback).")
    purpose: str = Field(description="The purpose it was rendered for (STOP mention, "
                         "unsubscribe headers).")
    contact: str = Field(description="The contact's email (else phone), or 'sample'.")
    contact_source: Literal["database", "file", "sample"] = Field(
        description="Where the contact came from: --contact, --contact-json, or the sample.")
    score: float = Field(description="The contact's score as templates see it (one decimal).")
    sender: str = Field(description="From: the email sender, or the SMS sender id used for "
                        "this contact's country.")
    to: str = Field(description="The address or number it would go to ('' if none).")
    text: str = Field(description="The text part (email) or the SMS as sent, with its "
                      "sender name and STOP mention.")
    subject: str | None = Field(default=None, description="Email only: the subject.")
    html: str | None = Field(default=None, description="Email only: the inlined HTML part.")
    segments: int | None = Field(default=None, description="SMS only: segments billed.")
    encoding: Literal["GSM-7", "UCS-2"] | None = Field(
        default=None, description="SMS only: the encoding the text forces.")
    non_gsm: list[str] | None = Field(
        default=None, description="SMS only: the characters that force UCS-2 (empty in GSM-7).")


@app.command()
def preview(
    template: Annotated[str, typer.Argument(
        metavar="TEMPLATE", help="Template name, e.g. cold/welcome-guide (a leading email/ "
        "or sms/ names the channel).")],
    channel: Annotated[str | None, typer.Option(
        metavar="CHANNEL", help="email or sms; default: the channel the template's files "
        "are in (email when it has both).")] = None,
    locale: Annotated[str | None, typer.Option(
        metavar="LOCALE", help="Render in this locale (fr, en…) instead of the contact's.")
    ] = None,
    contact: Annotated[str | None, typer.Option(
        metavar="CONTACT", help="Render for this stored contact: email, E.164 phone or "
        "contact id.")] = None,
    contact_json: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Render for the contact in this JSON file (the whole contact: "
        "what it leaves out stays out).")] = None,
    purpose: Annotated[str | None, typer.Option(
        metavar="PURPOSE", help="The purpose it is sent for (a marketing one by default: "
        "STOP mention, unsubscribe headers).")] = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part too (email).")
                    ] = False,
    as_json: output.AsJson = False,
) -> None:
    """Render a template with the project's sender and links, for a stored contact
    (--contact), a contact in a file (--contact-json) or a sample contact.

    Example: nurture preview cold/welcome-guide --contact camille@example.com

    Example: nurture preview hot/trial-reminder --contact-json contact.json --json
    """
    if contact and contact_json:
        raise NurtureError("give --contact or --contact-json, not both")
    config = settings()
    catalog = catalog_for(config)
    if contact:
        who = service.database_contact(config, contact)
    elif contact_json:
        who = service.file_contact(config, contact_json)
    else:
        who = service.sample_contact(config, catalog, locale or config.default_locale)
    shown = service.render(config, catalog, template, now(), contact=who, channel=channel,
                           locale=locale, purpose=purpose)
    if output.emit("preview", _data(shown), as_json):
        return
    _print(shown, html)


def _data(shown: service.Preview) -> dict[str, object]:
    data: dict[str, object] = {
        "channel": shown.channel, "template": shown.template, "locale": shown.locale,
        "purpose": shown.purpose, "contact": shown.contact.label,
        "contact_source": shown.contact.source, "score": shown_score(shown.contact.view.score),
        "sender": shown.sender, "to": shown.to, "text": shown.text}
    if shown.channel == "sms":
        data.update(segments=shown.segments, encoding=shown.encoding,
                    non_gsm=list(shown.non_gsm))
    else:
        data.update(subject=shown.subject, html=shown.html)
    return data


def _whom(shown: service.Preview) -> str:
    who = shown.contact
    score = f"score {score_text(who.view.score)}"
    if who.source == "sample":
        return f"the sample contact ({score})"
    if who.source == "file":
        return f"from --contact-json ({score})"
    return f"contact {who.view.id} ({score})"


def _print(shown: service.Preview, html: bool) -> None:
    """Plain echo: a subject or an SMS is shown as written (no wrapping, no markup)."""
    lines: list[str] = []
    if shown.channel == "sms":
        lines.append(f"SMS ({shown.locale}, {shown.segments} segment(s), {shown.encoding})")
        if shown.non_gsm:
            lines.append(f"UCS-2 because of: {' '.join(shown.non_gsm)} (GSM-7 has 160 "
                         "characters a segment, UCS-2 70)")
    else:
        lines.append(f"Subject ({shown.locale}): {shown.subject}")
    lines.append(f"From: {shown.sender}")
    lines.append(f"To: {shown.to or '(none)'}")
    lines.append(f"Contact: {_whom(shown)}")
    if shown.reply_to:
        lines.append(f"Reply-To: {shown.reply_to}")
    if shown.also:
        lines.append(f"Also a {' and '.join(shown.also)} template: --channel "
                     f"{shown.also[0]} to preview it")
    typer.echo("\n".join(lines))
    typer.echo("\n" + shown.text)
    if html and shown.channel == "email":
        typer.echo("\n" + shown.html)
