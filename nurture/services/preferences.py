"""The preference page and one-click unsubscribe behind every `/u/{token}` link.

A link token names one message; the message names the contact, the channel and the
purpose. Each change is one consent ledger entry carrying its evidence (source
`one-click` or `preference-page`, the message, IP, user agent, what was submitted).
Nothing here updates or deletes a ledger entry. Functions take the caller's open
connection and `now`; they never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance import consent
from nurture.compliance.tokens import Links
from nurture.config.settings import Settings
from nurture.engine.runtime import Runtime
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction, EventType, LegalBasis

SOURCE_ONE_CLICK = "one-click"
SOURCE_PAGE = "preference-page"


@dataclass(frozen=True)
class LinkTarget:
    """The message a link was sent in, and its contact."""

    message: dict[str, Any]
    contact: Any

    @property
    def channel(self) -> str:
        return str(self.message["channel"])


@dataclass(frozen=True)
class Choice:
    """One channel × purpose line of the preference page."""

    channel: str
    purpose: str
    #: granted, pending, withdrawn or none (see `consent.describe`)
    state: str
    legal_basis: str
    #: ticking grants consent only for a marketing purpose, on the channel the link came by
    #: (the address it proves); withdrawing is always possible
    can_grant: bool

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.purpose}"

    @property
    def granted(self) -> bool:
        return self.state == "granted"


@dataclass(frozen=True)
class Change:
    channel: str
    purpose: str
    action: str
    record_id: int


def resolve(conn: Connection, links: Links, token: str) -> LinkTarget | None:
    """The message and contact behind a link; None once they were erased.
    SignatureError when the token was not made by us (tampered, truncated)."""
    public_id = links.message_id_from(token)
    message = store.message_by_public_id(conn, public_id)
    if message is None:
        return None
    contact = store.contact_row(conn, contact_id=message["contact_id"])
    return None if contact is None else LinkTarget(message, contact)


def channels_of(contact: Any) -> list[str]:
    return [c.value for c in Channel if (contact.email if c == Channel.EMAIL else contact.phone)]


def choices(conn: Connection, settings: Settings, contact: Any, link_channel: str) -> list[Choice]:
    """Every channel the contact has an address for × every configured purpose."""
    statuses = store.consent_statuses(conn, [contact.id])
    found = []
    for channel in channels_of(contact):
        wide = statuses.get((contact.id, channel, ALL_PURPOSES))
        for name, purpose in settings.purposes.items():
            specific = statuses.get((contact.id, channel, name))
            state = consent.describe(specific, wide, purpose.bases)
            basis = specific.legal_basis if specific else LegalBasis.CONSENT
            grantable = channel == link_channel and purpose.marketing
            found.append(Choice(channel, name, state, basis, grantable))
    return found


def one_click(conn: Connection, rt: Runtime, now: datetime, target: LinkTarget,
              evidence: Mapping[str, Any]) -> Change | None:
    """RFC 8058: withdraw the message's channel and purpose at once. None when it was
    withdrawn already (mail clients repeat the POST: no duplicate ledger entries)."""
    contact, channel, purpose = target.contact, target.channel, target.message["purpose"]
    current = store.consent_statuses(conn, [contact.id]).get((contact.id, channel, purpose))
    if current is not None and current.action == ConsentAction.WITHDRAWN:
        return None
    basis = current.legal_basis if current else LegalBasis.CONSENT
    change = _withdraw(conn, target, now, channel, purpose, basis, SOURCE_ONE_CLICK, evidence)
    _unsubscribed(conn, rt, now, target, SOURCE_ONE_CLICK, [change])
    return change


def apply(conn: Connection, rt: Runtime, now: datetime, target: LinkTarget,
          wanted: Collection[str], evidence: Mapping[str, Any], *,
          everything: bool = False, wording: Mapping[str, str] | None = None) -> list[Change]:
    """Apply the submitted preference form: a ticked line is kept or granted, an unticked
    granted line is withdrawn; `everything` withdraws every line and each channel as a
    whole. `wording` (choice key → text shown) is kept as evidence of each grant."""
    contact, changes = target.contact, []
    for item in choices(conn, rt.settings, contact, target.channel):
        keep = item.key in wanted and not everything
        if not keep and (item.granted or (everything and item.state == "pending")):
            changes.append(_withdraw(conn, target, now, item.channel, item.purpose,
                                     item.legal_basis, SOURCE_PAGE, evidence))
        elif keep and not item.granted and item.can_grant:
            shown = {"wording": (wording or {}).get(item.key, item.purpose)}
            record = ledger.record_consent(
                conn, rt.settings, now, contact=contact, channel=item.channel,
                purpose=item.purpose, action=ConsentAction.GRANTED, source=SOURCE_PAGE,
                evidence={**evidence, **shown})
            changes.append(Change(item.channel, item.purpose, ConsentAction.GRANTED, record))
    if everything:
        statuses = store.consent_statuses(conn, [contact.id])
        for channel in channels_of(contact):
            wide = statuses.get((contact.id, channel, ALL_PURPOSES))
            if wide is None or wide.action != ConsentAction.WITHDRAWN:
                changes.append(_withdraw(conn, target, now, channel, ALL_PURPOSES,
                                         LegalBasis.CONSENT, SOURCE_PAGE, evidence))
    _unsubscribed(conn, rt, now, target, SOURCE_PAGE, changes)
    return changes


def _withdraw(conn: Connection, target: LinkTarget, now: datetime, channel: str,
              purpose: str, basis: str, source: str, evidence: Mapping[str, Any]) -> Change:
    """Append a withdrawal. Withdrawing is always possible: no purpose or suppression
    check (a purpose since removed from config can still be withdrawn)."""
    contact = target.contact
    address = (contact.email if channel == Channel.EMAIL else contact.phone) or ""
    record = store.append_consent(
        conn, contact_id=contact.id, channel=channel, purpose=purpose,
        action=ConsentAction.WITHDRAWN, legal_basis=basis, source=source, address=address,
        evidence=dict(evidence), now=now)
    store.update_contact(conn, contact.id, {"updated_at": now})
    return Change(channel, purpose, ConsentAction.WITHDRAWN, record)


def _unsubscribed(conn: Connection, rt: Runtime, now: datetime, target: LinkTarget,
                  source: str, changes: list[Change]) -> None:
    """One `email.unsubscribed` event per request, tied to the message (reports count
    unsubscribes per journey and step; scoring may react)."""
    withdrawn = [c for c in changes if c.channel == Channel.EMAIL
                 and c.action == ConsentAction.WITHDRAWN]
    if not withdrawn:
        return
    ingest(conn, rt, IncomingEvent(
        type=EventType.EMAIL_UNSUBSCRIBED, source=source, occurred_at=now,
        contact_id=target.contact.id, source_event_id=f"consent-{withdrawn[0].record_id}",
        message_id=target.message["id"],
        properties={"purposes": [c.purpose for c in withdrawn],
                    "consent_records": [c.record_id for c in withdrawn]}), now)
