"""Consent from sign-up forms (`POST /consent`), with optional double opt-in.

Single opt-in appends one `granted` ledger entry per channel × purpose, each carrying the
form's evidence (GDPR art. 7(1): who, when, how, what they were told). Double opt-in
appends `pending` entries, which never count, and sends a confirmation email whose signed
link leads to `confirm`: it appends `confirmed` entries that reference the pending ones,
so the ledger holds both steps. Functions take the caller's connection and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance import consent
from nurture.compliance.tokens import Links
from nurture.engine import send
from nurture.engine.runtime import Runtime
from nurture.errors import ContactError
from nurture.intake import ledger
from nurture.providers.base import OutgoingMessage
from nurture.services import contacts
from nurture.store import queries as store
from nurture.views import ContactView
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction, MessageKind

CONFIRM_TEMPLATE = "consent/confirm"
CONFIRM_PURPOSE = "transactional"


class AddressSuppressed(ContactError):
    """The address is on the suppression list (erased, bounced, complained)."""


@dataclass(frozen=True)
class SignupForm:
    """What a sign-up form submitted, and what it told the person."""

    channels: Sequence[str]
    purposes: Sequence[str]
    wording: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    country: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"
    form_id: str | None = None
    wording_version: str = ""
    double_opt_in: bool = False


@dataclass(frozen=True)
class SignupResult:
    contact_id: int
    records: list[int]
    #: granted, or pending until the confirmation link is followed
    status: str
    #: the confirmation email, to hand to the provider once the transaction committed
    confirmation: OutgoingMessage | None = None


def record_signup(conn: Connection, rt: Runtime, now: datetime, form: SignupForm,
                  client: Mapping[str, str]) -> SignupResult:
    """Validate the addresses (hygiene), refuse suppressed ones, add or update the contact,
    and append the ledger entries. ContactError (or AddressSuppressed) changes nothing."""
    settings = rt.settings
    if form.double_opt_in and (not form.email or set(form.channels) != {Channel.EMAIL}):
        raise ContactError("double opt-in confirms an email address: it needs `email` and "
                           "channels [\"email\"] (record SMS consent in its own request)")
    email = contacts.normalize_email(form.email, settings)[0] if form.email else None
    phone = contacts.normalize_phone(form.phone, settings) if form.phone else None
    for channel in dict.fromkeys(form.channels):
        address = email if channel == Channel.EMAIL else phone
        if not address:
            needed = "an email" if channel == Channel.EMAIL else "a phone"
            raise ContactError(f"channel {channel!r} needs {needed}")
        if ledger.is_suppressed(conn, address):
            raise AddressSuppressed(f"{address} is on the suppression list (erased, bounced or "
                                    "complained): consent cannot be recorded for it")
    contact_id = contacts.add_contact(
        conn, settings, now, email=email, phone=phone, locale=form.locale,
        timezone=form.timezone, country=form.country, attributes=form.attributes)
    contact = contacts.find_contact(conn, str(contact_id))
    request = uuid.uuid4().hex
    evidence = {
        "form_id": form.form_id, "wording": form.wording, "wording_version": form.wording_version,
        "channels": list(form.channels), "purposes": list(form.purposes),
        "controller": settings.sender.company, "double_opt_in": form.double_opt_in,
        "request": request, **client,
    }
    action = ConsentAction.PENDING if form.double_opt_in else ConsentAction.GRANTED
    wanted = [(channel, purpose) for channel in dict.fromkeys(form.channels)
              for purpose in dict.fromkeys(form.purposes)]
    if form.double_opt_in:  # a pending entry must not suspend consent already given
        wanted = [pair for pair in wanted if not _counts(conn, rt, contact.id, *pair)]
    records = [ledger.record_consent(conn, settings, now, contact=contact, channel=channel,
                                       purpose=purpose, action=action, source=form.source,
                                       evidence=evidence)
               for channel, purpose in wanted]
    if not records:
        return SignupResult(contact_id, [], ConsentAction.GRANTED)
    confirmation = None
    if form.double_opt_in:
        confirmation = confirmation_email(conn, rt, now, contact, records[0], request)
    return SignupResult(contact_id, records, action, confirmation)


def _counts(conn: Connection, rt: Runtime, contact_id: int, channel: str, purpose: str) -> bool:
    """Does consent for this channel and purpose count right now?"""
    spec = rt.settings.purposes.get(purpose)
    statuses = store.consent_statuses(conn, [contact_id])
    return spec is not None and consent.may_send(
        statuses.get((contact_id, channel, purpose)),
        statuses.get((contact_id, channel, ALL_PURPOSES)), spec.bases)


def confirmation_email(conn: Connection, rt: Runtime, now: datetime, contact: Any,
                       request_record: int, request: str) -> OutgoingMessage:
    """Render the confirmation and record it as a message (`sending`, at most once)
    through the one send path; the caller hands it over once its transaction committed."""
    view = ContactView.from_row(contact._mapping)
    return send.direct_email(conn, rt, now, contact=view, template=CONFIRM_TEMPLATE,
                             kind=MessageKind.CONFIRMATION, purpose=CONFIRM_PURPOSE,
                             links=confirmation_links(rt.links, request_record, request),
                             categories=("consent", "confirm"))


def confirmation_links(links: Links, request_record: int, request: str) -> dict[str, str]:
    """What the confirmation email links to: its signed confirm link, and no unsubscribe
    (it is not marketing: nothing was consented to yet)."""
    return {"confirm": links.confirm_url(request_record, request), "unsubscribe": "",
            "preferences": ""}


@dataclass(frozen=True)
class PendingRequest:
    """A double opt-in request: its contact and the ledger entries still awaiting."""

    contact: Any
    request_record: int
    waiting: list[dict[str, Any]]


def pending_request(conn: Connection, request_record: int,
                    request: str) -> PendingRequest | None:
    """None when the request is gone (the contact was erased, its ids perhaps reused)."""
    first = store.consent_record(conn, request_record)
    if first is None or (first["evidence"] or {}).get("request") != request:
        return None
    contact = store.contact_row(conn, contact_id=first["contact_id"])
    if contact is None:
        return None
    statuses = store.consent_statuses(conn, [contact.id])
    waiting = []
    for record in store.consent_history(conn, contact.id):
        if record["action"] != ConsentAction.PENDING:
            continue
        if (record["evidence"] or {}).get("request") != request:
            continue
        current = statuses.get((contact.id, record["channel"], record["purpose"]))
        if current is not None and current.action == ConsentAction.PENDING:
            waiting.append(record)
    return PendingRequest(contact, request_record, waiting)


def confirm(conn: Connection, rt: Runtime, now: datetime, pending: PendingRequest,
            client: Mapping[str, str]) -> list[int]:
    """Append `confirmed` for every entry still pending; consent counts from now.
    Repeating it confirms nothing more (an empty list)."""
    records = []
    for record in pending.waiting:
        evidence = {"confirms": record["id"], "request": (record["evidence"] or {}).get("request"),
                    "wording": (record["evidence"] or {}).get("wording"),
                    "wording_version": (record["evidence"] or {}).get("wording_version"),
                    **client}
        records.append(ledger.record_consent(
            conn, rt.settings, now, contact=pending.contact, channel=record["channel"],
            purpose=record["purpose"], action=ConsentAction.CONFIRMED, source=record["source"],
            legal_basis=record["legal_basis"], evidence=evidence))
    return records
