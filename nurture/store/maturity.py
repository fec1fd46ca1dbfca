"""The queries of scoring, stages, handoffs and batched intake.

Kept beside `store.py` (which holds the shared queries) so each stays readable; the same
rules apply: plain values in, no commit, batched statements where a batch is at hand.
Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL so several daemons share the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, insert, select, update

from nurture.store import database as db
from nurture.store.codec import (
    driver_rows,
    driver_sql,
    execute_many,
    read_document,
    read_time,
    write_document,
    write_time,
)
from nurture.store.queries import chunks
from nurture.store.tables import LIVE_SQL
from nurture.views import ContactView


def _claim(conn: Connection, query: Select[Any]) -> Select[Any]:
    return query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def _fetch(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of a driver-level SELECT (`?` placeholders), as the driver's plain tuples:
    no result objects to build, nor for the garbage collector to track."""
    result = conn.exec_driver_sql(driver_sql(conn, sql), tuple(params))
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


class _Stamps:
    """Timestamps as the driver takes them (`codec.write_time`), each distinct one
    converted once: a batch's rows share a few (its `now`)."""

    def __init__(self, conn: Connection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"
        self.known: dict[datetime | None, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        found = self.known.get(value, self)
        if found is self:
            found = self.known[value] = write_time(value, self.sqlite)
        return found


def _update_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany UPDATE by id; every row carries the same keys."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "id"]
    assignments = ", ".join(f'"{k}" = ?' for k in keys)
    execute_many(conn, f"UPDATE {table.name} SET {assignments} WHERE id = ?", table, keys,
                 ([*(r[k] for k in keys), r["id"]] for r in rows))


# ---- contacts ------------------------------------------------------------------------


#: what a ContactView needs, decay_at and evaluate_at (the other timestamps are not read)
_VIEW = ("id", "email", "phone", "locale", "timezone", "country", "stage", "temperature",
         "score", "fit", "role_account", "attributes", "decay_at", "evaluate_at")


def contact_views(conn: Connection, ids: Iterable[int], lock: bool = False
                  ) -> tuple[dict[int, ContactView], dict[int, datetime | None]]:
    """Contacts as views, and when each decays next. With `lock` (to change scores) the
    rows are locked in id order on PostgreSQL, so two transactions never add points to
    the same stale score."""
    found, decay_at, _ = _views(conn, ids, lock, None)
    return found, decay_at


def lock_contacts(conn: Connection, ids: Iterable[int]
                  ) -> tuple[dict[int, ContactView], dict[int, datetime | None]]:
    return contact_views(conn, ids, lock=True)


def lock_for_scoring(conn: Connection, ids: Iterable[int], now: datetime
                     ) -> tuple[dict[int, ContactView], dict[int, datetime | None], set[int]]:
    """`lock_contacts`, and the contacts already due for journey evaluation by `now`
    (`evaluate_at` ≤ now): writing them spares rewriting that indexed column."""
    return _views(conn, ids, True, now)


def _views(conn: Connection, ids: Iterable[int], lock: bool, now: datetime | None
           ) -> tuple[dict[int, ContactView], dict[int, datetime | None], set[int]]:
    sqlite = conn.dialect.name == "sqlite"
    columns = ", ".join(f'"{name}"' for name in _VIEW)
    found: dict[int, ContactView] = {}
    decay_at: dict[int, datetime | None] = {}
    due: set[int] = set()
    times: dict[Any, datetime | None] = {}  # contacts scored together decay together
    for part in chunks(sorted(set(ids))):
        sql = f"SELECT {columns} FROM contact WHERE id IN ({_marks(len(part))}) ORDER BY id"
        if lock and not sqlite:
            sql += " FOR UPDATE"
        for (cid, email, phone, locale, zone, country, stage, temperature, score, fit,
             role_account, attributes, decays, evaluate) in _fetch(conn, sql, part):
            found[cid] = ContactView(cid, email, phone, locale, zone, country, stage,
                                     temperature, score, fit, bool(role_account),
                                     read_document(attributes) or {})
            if decays not in times:
                times[decays] = read_time(decays)
            decay_at[cid] = times[decays]
            if now is not None and evaluate is not None:
                if evaluate not in times:
                    times[evaluate] = read_time(evaluate)
                if times[evaluate] <= now:  # type: ignore[operator]
                    due.add(cid)
    return found, decay_at, due


def update_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _update_many(conn, db.contact, rows)


def mark_for_evaluation(conn: Connection, ids: Iterable[int], now: datetime) -> None:
    """Due for journey evaluation by `now` (rows already due are not rewritten)."""
    for part in chunks(sorted(set(ids))):
        sql = (f"UPDATE contact SET evaluate_at = ? WHERE id IN ({_marks(len(part))}) "
               "AND (evaluate_at IS NULL OR evaluate_at > ?)")
        execute_many(conn, sql, db.contact, ["evaluate_at"], [[now, *part, now]])


def contact_ids_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    t = db.contact
    found: dict[str, int] = {}
    for part in chunks(sorted({e.lower() for e in emails})):
        found.update({email: cid for cid, email in
                      conn.execute(select(t.c.id, t.c.email).where(t.c.email.in_(part)))})
    return found


def existing_contact_ids(conn: Connection, ids: Iterable[int]) -> set[int]:
    t = db.contact
    found: set[int] = set()
    for part in chunks(sorted(set(ids))):
        found.update(conn.execute(select(t.c.id).where(t.c.id.in_(part))).scalars())
    return found


def claim_decay(conn: Connection, now: datetime, limit: int) -> dict[int, datetime]:
    """Contacts whose scheduled decay is due (indexed on decay_at) → when it was due."""
    t = db.contact
    query = _claim(conn, select(t.c.id, t.c.decay_at).where(t.c.decay_at <= now)
                   .order_by(t.c.decay_at, t.c.id).limit(limit))
    return {cid: at for cid, at in conn.execute(query)}


def stale_prospects(conn: Connection, before: datetime, limit: int) -> list[int]:
    """Prospects that became prospects before `before` (sales did not accept them)."""
    t = db.contact
    query = _claim(conn, select(t.c.id).where(t.c.stage == "prospect",
                                              t.c.stage_changed_at <= before)
                   .order_by(t.c.stage_changed_at, t.c.id).limit(limit))
    return list(conn.execute(query).scalars())


# ---- changes and events --------------------------------------------------------------


#: the columns of `insert_changes` rows, in order
CHANGE_COLUMNS = ("contact_id", "field", "old", "new", "delta", "rule", "event_id", "reason",
                  "at")


_INSERT_CHANGE = (f"INSERT INTO contactchange ({', '.join(f'{c!r}' for c in CHANGE_COLUMNS)}) "
                  f"VALUES ({_marks(len(CHANGE_COLUMNS))})").replace("'", '"')


def insert_changes(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Explained changes, each row the values of CHANGE_COLUMNS (`at`, the only
    timestamp, last)."""
    if rows:
        stamp = _Stamps(conn)
        at = rows[0][-1]  # a batch's changes share their time
        bound = stamp(at)
        conn.exec_driver_sql(driver_sql(conn, _INSERT_CHANGE), [
            (*row[:-1], bound if row[-1] is at else stamp(row[-1])) for row in rows])


_SCORES = "AND field = 'score' "


def rule_hits_many(conn: Connection, contact_ids: Iterable[int], rule: str,
                   since: datetime, only_scores: bool = True) -> dict[int, int]:
    """contact → score changes made by `rule` since `since` (per-rule caps). Only score
    changes carry a score rule's name, unless fit rules are named alike (then the caller
    asks for `only_scores`): without it, the count is read from the index alone."""
    (stamp,) = driver_rows(conn, db.contact_change, ["at"], [[since]])[0]
    found: dict[int, int] = {}
    for part in chunks(sorted(set(contact_ids))):
        sql = ("SELECT contact_id, count(*) FROM contactchange "
               f"WHERE contact_id IN ({_marks(len(part))}) AND rule = ? AND at >= ? "
               f"{_SCORES if only_scores else ''}GROUP BY contact_id")
        found.update(dict(_fetch(conn, sql, [*part, rule, stamp])))
    return found


def qualifying_events(conn: Connection, contact_ids: Iterable[int],
                      limit: int = 20) -> dict[int, list[dict[str, Any]]]:
    """contact → its latest `limit` events that added points, with the points and the
    rule, newest first (handoff payloads)."""
    found: dict[int, list[dict[str, Any]]] = {}
    for part in chunks(sorted(set(contact_ids))):
        sql = ("SELECT q.contact_id, e.id, e.type, e.occurred_at, e.properties, q.delta, q.rule "
               "FROM (SELECT contact_id, event_id, delta, rule, id, row_number() OVER "
               "(PARTITION BY contact_id ORDER BY id DESC) AS latest FROM contactchange "
               f"WHERE contact_id IN ({_marks(len(part))}) AND field = 'score' AND delta > 0 "
               "AND event_id IS NOT NULL) AS q JOIN event AS e ON e.id = q.event_id "
               "WHERE q.latest <= ? ORDER BY q.contact_id, q.id DESC")
        for cid, eid, kind, at, properties, delta, rule in _fetch(conn, sql, [*part, limit]):
            found.setdefault(cid, []).append({
                "id": eid, "type": kind, "occurred_at": read_time(at),
                "properties": read_document(properties), "delta": delta, "rule": rule})
    return found


def set_event_properties(conn: Connection, event_id: int, properties: Mapping[str, Any]) -> None:
    t = db.event_t
    conn.execute(update(t).where(t.c.id == event_id).values(properties=dict(properties)))


#: the columns of an event row, in the order they are inserted
EVENT_COLUMNS = ("contact_id", "type", "source", "source_event_id", "occurred_at",
                 "received_at", "message_id", "properties", "raw")


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Store events once per (source, source_event_id): each row's new id, None for a
    replay (of an earlier event or of an earlier row of the same batch). Events with a
    source id go in one multi-row INSERT … ON CONFLICT DO NOTHING RETURNING per
    thousand: what it returns is exactly what this transaction stored."""
    t = db.event_t
    ids: list[int | None] = [None] * len(rows)
    keyed: dict[tuple[str, str], int] = {}
    plain: list[int] = []
    for index, row in enumerate(rows):
        if row.get("source_event_id") is None:
            plain.append(index)
        else:
            keyed.setdefault((row["source"], row["source_event_id"]), index)
    values = f"({_marks(len(EVENT_COLUMNS))})"
    stamp = _Stamps(conn)
    for part in chunks(list(keyed.values()), 1000):
        sql = (f"INSERT INTO event ({', '.join(EVENT_COLUMNS)}) "
               f"VALUES {', '.join(values for _ in part)} "
               "ON CONFLICT (source, source_event_id) DO NOTHING "
               "RETURNING id, source, source_event_id")
        bound: list[Any] = []  # the rows' values one after the other, as the driver takes them
        add = bound.extend
        for i in part:
            row = rows[i]
            add((row["contact_id"], row["type"], row["source"], row["source_event_id"],
                 stamp(row["occurred_at"]), stamp(row["received_at"]), row["message_id"],
                 write_document(row["properties"]), write_document(row["raw"])))
        for new_id, source, source_id in _fetch(conn, sql, bound):
            ids[keyed[(source, source_id)]] = new_id
    if plain:
        stmt = insert(t).returning(t.c.id, sort_by_parameter_order=True)
        for index, new_id in zip(plain, conn.execute(stmt, [rows[i] for i in plain]).scalars(),
                                 strict=True):
            ids[index] = new_id
    return ids


def message_channel(conn: Connection, message_id: int) -> str | None:
    t = db.message
    return conn.execute(select(t.c.channel).where(t.c.id == message_id)).scalar_one_or_none()


# ---- enrollments ---------------------------------------------------------------------


#: the condition of the partial index of live enrollments, word for word (SQLite uses
#: a partial index only for a query that says what it says)
_LIVE = LIVE_SQL.text


def _live_enrollment(conn: Connection) -> str:
    """`enrollment`, read through the index of live enrollments on SQLite: its planner
    would take the state index (every live row of the table) for a handful of contacts,
    where the contact index also holds every ended enrollment."""
    return "enrollment INDEXED BY uq_enrollment_live" if conn.dialect.name == "sqlite" \
        else "enrollment"


def waiting_for_many(conn: Connection, contact_ids: Iterable[int],
                     event_types: Iterable[str]) -> list[dict[str, Any]]:
    """Enrollments of these contacts waiting for one of these event types."""
    types = sorted(set(event_types))
    rows: list[dict[str, Any]] = []
    for part in chunks(sorted(set(contact_ids))):
        sql = (f"SELECT id, contact_id, state, wait_event FROM {_live_enrollment(conn)} "
               f"WHERE contact_id IN ({_marks(len(part))}) AND {_LIVE} AND state = 'waiting' "
               f"AND wait_event IN ({_marks(len(types))})")
        rows.extend({"id": i, "contact_id": c, "state": s, "wait_event": w}
                    for i, c, s, w in _fetch(conn, sql, [*part, *types]))
    return rows


def live_enrollments(conn: Connection, contact_ids: Iterable[int]) -> list[dict[str, Any]]:
    """What exits and entries read of the live enrollments of these contacts."""
    rows: list[dict[str, Any]] = []
    for part in chunks(sorted(set(contact_ids))):
        sql = ('SELECT id, contact_id, journey_id, purpose, "exclusive", state '
               f"FROM {_live_enrollment(conn)} "
               f"WHERE contact_id IN ({_marks(len(part))}) AND {_LIVE}")
        rows.extend({"id": i, "contact_id": c, "journey_id": j, "purpose": p,
                     "exclusive": bool(x), "state": s}
                    for i, c, j, p, x, s in _fetch(conn, sql, part))
    return rows


def enrollment(conn: Connection, enrollment_id: int) -> dict[str, Any] | None:
    found = conn.execute(select(db.enrollment).where(db.enrollment.c.id == enrollment_id))
    row = found.mappings().first()
    return dict(row) if row else None


def update_enrollments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _update_many(conn, db.enrollment, rows)


# ---- handoffs ------------------------------------------------------------------------


def insert_handoffs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Handoffs to deliver (rows with the same keys), in one statement."""
    if rows:
        columns = list(rows[0])
        sql = (f"INSERT INTO handoff ({', '.join(columns)}) "
               f"VALUES ({_marks(len(columns))})")
        execute_many(conn, sql, db.handoff, columns, ([r[c] for c in columns] for r in rows))


def claim_handoffs(conn: Connection, now: datetime, limit: int,
                   lease_until: datetime) -> list[dict[str, Any]]:
    """Due handoffs, pushed to `lease_until` so no other daemon posts them meanwhile."""
    t = db.handoff
    query = _claim(conn, select(t).where(t.c.state == "pending", t.c.next_attempt_at <= now)
                   .order_by(t.c.next_attempt_at, t.c.id).limit(limit))
    rows = [dict(r) for r in conn.execute(query).mappings()]
    if rows:
        conn.execute(update(t).where(t.c.id.in_([r["id"] for r in rows]))
                     .values(next_attempt_at=lease_until))
    return rows


def update_handoff(conn: Connection, handoff_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(db.handoff).where(db.handoff.c.id == handoff_id).values(**values))


def earlier_handoff(conn: Connection, contact_id: int, before_id: int,
                    since: datetime) -> int | None:
    """An earlier, not failed, handoff of this contact created since `since`."""
    t = db.handoff
    stmt = (select(t.c.id).where(t.c.contact_id == contact_id, t.c.id < before_id,
                                 t.c.created_at >= since,
                                 t.c.state.in_(["pending", "delivered", "recorded"]))
            .order_by(t.c.id).limit(1))
    return conn.execute(stmt).scalar_one_or_none()


def contact_handoffs(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    t = db.handoff
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.id)
    return [dict(r) for r in conn.execute(stmt).mappings()]
