"""The consent ledger, written: one checked path for every grant and withdrawal.

The CLI, the consent API, the preference page, replies and provider feedback all
append through `record_consent`, which checks channel, purpose, action and basis, and
refuses to grant for a suppressed address. `*` (every purpose of a channel) is a
withdrawal only: consent is given per purpose, so a `*` grant is refused — a record
that looks granted but never counts for a send (`compliance.consent.may_send` reads the
purpose's own decision) would mislead whoever reads the ledger.

An SMS opt-out belongs to the number, not to one contact: `withdraw_number` records it
for every contact holding the number, `inherit_number_opt_out` for a contact that takes
the number later, and only the number itself lifts it again (`lift_number`, for a START
arriving through the channel's signed provider inbound).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance.consent import ConsentStatus
from nurture.compliance.hygiene import address_hash
from nurture.config.settings import Settings
from nurture.errors import ContactError
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction, LegalBasis, WhatChanged

#: the source of the SMS withdrawal a contact inherits from its number's earlier STOP
NUMBER_OPT_OUT = "number-opt-out"


def is_suppressed(conn: Connection, *addresses: str | None) -> bool:
    hashes = {address_hash(a) for a in addresses if a}
    return bool(hashes and store.suppressed_among(conn, hashes))


@dataclass(frozen=True)
class Recorded:
    """One decision appended to the ledger, and what it did to the current state of its
    channel and purpose."""

    record_id: int
    #: created: the first decision for this channel and purpose; updated: the action or
    #: basis changed; unchanged: the same decision again (appended all the same, as
    #: evidence of when it was said again)
    change: WhatChanged
    #: the action in force before it (None when created)
    previous: str | None = None


def record_consent(conn: Connection, settings: Settings, now: datetime, *, contact: Any,
                   channel: str, purpose: str, action: str, source: str,
                   legal_basis: str = LegalBasis.CONSENT,
                   evidence: Mapping[str, Any] | None = None) -> int:
    """Append one consent decision with its evidence (see `record`); its record id."""
    return record(conn, settings, now, contact=contact, channel=channel, purpose=purpose,
                  action=action, source=source, legal_basis=legal_basis,
                  evidence=evidence).record_id


def record(conn: Connection, settings: Settings, now: datetime, *, contact: Any,
           channel: str, purpose: str, action: str, source: str,
           legal_basis: str = LegalBasis.CONSENT,
           evidence: Mapping[str, Any] | None = None) -> Recorded:
    """Append one consent decision with its evidence. Validates channel, purpose, basis.
    Says whether it changed the state in force (the record is appended either way)."""
    if channel not in {c.value for c in Channel}:
        raise ContactError(f"unknown channel {channel!r} (email or sms)")
    if purpose != ALL_PURPOSES and purpose not in settings.purposes:
        raise ContactError(f"unknown purpose {purpose!r} (declared: "
                           f"{', '.join(sorted(settings.purposes))})")
    if action not in {a.value for a in ConsentAction}:
        raise ContactError(f"unknown consent action {action!r}")
    if purpose == ALL_PURPOSES and action != ConsentAction.WITHDRAWN:
        raise ContactError(f"purpose '*' cannot be {action}: consent is given per purpose "
                           f"({', '.join(sorted(settings.purposes))}), with its evidence; "
                           "'*' only withdraws a whole channel")
    if legal_basis not in {b.value for b in LegalBasis}:
        raise ContactError(f"unknown legal basis {legal_basis!r}")
    address = contact.email if channel == Channel.EMAIL else contact.phone
    if not address:
        raise ContactError(f"contact {contact.id} has no {channel} address")
    granting = action in (ConsentAction.GRANTED, ConsentAction.CONFIRMED, ConsentAction.PENDING)
    if granting and is_suppressed(conn, address):
        raise ContactError(f"{address} is on the suppression list (bounced, complained or "
                           "erased): consent cannot be recorded for it")
    statuses = store.consent_statuses(conn, [contact.id])
    before = _in_force(statuses, contact.id, channel, purpose)
    record_id = store.append_consent(
        conn, contact_id=contact.id, channel=channel, purpose=purpose, action=action,
        legal_basis=legal_basis, source=source, address=address, evidence=dict(evidence or {}),
        now=now)
    store.update_contact(conn, contact.id, {"evaluate_at": now, "updated_at": now})
    if purpose == ALL_PURPOSES:  # the whole channel: a change if any purpose moves
        moved = [found for (_, ch, p) in statuses if ch == channel and p != ALL_PURPOSES
                 and (found := _in_force(statuses, contact.id, ch, p)) is not None
                 and found[0] != action]
        if moved:
            return Recorded(record_id, "updated", moved[0][0])
    if before is None:
        return Recorded(record_id, "created")
    # a withdrawal is the same whatever basis it names; a grant changes with its basis
    same = before[0] == action and (action == ConsentAction.WITHDRAWN
                                    or before[1] == legal_basis)
    return Recorded(record_id, "unchanged" if same else "updated", before[0])


def _in_force(statuses: Mapping[tuple[int, str, str], ConsentStatus], contact_id: int,
              channel: str, purpose: str) -> tuple[str, str] | None:
    """(action, basis) in force for one purpose: its latest decision, unless a later
    withdrawal of the whole channel overrides it; None when nothing was ever decided."""
    specific = statuses.get((contact_id, channel, purpose))
    if specific is None:
        return None
    wide = statuses.get((contact_id, channel, ALL_PURPOSES))
    if (purpose != ALL_PURPOSES and wide is not None
            and wide.action == ConsentAction.WITHDRAWN and wide.at >= specific.at):
        return ConsentAction.WITHDRAWN, specific.legal_basis
    return specific.action, specific.legal_basis


def withdraw_number(conn: Connection, now: datetime, *, phone: str, source: str,
                    evidence: Mapping[str, Any]) -> list[int]:
    """A STOP from a number: SMS withdrawn (every purpose) for every contact holding it,
    each with its own entry and the same evidence. The contacts it was recorded for."""
    holders = store.withdraw_number(conn, phone=phone, source=source, evidence=evidence,
                                    now=now)
    for contact_id in holders:
        store.update_contact(conn, contact_id, {"evaluate_at": now, "updated_at": now})
    return holders


def lift_number(conn: Connection, now: datetime, *, phone: str, source: str,
                evidence: Mapping[str, Any]) -> list[int]:
    """A START from the number itself: lifts the channel-wide SMS withdrawal of every
    contact holding it (their own purpose grants count again; a contact that never
    opted in still gets nothing). Only for the channel's signed provider inbound."""
    if is_suppressed(conn, phone):
        return []
    holders = store.contacts_holding(conn, phone)
    statuses = store.consent_statuses(conn, holders)
    lifted = [cid for cid in holders
              if (found := statuses.get((cid, Channel.SMS, ALL_PURPOSES))) is not None
              and found.action == ConsentAction.WITHDRAWN]
    for contact_id in lifted:
        store.append_consent(
            conn, contact_id=contact_id, channel=Channel.SMS, purpose=ALL_PURPOSES,
            action=ConsentAction.GRANTED, legal_basis=LegalBasis.CONSENT, source=source,
            address=phone, evidence={**evidence, "number": phone}, now=now)
        store.update_contact(conn, contact_id, {"evaluate_at": now, "updated_at": now})
    return lifted


def inherit_number_opt_out(conn: Connection, now: datetime, *, contact_id: int,
                           phone: str) -> int | None:
    """A contact that takes a number whose latest channel-wide SMS decision is a
    withdrawal (a STOP) inherits it: no marketing SMS until it opts in again with
    evidence, or the number texts START. The new entry names the one it copies.

    It counts from the number's STOP, or from the contact's own latest SMS decision when
    that is later (grants it gave for another number no longer count): a consent it gives
    from now on — in the same request included — is newer, and counts."""
    latest = store.latest_number_decision(conn, phone)
    if latest is None or latest["action"] != ConsentAction.WITHDRAWN:
        return None
    own = store.latest_decision_at(conn, contact_id, Channel.SMS)
    effective = max(latest["at"], own) if own is not None else latest["at"]
    evidence = {"number": phone, "inherits": latest["id"],
                "from_contact": latest["contact_id"], "from_source": latest["source"],
                "withdrawn_at": latest["at"].isoformat()}
    return store.append_consent_as_of(
        conn, contact_id=contact_id, channel=Channel.SMS, purpose=ALL_PURPOSES,
        action=ConsentAction.WITHDRAWN, source=NUMBER_OPT_OUT, address=phone,
        evidence=evidence, effective_at=effective, now=now)

