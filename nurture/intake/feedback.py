"""What providers tell us back: each webhook item matched to its message and contact,
stored once through `events.ingest`, then applied — the message's state, and the
suppression or consent withdrawal it calls for.

A replayed item is recognised by `ingest` (same source and source event id) and changes
nothing. Functions take the caller's connection; `record_each` gives every item its own
savepoint, so one bad item never loses the others of its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nurture.compliance.hygiene import address_hash, check_phone
from nurture.engine.runtime import Runtime
from nurture.intake import reply_effects
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.base import ProviderEvent
from nurture.scoring.replies import Intent
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, ConsentAction, EventType, LegalBasis, MessageState

log = logging.getLogger("nurture.feedback")

_S = MessageState
#: the states a webhook may move a message out of, per new state: never backwards
ADVANCES: dict[str, frozenset[str]] = {
    _S.DELIVERED: frozenset({_S.SENDING, _S.SENT, _S.RETRYING, _S.UNKNOWN}),
    _S.BOUNCED: frozenset({_S.SENDING, _S.SENT, _S.RETRYING, _S.UNKNOWN, _S.DELIVERED}),
    _S.FAILED: frozenset({_S.SENDING, _S.SENT, _S.RETRYING, _S.UNKNOWN}),
}
SUPPRESSION_REASONS = {EventType.EMAIL_BOUNCED: "bounced", EventType.EMAIL_COMPLAINED: "complained"}


@dataclass(frozen=True)
class Recorded:
    #: None when the item was a replay (nothing changed)
    event_id: int | None
    contact_id: int | None
    message: dict[str, Any] | None


@dataclass
class Tally:
    stored: int = 0
    replayed: int = 0
    failed: int = 0


def record(conn: Connection, rt: Runtime, event: ProviderEvent, now: datetime) -> Recorded:
    """Store one provider event for its contact and message, then apply what it says."""
    message = find_message(conn, event)
    contact_id = message["contact_id"] if message else _contact_id(conn, event)
    event_id = ingest(conn, rt, IncomingEvent(
        type=event.type, source=event.source, occurred_at=event.occurred_at,
        contact_id=contact_id, source_event_id=event.source_event_id,
        properties=event.properties, message_id=message["id"] if message else None,
        raw=event.raw), now)
    if event_id is None:
        return Recorded(None, contact_id, message)
    if message is not None and event.message_state:
        advance_message(conn, message, event, now)
    if event.consequence:
        apply_consequence(conn, event, message, contact_id, event_id, now)
    return Recorded(event_id, contact_id, message)


def record_each(conn: Connection, rt: Runtime, events: Iterable[ProviderEvent],
                now: datetime) -> Tally:
    """Record a batch, each item in its own savepoint: a failing item is logged and skipped."""
    tally = Tally()
    for event in events:
        try:
            with conn.begin_nested():
                recorded = record(conn, rt, event, now)
        except DBAPIError as e:
            if e.connection_invalidated or isinstance(e, OperationalError | InterfaceError):
                raise  # the database, not the item: fail the request so the batch is resent
            log.exception("%s event %s not recorded", event.source, event.source_event_id)
            tally.failed += 1
            continue
        except Exception:  # one item's failure must not lose the others
            log.exception("%s event %s not recorded", event.source, event.source_event_id)
            tally.failed += 1
            continue
        if recorded.event_id is None:
            tally.replayed += 1
        else:
            tally.stored += 1
    return tally


def find_message(conn: Connection, event: ProviderEvent) -> dict[str, Any] | None:
    """By our public id (custom arg, callback, reply-to), else by the provider's id."""
    found = store.message_by_public_id(conn, event.public_id) if event.public_id else None
    if found is None and event.provider_message_id:
        found = store.message_by_provider_id(conn, event.provider_message_id)
    return found if found is not None and found["channel"] == event.channel else None


def _contact_id(conn: Connection, event: ProviderEvent) -> int | None:
    if not event.address:
        return None
    if event.channel == "email":
        row = store.contact_row(conn, email=event.address.lower())
    else:
        row = store.contact_row(conn, phone=event.address)
    return int(row.id) if row is not None else None


def advance_message(conn: Connection, message: dict[str, Any], event: ProviderEvent,
                    now: datetime) -> None:
    """Delivered, bounced or failed — only forward; a pending retry is called off."""
    new = str(event.message_state)
    if message["state"] not in ADVANCES.get(new, frozenset()):
        return
    values: dict[str, Any] = {"state": new, "updated_at": now, "retry_payload": None,
                              "next_attempt_at": None, "lease_until": None}
    if new != MessageState.DELIVERED:
        values["error"] = event.detail
    store.update_message(conn, message["id"], values)


def apply_consequence(conn: Connection, event: ProviderEvent, message: dict[str, Any] | None,
                      contact_id: int | None, event_id: int, now: datetime) -> None:
    """Suppress the address, or withdraw consent (the message's purpose, or the channel)."""
    if event.consequence == "suppress":
        address = event.address or (message or {}).get("to_address") or ""
        try:
            key = address_hash(address)
        except ValueError:
            log.warning("%s %s: cannot suppress %r", event.source, event.type, address)
            return
        reason = SUPPRESSION_REASONS.get(event.type, "provider_rejected")
        store.suppress(conn, key, reason, event.detail, now)
        return
    if contact_id is None:
        log.warning("%s %s: no contact to withdraw consent for", event.source, event.type)
        return
    if event.consequence == "unsubscribe" and message is not None:
        withdraw(conn, contact_id, event, message["purpose"], now, {"event_id": event_id})
        return
    number = ((message or {}).get("to_address") or event.address) if event.channel == "sms" \
        else None
    # an opted-out number (Twilio 21610) is opted out for every contact holding it
    for holder in _holders(conn, contact_id, number):
        withdraw(conn, holder, event, ALL_PURPOSES, now, {"event_id": event_id})


def withdraw(conn: Connection, contact_id: int, event: ProviderEvent, purpose: str,
             now: datetime, evidence: dict[str, Any]) -> None:
    """Append a withdrawal with its evidence: what the provider reported, when, raw."""
    _append(conn, contact_id, event, purpose, ConsentAction.WITHDRAWN, now, evidence)


def _holders(conn: Connection, contact_id: int, number: str | None) -> list[int]:
    """The contacts an SMS opt-out of `number` speaks for: every one holding it (the
    contact it was matched to included, even if it has changed number since)."""
    holders = store.contacts_holding(conn, number) if number else []
    return sorted({contact_id, *holders})


def _append(conn: Connection, contact_id: int, event: ProviderEvent, purpose: str,
            action: str, now: datetime, evidence: dict[str, Any]) -> None:
    contact = store.contact_row(conn, contact_id=contact_id)
    own = (contact.email if event.channel == "email" else contact.phone) if contact else None
    store.append_consent(
        conn, contact_id=contact_id, channel=event.channel, purpose=purpose, action=action,
        legal_basis=LegalBasis.CONSENT, source=event.source, address=own or event.address or "",
        evidence={"method": f"{event.source} {event.type}", "detail": event.detail,
                  "source_event_id": event.source_event_id,
                  "occurred_at": event.occurred_at.isoformat(), **evidence,
                  "raw": dict(event.raw)},
        now=now)
    store.update_contact(conn, contact_id, {"evaluate_at": now, "updated_at": now})


# ---- inbound SMS ----------------------------------------------------------------------


def record_inbound_sms(conn: Connection, rt: Runtime, event: ProviderEvent,
                       now: datetime) -> str | None:
    """Store an inbound SMS; honour Twilio's opt-out/opt-in when no event hook did.

    Returns the text to answer with (HELP), or None. The event hooks (reply classifier)
    see the message first; `OptOutType` (Twilio Advanced Opt-Out) then only fills a gap,
    so a STOP is never recorded twice. Either way the number's STOP or START applies to
    every contact holding the number. This signed path is the only one whose START
    counts (`reply_effects.OPT_IN_SOURCES`).
    """
    recorded = record(conn, rt, event, now)
    opt_out_type = event.properties.get("opt_out_type")
    fresh = recorded.event_id is not None and recorded.contact_id is not None
    if fresh and opt_out_type in ("STOP", "START"):
        assert recorded.event_id is not None and recorded.contact_id is not None
        _honour_opt_out_type(conn, recorded.contact_id, recorded.event_id, event,
                             opt_out_type, now)
    if opt_out_type is not None:  # Twilio answered its own keyword already
        return None
    if not is_help(rt, str(event.properties.get("text") or "")):
        return None
    return help_text(conn, rt, recorded.contact_id, event.address)


def _honour_opt_out_type(conn: Connection, contact_id: int, event_id: int,
                         event: ProviderEvent, opt_out_type: str, now: datetime) -> None:
    """Twilio's STOP or START for the number: for every contact holding it whose
    channel-wide SMS decision is not that already (the reply hook may have recorded it)."""
    wanted = ConsentAction.WITHDRAWN if opt_out_type == "STOP" else ConsentAction.GRANTED
    holders = _holders(conn, contact_id, event.address)
    statuses = store.consent_statuses(conn, holders)
    for holder in holders:
        current = statuses.get((holder, "sms", ALL_PURPOSES))
        if current is not None and current.action == wanted:
            continue
        if current is None and wanted == ConsentAction.GRANTED:
            continue  # START lifts an earlier STOP; with no STOP there is nothing to lift
        _append(conn, holder, event, ALL_PURPOSES, wanted, now,
                {"event_id": event_id, "opt_out_type": opt_out_type, "number": event.address})


def is_help(rt: Runtime, text: str) -> bool:
    """HELP (or AIDE…), read by the runtime's reply classifier (compiled once)."""
    return reply_effects.classifier(rt.settings).classify(text).intent == Intent.HELP


def help_text(conn: Connection, rt: Runtime, contact_id: int | None,
              number: str | None = None) -> str | None:
    """[sms] help_text in the language of the number's country (a +1 number gets
    English), else the contact's."""
    contact = store.contact_row(conn, contact_id=contact_id) if contact_id else None
    phone = number or (contact.phone if contact is not None else None)
    country = check_phone(phone, default_region=rt.settings.default_region).country \
        if phone else None
    return rt.settings.help_text_for(country or (contact.country if contact else None),
                                     contact.locale if contact is not None else None)
