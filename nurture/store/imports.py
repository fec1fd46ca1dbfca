"""The queries of bulk imports (`nurture import`, `nurture event import`): set-based.

Each function handles a chunk of rows in a few statements (`executemany` through
`codec.execute_many`, `IN` lists of at most `queries.CHUNK`), inside the caller's
transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from nurture.store import database as db
from nurture.store.codec import driver_rows, driver_sql, execute_many, read_document
from nurture.store.queries import chunks

#: what an import compares and may change of an existing contact
_STORED = ("id", "email", "phone", "locale", "timezone", "country", "role_account",
           "attributes")


@dataclass(frozen=True)
class StoredContact:
    """An existing contact as an import sees it."""

    id: int
    email: str | None
    phone: str | None
    locale: str
    timezone: str
    country: str | None
    role_account: bool
    attributes: dict[str, Any]


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def _select(conn: Connection, where: str, values: Sequence[Any]) -> list[StoredContact]:
    columns = ", ".join(f'"{c}"' for c in _STORED)
    sql = f"SELECT {columns} FROM contact WHERE {where} ORDER BY id"
    result = conn.exec_driver_sql(driver_sql(conn, sql), tuple(values))
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    return [StoredContact(cid, email, phone, locale, zone, country, bool(role),
                          read_document(attributes) or {})
            for cid, email, phone, locale, zone, country, role, attributes in rows]


def contacts_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, StoredContact]:
    """Existing contacts whose stored email is one of `emails` (stored emails are
    lowercase), by that email."""
    found: dict[str, StoredContact] = {}
    for part in chunks(sorted(set(emails))):
        for contact in _select(conn, f"email IN ({_marks(len(part))})", part):
            found[contact.email or ""] = contact
    return found


def contacts_by_phone(conn: Connection, phones: Iterable[str],
                      without_email: bool = False) -> dict[str, StoredContact]:
    """The oldest existing contact holding each of these E.164 numbers (with
    `without_email`, among those that have no email)."""
    found: dict[str, StoredContact] = {}
    extra = " AND email IS NULL" if without_email else ""
    for part in chunks(sorted(set(phones))):
        for contact in _select(conn, f"phone IN ({_marks(len(part))}){extra}", part):
            found.setdefault(contact.phone or "", contact)
    return found


def insert_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """New contacts (every row with the same keys), in one statement."""
    if not rows:
        return 0
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"INSERT INTO contact ({names}) VALUES ({_marks(len(columns))})"
    return execute_many(conn, sql, db.contact, columns, ([r[c] for c in columns] for r in rows))


def update_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Contacts by id; one statement per set of changed columns."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(k for k in row if k != "id"), []).append(row)
    for keys, group in groups.items():
        assignments = ", ".join(f'"{k}" = ?' for k in keys)
        execute_many(conn, f"UPDATE contact SET {assignments} WHERE id = ?", db.contact,
                     keys, ([*(r[k] for k in keys), r["id"]] for r in group))


def suppression_reasons(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """address hash → why it is on the suppression list (erased, bounce, complaint…)."""
    t = db.suppression
    found: dict[str, str] = {}
    for part in chunks(sorted(set(hashes))):
        rows = conn.execute(select(t.c.address_hash, t.c.reason)
                            .where(t.c.address_hash.in_(part)))
        found.update((digest, reason) for digest, reason in rows)
    return found


def ledger_high_water(conn: Connection) -> int:
    """The latest consent record id: records appended after it are this transaction's."""
    t = db.consent_record
    return int(conn.execute(select(func.coalesce(func.max(t.c.id), 0))).scalar_one())


#: the columns of `append_consents` rows, in order
CONSENT_COLUMNS = ("contact_id", "channel", "purpose", "action", "legal_basis", "source",
                   "address", "evidence", "recorded_at")


def append_consents(conn: Connection, rows: Sequence[Sequence[Any]], source: str,
                    now: datetime) -> int:
    """Append ledger entries (each row the values of CONSENT_COLUMNS, all with `source`
    and recorded at `now`, at most one per contact, channel and purpose), then move the
    current state of each to its new entry, in one statement. The caller bumps the
    ledger version. Returns how many entries were appended."""
    if not rows:
        return 0
    after = ledger_high_water(conn)
    names = ", ".join(CONSENT_COLUMNS)
    execute_many(conn, f"INSERT INTO consentrecord ({names}) "
                 f"VALUES ({_marks(len(CONSENT_COLUMNS))})",
                 db.consent_record, CONSENT_COLUMNS, rows)
    (stamp,) = driver_rows(conn, db.consent_record, ["recorded_at"], [[now]])[0]
    sql = ("INSERT INTO consentstate (contact_id, channel, purpose, action, legal_basis, "
           "record_id, updated_at) SELECT contact_id, channel, purpose, action, legal_basis, "
           "id, recorded_at FROM consentrecord WHERE id > ? AND recorded_at = ? AND source = ? "
           "ON CONFLICT (contact_id, channel, purpose) DO UPDATE SET action = excluded.action, "
           "legal_basis = excluded.legal_basis, record_id = excluded.record_id, "
           "updated_at = excluded.updated_at")
    conn.exec_driver_sql(driver_sql(conn, sql), (after, stamp, source))
    return len(rows)


def opted_out_numbers(conn: Connection, phones: Iterable[str]) -> set[str]:
    """The numbers among `phones` held by a contact whose SMS consent is withdrawn
    channel-wide (a STOP): the only ones `ledger.inherit_number_opt_out` can act on."""
    c, s = db.contact, db.consent_state
    found: set[str] = set()
    for part in chunks(sorted(set(phones))):
        stmt = (select(c.c.phone).distinct().join(s, s.c.contact_id == c.c.id)
                .where(c.c.phone.in_(part), s.c.channel == "sms", s.c.purpose == "*",
                       s.c.action == "withdrawn"))
        found.update(conn.execute(stmt).scalars())
    return found


def contact_ids_by_phone(conn: Connection, phones: Iterable[str]) -> dict[str, int]:
    """E.164 number → the oldest contact holding it (events naming their contact by phone)."""
    return {phone: contact.id for phone, contact in contacts_by_phone(conn, phones).items()}

