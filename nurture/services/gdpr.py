"""GDPR access (art. 15/20) and erasure (art. 17) for one contact.

Erasure is the one path allowed to delete consent ledger entries, so this module holds
its own SQL instead of adding delete functions to `store` (the audit test in
tests/test_gdpr.py fails on any update/delete of `consent_record` elsewhere). What stays
after erasure is only a SHA-256 hash of each address on the suppression list, so the
person is never imported or mailed again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, delete, or_, select

from nurture.compliance.hygiene import address_hash
from nurture.store import database as db
from nurture.store import queries as store

EXPORT_FORMAT = "nurture-contact-export/1"
ERASED = "erased"

#: every table holding a contact's data, in the order erasure deletes them
CONTACT_TABLES: tuple[tuple[str, Table], ...] = (
    ("consent_state", db.consent_state),
    ("consent_history", db.consent_record),
    ("changes", db.contact_change),
    ("steps", db.step_run),
    ("enrollments", db.enrollment),
    ("handoffs", db.handoff),
    ("events", db.event_t),
    ("messages", db.message),
)


def _addresses(contact: Any) -> list[str]:
    return [a for a in (contact.email, contact.phone) if a]


def _rows(conn: Connection, table: Table, contact_id: int) -> list[dict[str, Any]]:
    order = list(table.primary_key.columns)
    stmt = select(table).where(table.c.contact_id == contact_id).order_by(*order)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def export_contact(conn: Connection, contact: Any) -> dict[str, Any]:
    """Everything we hold about a contact: profile, events, messages (with their text),
    consent history and current state, score/stage changes, enrollments, handoffs, and
    whether its addresses are on the suppression list."""
    data: dict[str, Any] = {"format": EXPORT_FORMAT, "profile": dict(contact._mapping)}
    for name, table in CONTACT_TABLES:
        data[name] = _rows(conn, table, contact.id)
    hashes = {address_hash(a): a for a in _addresses(contact)}
    t = db.suppression
    rows = conn.execute(select(t.c.address_hash, t.c.reason, t.c.created_at)
                        .where(t.c.address_hash.in_(list(hashes))))
    data["suppression"] = [{"address": hashes[h], "reason": reason, "since": since}
                           for h, reason, since in rows]
    return data


@dataclass
class Erasure:
    """What `forget_contact` removed."""

    contact_id: int
    deleted: dict[str, int] = field(default_factory=dict)
    #: public ids of the erased messages (to remove their copies, e.g. outbox files)
    message_ids: list[str] = field(default_factory=list)
    #: how many address hashes were newly added to the suppression list
    suppressed: int = 0


def forget_contact(conn: Connection, contact: Any, now: datetime) -> Erasure:
    """Delete the contact's rows everywhere (consent ledger included), then suppress the
    hash of each of its addresses with reason `erased`. The caller's transaction makes it
    all-or-nothing."""
    erasure = Erasure(contact.id)
    m = db.message
    erasure.message_ids = list(conn.execute(
        select(m.c.public_id).where(m.c.contact_id == contact.id)).scalars())
    message_ids = select(m.c.id).where(m.c.contact_id == contact.id)
    for name, table in CONTACT_TABLES:
        where = table.c.contact_id == contact.id
        if table is db.event_t:  # provider events tied only to one of its messages
            where = or_(where, table.c.message_id.in_(message_ids))
        erasure.deleted[name] = conn.execute(delete(table).where(where)).rowcount or 0
    conn.execute(delete(db.contact).where(db.contact.c.id == contact.id))
    for address in _addresses(contact):
        erasure.suppressed += store.suppress(conn, address_hash(address), ERASED,
                                             f"contact {contact.id} erased", now)
    return erasure


def erase_outbox_files(outbox: Path, public_ids: list[str]) -> int:
    """Remove the outbox copies (.eml / .json) of erased messages. Returns how many."""
    removed = 0
    for public_id in public_ids:
        for path in (outbox / "email" / f"{public_id}.eml", outbox / "sms" / f"{public_id}.json"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
