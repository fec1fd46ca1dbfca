"""The queries: the only module (with `work.py`) that writes SQL.

Functions take an open `Connection` (one transaction) and plain values; they never
commit on their own, so callers decide what is atomic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nurture.compliance.consent import ConsentStatus
from nurture.store import codec
from nurture.store import database as db
from nurture.store import tables as models
from nurture.store.codec import execute_many
from nurture.views import ContactView

CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _dialect_insert(conn: Connection, table: Table) -> Any:
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any],
                  keys: Sequence[str]) -> int | None:
    """Insert unless a row with the same `keys` exists; the new id, or None."""
    stmt = _dialect_insert(conn, table).values(**values).on_conflict_do_nothing(
        index_elements=list(keys)).returning(table.c.id)
    return conn.execute(stmt).scalar_one_or_none()


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> None:
    stmt = _dialect_insert(conn, table).values(**values)
    changes = {k: stmt.excluded[k] for k in values if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changes))


# ---- contacts -------------------------------------------------------------------------


def insert_contact(conn: Connection, values: Mapping[str, Any]) -> int:
    return int(conn.execute(insert(db.contact).values(**values)
                            .returning(db.contact.c.id)).scalar_one())


def contact_row(conn: Connection, *, contact_id: int | None = None, email: str | None = None,
                phone: str | None = None) -> Row[Any] | None:
    t = db.contact
    if contact_id is not None:
        where = t.c.id == contact_id
    elif email is not None:
        where = t.c.email == email.lower()
    elif phone is not None:
        where = t.c.phone == phone
    else:
        return None
    return conn.execute(select(t).where(where).limit(1)).first()


def update_contact(conn: Connection, contact_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(db.contact).where(db.contact.c.id == contact_id).values(**values))


VIEW_COLUMNS = ("id", "email", "phone", "locale", "timezone", "country", "stage",
                "temperature", "score", "fit", "role_account", "attributes")


def _in_chunks(conn: Connection, sql: str, values: Sequence[Any],
               before: Sequence[Any] = (), after: Sequence[Any] = ()) -> Iterable[tuple[Any, ...]]:
    """The rows of `sql`, whose `{in}` is a list of placeholders, for `values` a chunk at
    a time (`before` and `after`: the parameters around the list)."""
    for part in chunks(values):
        marks = ", ".join("?" * len(part))
        yield from codec.driver_read(conn, sql.replace("{in}", marks), [*before, *part, *after])


def load_contacts(conn: Connection, ids: Sequence[int]) -> dict[int, ContactView]:
    """The contacts as the steps see them: only the columns a view needs (no timestamps
    to convert), fetched in chunks."""
    sql = f"SELECT {', '.join(VIEW_COLUMNS)} FROM contact WHERE id IN ({{in}})"
    read = codec.read_document
    found: dict[int, ContactView] = {}
    for row in _in_chunks(conn, sql, list(ids)):
        found[row[0]] = ContactView(*row[:10], role_account=bool(row[10]),  # type: ignore[misc]
                                    attributes=dict(read(row[11]) or {}))
    return found


def contacts_to_evaluate(conn: Connection, now: datetime, limit: int) -> list[int]:
    """Contacts due for entry evaluation, locked for this transaction (other daemons skip them)."""
    t = db.contact
    stmt = select(t.c.id).where(t.c.evaluate_at <= now).order_by(t.c.evaluate_at).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.execute(stmt).scalars())


def flag_for_evaluation(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    """Their journey entries are evaluated on the next tick."""
    for part in chunks(sorted(set(ids))):
        conn.execute(update(db.contact).where(db.contact.c.id.in_(part)).values(evaluate_at=now))


def mark_evaluated(conn: Connection, ids: Sequence[int]) -> None:
    for part in chunks(list(ids)):
        conn.execute(update(db.contact).where(db.contact.c.id.in_(part)).values(evaluate_at=None))


def record_change(conn: Connection, contact_id: int, field: str, old: Any, new: Any, now: datetime,
                  *, delta: float | None = None, rule: str = "", event_id: int | None = None,
                  reason: str = "") -> None:
    conn.execute(insert(db.contact_change).values(
        contact_id=contact_id, field=field, old="" if old is None else str(old),
        new="" if new is None else str(new), delta=delta, rule=rule, event_id=event_id,
        reason=reason, at=now))


# ---- consent and suppression ----------------------------------------------------------


#: the one row of `ledgerversion`
LEDGER = "ledger"


def ledger_version(conn: Connection) -> int:
    """The consent/suppression version (see `tables.LedgerVersion`)."""
    t = db.ledger_version
    found = conn.execute(select(t.c.version).where(t.c.name == LEDGER)).scalar_one_or_none()
    return int(found or 0)


def ledger_version_reader(conn: Connection) -> Callable[[], int]:
    """`ledger_version` as a function to call before every provider call: one prepared
    statement on the driver's own cursor (a few microseconds, no SQLAlchemy round)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql = codec.driver_sql(conn, "SELECT version FROM ledgerversion WHERE name = ?")
    params = (LEDGER,)

    def read() -> int:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    return read


def bump_ledger_version(conn: Connection) -> None:
    """In every transaction that changes consent or suppression (`tables.LedgerVersion`)."""
    t = db.ledger_version
    stmt = _dialect_insert(conn, t).values(name=LEDGER, version=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"],
                                            set_={"version": t.c.version + 1}))


def append_consent(conn: Connection, *, contact_id: int, channel: str, purpose: str, action: str,
                   legal_basis: str, source: str, address: str, evidence: Mapping[str, Any],
                   now: datetime) -> int:
    """Append to the ledger (never updated) and move the current state forward."""
    record_id = conn.execute(insert(db.consent_record).values(
        contact_id=contact_id, channel=channel, purpose=purpose, action=action,
        legal_basis=legal_basis, source=source, address=address, evidence=dict(evidence),
        recorded_at=now).returning(db.consent_record.c.id)).scalar_one()
    upsert(conn, db.consent_state, {
        "contact_id": contact_id, "channel": channel, "purpose": purpose, "action": action,
        "legal_basis": legal_basis, "record_id": record_id, "updated_at": now,
    }, keys=("contact_id", "channel", "purpose"))
    bump_ledger_version(conn)
    return int(record_id)


def consent_statuses(conn: Connection,
                     contact_ids: Sequence[int]) -> dict[tuple[int, str, str], ConsentStatus]:
    sql = ("SELECT contact_id, channel, purpose, action, legal_basis, updated_at "
           "FROM consentstate WHERE contact_id IN ({in})")
    read = codec.read_time
    return {(cid, channel, purpose): ConsentStatus(action, basis, read(at))  # type: ignore[arg-type]
            for cid, channel, purpose, action, basis, at
            in _in_chunks(conn, sql, list(contact_ids))}


def consent_history(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    t = db.consent_record
    rows = conn.execute(select(t).where(t.c.contact_id == contact_id).order_by(t.c.id))
    return [dict(r) for r in rows.mappings()]


def consent_record(conn: Connection, record_id: int) -> dict[str, Any] | None:
    t = db.consent_record
    found = conn.execute(select(t).where(t.c.id == record_id)).mappings().first()
    return dict(found) if found else None


def suppress(conn: Connection, address_hash: str, reason: str, detail: str, now: datetime) -> bool:
    """Add to the suppression list; False when it was there already."""
    new_id = insert_ignore(conn, db.suppression, {
        "address_hash": address_hash, "reason": reason, "detail": detail, "created_at": now,
    }, keys=("address_hash",))
    if new_id is not None:
        bump_ledger_version(conn)
    return new_id is not None


def suppressed_among(conn: Connection, hashes: Iterable[str]) -> set[str]:
    sql = "SELECT address_hash FROM suppression WHERE address_hash IN ({in})"
    return {row[0] for row in _in_chunks(conn, sql, sorted(set(hashes)))}


def contacts_holding(conn: Connection, phone: str) -> list[int]:
    """Every contact with this phone number (people share numbers: a family, a desk)."""
    t = db.contact
    return list(conn.execute(select(t.c.id).where(t.c.phone == phone).order_by(t.c.id))
                .scalars())


def withdraw_number(conn: Connection, *, phone: str, source: str, evidence: Mapping[str, Any],
                    now: datetime) -> list[int]:
    """A channel-wide SMS withdrawal for every contact holding the number, each its own
    ledger entry with the same evidence. The contacts it was recorded for."""
    holders = contacts_holding(conn, phone)
    for contact_id in holders:
        append_consent(conn, contact_id=contact_id, channel="sms", purpose="*",
                       action="withdrawn", legal_basis="consent", source=source, address=phone,
                       evidence={**evidence, "number": phone}, now=now)
    return holders


def latest_number_decision(conn: Connection, phone: str) -> dict[str, Any] | None:
    """The latest channel-wide SMS decision recorded for this number among the contacts
    holding it now: its ledger entry, with `at`, the time it counts from.

    Through the holders (an indexed column) rather than the ledger's `address`, which is
    not indexed: a number no contact holds any more has no decision here."""
    s, r, c = db.consent_state, db.consent_record, db.contact
    stmt = (select(r, s.c.updated_at.label("at"))
            .select_from(s.join(r, r.c.id == s.c.record_id).join(c, c.c.id == s.c.contact_id))
            .where(c.c.phone == phone, s.c.channel == "sms", s.c.purpose == "*",
                   r.c.address == phone)
            .order_by(s.c.updated_at.desc(), s.c.record_id.desc()).limit(1))
    found = conn.execute(stmt).mappings().first()
    return dict(found) if found else None


def latest_decision_at(conn: Connection, contact_id: int, channel: str) -> datetime | None:
    """When the contact's latest decision on this channel (any purpose) counts from."""
    t = db.consent_state
    stmt = select(func.max(t.c.updated_at)).where(t.c.contact_id == contact_id,
                                                  t.c.channel == channel)
    found: datetime | None = conn.execute(stmt).scalar_one_or_none()
    return found


def append_consent_as_of(conn: Connection, *, contact_id: int, channel: str, purpose: str,
                         action: str, source: str, address: str, evidence: Mapping[str, Any],
                         effective_at: datetime, now: datetime) -> int:
    """Append to the ledger (recorded `now`) a decision that counts from `effective_at`:
    a decision the contact inherits (its number's STOP) took effect before it was copied
    here, so a consent given after it — in the same instant included — is newer."""
    record_id = conn.execute(insert(db.consent_record).values(
        contact_id=contact_id, channel=channel, purpose=purpose, action=action,
        legal_basis="consent", source=source, address=address, evidence=dict(evidence),
        recorded_at=now).returning(db.consent_record.c.id)).scalar_one()
    upsert(conn, db.consent_state, {
        "contact_id": contact_id, "channel": channel, "purpose": purpose, "action": action,
        "legal_basis": "consent", "record_id": record_id, "updated_at": effective_at,
    }, keys=("contact_id", "channel", "purpose"))
    bump_ledger_version(conn)
    return int(record_id)


# ---- events ---------------------------------------------------------------------------


def insert_event(conn: Connection, values: Mapping[str, Any]) -> int | None:
    """Store an event once per (source, source_event_id); None for a replay."""
    if values.get("source_event_id") is None:
        return int(conn.execute(insert(db.event_t).values(**values)
                                .returning(db.event_t.c.id)).scalar_one())
    return insert_ignore(conn, db.event_t, values, keys=("source", "source_event_id"))


EventCounts = dict[tuple[int, str, Any], int]


def event_counts(conn: Connection, contact_ids: Sequence[int],
                 wanted: Iterable[tuple[str, Any]], now: datetime) -> EventCounts:
    """(contact, type, window) → count of events in that window (None: ever)."""
    t = db.event_t
    found: dict[tuple[int, str, Any], int] = {}
    for event_type, window in set(wanted):
        for part in chunks(list(contact_ids)):
            where = [t.c.contact_id.in_(part), t.c.type == event_type]
            if window is not None:
                where.append(t.c.occurred_at >= now - window)
            stmt = select(t.c.contact_id, func.count()).where(*where).group_by(t.c.contact_id)
            for cid, count in conn.execute(stmt):
                found[(cid, event_type, window)] = count
    return found


def contact_events(conn: Connection, contact_id: int, limit: int = 200) -> list[dict[str, Any]]:
    t = db.event_t
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.occurred_at.desc(),
                                                                  t.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def contact_changes(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    t = db.contact_change
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.at, t.c.id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def rule_hits(conn: Connection, contact_id: int, rule: str, since: datetime) -> int:
    t = db.contact_change
    stmt = select(func.count()).where(t.c.contact_id == contact_id, t.c.rule == rule,
                                      t.c.at >= since, t.c.field == "score")
    return conn.execute(stmt).scalar_one()


# ---- enrollments ----------------------------------------------------------------------


def state_in(states: Sequence[str]) -> Any:
    """`enrollment.state IN (...)` as an expression SQLite cannot answer from the state
    index: with it, SQLite read every live enrollment of the table for a handful of
    contacts (the contact index is the selective one)."""
    return (db.enrollment.c.state + "").in_(list(states))


def live_enrollments(conn: Connection, contact_ids: Sequence[int],
                     states: Sequence[str]) -> list[dict[str, Any]]:
    t = db.enrollment
    rows: list[dict[str, Any]] = []
    for part in chunks(list(contact_ids)):
        stmt = select(t).where(t.c.contact_id.in_(part), state_in(list(states)))
        rows.extend(dict(r) for r in conn.execute(stmt).mappings())
    return rows


def last_ended(conn: Connection, contact_ids: Sequence[int]) -> dict[tuple[int, str], datetime]:
    """(contact, journey) → when the latest ended enrollment ended (re-entry policy)."""
    t = db.enrollment
    found: dict[tuple[int, str], datetime] = {}
    for part in chunks(list(contact_ids)):
        stmt = (select(t.c.contact_id, t.c.journey_id, func.max(t.c.ended_at))
                .where(t.c.contact_id.in_(part)).group_by(t.c.contact_id, t.c.journey_id))
        for cid, jid, ended in conn.execute(stmt):
            found[(cid, jid)] = ended
    return found


def insert_enrollments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Enroll, in one statement for the batch. A contact already live in that journey
    (another daemon, another request, an earlier row of `rows`) is left as it is: the
    partial unique index `uq_enrollment_live` decides, so a contact is never live twice in
    one journey. Returns how many were added."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:  # rows from one source share their keys: one group
        groups.setdefault(tuple(row), []).append(row)
    added = 0
    for columns, group in groups.items():
        names = ", ".join(f'"{c}"' for c in columns)
        sql = (f"INSERT INTO enrollment ({names}) VALUES ({', '.join('?' for _ in columns)}) "
               f"ON CONFLICT (contact_id, journey_id) WHERE {models.LIVE_SQL.text} DO NOTHING")
        added += execute_many(conn, sql, db.enrollment, columns,
                              ([row[c] for c in columns] for row in group))
    return added


def contact_enrollments(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    t = db.enrollment
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def update_enrollment(conn: Connection, enrollment_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(db.enrollment).where(db.enrollment.c.id == enrollment_id).values(**values))


def waiting_for(conn: Connection, contact_id: int, event_type: str) -> list[dict[str, Any]]:
    t = db.enrollment
    stmt = select(t).where(t.c.contact_id == contact_id, state_in(["waiting"]),
                           t.c.wait_event == event_type)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def last_message_enrollment(conn: Connection, contact_id: int, channel: str | None) -> int | None:
    """The enrollment that sent this contact's latest message (stop-on-reply)."""
    t = db.message
    where = [t.c.contact_id == contact_id, t.c.enrollment_id.is_not(None),
             t.c.state.not_in(["skipped"])]
    if channel:
        where.append(t.c.channel == channel)
    stmt = select(t.c.enrollment_id).where(*where).order_by(t.c.id.desc()).limit(1)
    return conn.execute(stmt).scalar_one_or_none()


# ---- messages -------------------------------------------------------------------------


def contact_messages(conn: Connection, contact_id: int, limit: int = 200) -> list[dict[str, Any]]:
    t = db.message
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def message_by_public_id(conn: Connection, public_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(db.message).where(db.message.c.public_id == public_id)).mappings()
    found = row.first()
    return dict(found) if found else None


def message_by_provider_id(conn: Connection, provider_id: str) -> dict[str, Any] | None:
    t = db.message
    found = conn.execute(select(t).where(t.c.provider_message_id == provider_id)).mappings().first()
    return dict(found) if found else None


def update_message(conn: Connection, message_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(db.message).where(db.message.c.id == message_id).values(**values))


def pressure_counts(conn: Connection, contact_ids: Sequence[int], since: datetime,
                    states: Sequence[str]) -> dict[tuple[int, str], int]:
    """(contact, channel) → messages that count against caps since `since`."""
    states = list(states)
    sql = ("SELECT contact_id, channel, count(*) FROM message WHERE contact_id IN ({in}) "
           f"AND created_at >= ? AND state IN ({', '.join('?' * len(states))}) "
           "GROUP BY contact_id, channel")
    after = [codec.write_time(since, conn.dialect.name == "sqlite"), *states]
    return {(cid, channel): count
            for cid, channel, count in _in_chunks(conn, sql, list(contact_ids), after=after)}


def expire_sending(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Messages whose send outcome is unknown after a crash: marked, never resent as
    they are (`send.expire_and_reconcile` looks for their fate). The rows it marked."""
    t = db.message
    result = conn.execute(update(t).where(models.SENDING_SQL, t.c.lease_until < now)
                          .values(state="unknown", updated_at=now,
                                  error="outcome unknown: the daemon stopped during the send")
                          .returning(t))
    return [dict(r) for r in result.mappings()]


@dataclass(frozen=True)
class Pending:
    """What a tick may find to do at `now`, read in one statement (an idle tick then
    takes no write lock for the rest)."""

    #: messages `sending` past their lease
    expired: bool
    #: retries whose time has come
    retries: bool
    #: contacts flagged for (re)evaluation
    evaluations: bool
    #: journeys whose entry sweep is not finished
    sweeps: bool
    #: enrollments due (claimed or not)
    due: bool


def pending_work(conn: Connection, now: datetime) -> Pending:
    stamp = codec.write_time(now, conn.dialect.name == "sqlite")
    sql = ("SELECT EXISTS (SELECT 1 FROM message WHERE state = 'sending' AND lease_until < ?), "
           "EXISTS (SELECT 1 FROM message WHERE state = 'retrying' AND next_attempt_at <= ?), "
           "EXISTS (SELECT 1 FROM contact WHERE evaluate_at <= ?), "
           "EXISTS (SELECT 1 FROM journeystate WHERE sweep_after IS NOT NULL "
           "AND version IS NOT NULL), "
           "EXISTS (SELECT 1 FROM enrollment WHERE next_run_at <= ?)")
    [row] = codec.driver_read(conn, sql, (stamp,) * 4)
    return Pending(*(bool(value) for value in row))


def release_expired_claims(conn: Connection, now: datetime) -> None:
    t = db.enrollment
    conn.execute(update(t).where(and_(t.c.claimed_until.is_not(None), t.c.claimed_until < now))
                 .values(claimed_by=None, claimed_until=None))


def unclaimed(now: datetime) -> Any:
    t = db.enrollment
    return or_(t.c.claimed_until.is_(None), t.c.claimed_until < now)


# ---- handoffs -------------------------------------------------------------------------


def insert_handoff(conn: Connection, contact_id: int, reason: str, source: str,
                   now: datetime, payload: Mapping[str, Any] | None = None,
                   notify: bool = True) -> int:
    return int(conn.execute(insert(db.handoff).values(
        contact_id=contact_id, reason=reason, payload=dict(payload or {"source": source}),
        notify=notify, state="pending", attempts=0, next_attempt_at=now, last_error="",
        created_at=now).returning(db.handoff.c.id)).scalar_one())


def live_positions(conn: Connection, states: Sequence[str]) -> dict[tuple[str, str | None], int]:
    """(journey, step) → how many live enrollments stand there."""
    t = db.enrollment
    stmt = (select(t.c.journey_id, t.c.step_id, func.count()).where(t.c.state.in_(list(states)))
            .group_by(t.c.journey_id, t.c.step_id))
    return {(jid, sid): count for jid, sid, count in conn.execute(stmt)}
