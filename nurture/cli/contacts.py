"""`nurture contact add|show` and `nurture consent grant|withdraw`."""

from __future__ import annotations

from typing import Annotated

import typer

from nurture.cli.common import consent_app, console, contact_app, emit, now, pairs, settings
from nurture.engine.build import build_runtime
from nurture.intake import ledger
from nurture.services import contacts

Who = Annotated[str, typer.Argument(metavar="CONTACT",
                                   help="email, E.164 phone or contact id")]
Channel = Annotated[str, typer.Option(help="email or sms")]
Purpose = Annotated[str, typer.Option(help="a purpose from config (granted one at a time)")]
AnyPurpose = Annotated[str, typer.Option(help="a purpose from config, or * for the whole "
                                              "channel")]
Source = Annotated[str, typer.Option(help="where it came from: form id, cli, import…")]
Evidence = Annotated[list[str] | None, typer.Option(help="key=value, repeatable")]


@contact_app.command("add")
def contact_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="the contact's email address "
                                         "(the contact with it is updated if there is one)")],
    phone: Annotated[str | None, typer.Option(help="mobile number, E.164 (+33612345678) or "
                                              "national for the default region")] = None,
    locale: Annotated[str | None, typer.Option(help="a locale from config: fr, en…")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone for send windows, e.g. "
                                                 "Europe/Paris")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166 country code, e.g. FR")] = None,
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
def contact_show(who: Who, as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON (times in UTC).")] = False) -> None:
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


@consent_app.command("grant")
def consent_grant(who: Who, channel: Channel, purpose: Purpose, source: Source = "cli",
                  basis: Annotated[str, typer.Option(help="consent | legitimate_interest "
                                                     "| contract")] = "consent",
                  evidence: Evidence = None) -> None:
    """Record consent (or another lawful basis) for a channel and purpose."""
    _consent("granted", who, channel, purpose, source, basis, evidence)


@consent_app.command("withdraw")
def consent_withdraw(who: Who, channel: Channel, purpose: AnyPurpose, source: Source = "cli",
                     evidence: Evidence = None) -> None:
    """Record a withdrawal: nothing more is sent for that channel and purpose."""
    _consent("withdrawn", who, channel, purpose, source, "consent", evidence)
