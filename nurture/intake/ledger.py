"""The consent ledger, written: one checked path for every grant and withdrawal.

The CLI, the consent API, the preference page, replies and provider feedback all
append through `record_consent`, which checks channel, purpose, action and basis, and
refuses to grant for a suppressed address.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance.hygiene import address_hash
from nurture.config.settings import Settings
from nurture.errors import ContactError
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction, LegalBasis


def is_suppressed(conn: Connection, *addresses: str | None) -> bool:
    hashes = {address_hash(a) for a in addresses if a}
    return bool(hashes and store.suppressed_among(conn, hashes))


def record_consent(conn: Connection, settings: Settings, now: datetime, *, contact: Any,
                   channel: str, purpose: str, action: str, source: str,
                   legal_basis: str = LegalBasis.CONSENT,
                   evidence: Mapping[str, Any] | None = None) -> int:
    """Append one consent decision with its evidence. Validates channel, purpose, basis."""
    if channel not in {c.value for c in Channel}:
        raise ContactError(f"unknown channel {channel!r} (email or sms)")
    if purpose != ALL_PURPOSES and purpose not in settings.purposes:
        raise ContactError(f"unknown purpose {purpose!r} (declared: "
                           f"{', '.join(sorted(settings.purposes))})")
    if action not in {a.value for a in ConsentAction}:
        raise ContactError(f"unknown consent action {action!r}")
    if legal_basis not in {b.value for b in LegalBasis}:
        raise ContactError(f"unknown legal basis {legal_basis!r}")
    address = contact.email if channel == Channel.EMAIL else contact.phone
    if not address:
        raise ContactError(f"contact {contact.id} has no {channel} address")
    granting = action in (ConsentAction.GRANTED, ConsentAction.CONFIRMED, ConsentAction.PENDING)
    if granting and is_suppressed(conn, address):
        raise ContactError(f"{address} is on the suppression list (bounced, complained or "
                           "erased): consent cannot be recorded for it")
    record = store.append_consent(
        conn, contact_id=contact.id, channel=channel, purpose=purpose, action=action,
        legal_basis=legal_basis, source=source, address=address, evidence=dict(evidence or {}),
        now=now)
    store.update_contact(conn, contact.id, {"evaluate_at": now, "updated_at": now})
    return record


