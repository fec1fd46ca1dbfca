"""The queries of scoring, stages, handoffs and batched intake.

Kept beside `store.py` (which holds the shared queries) so each stays readable; the same
rules apply: plain values in, no commit, batched statements where a batch is at hand.
Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL so several daemons share the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nurture import db
from nurture.models import LIVE_SQL
from nurture.store import chunks, state_in
from nurture.views import ContactView


def _claim(conn: Connection, query: Select[Any]) -> Select[Any]:
    return query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query


def _update_many(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany UPDATE by id; every row carries the same keys."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "id"]
    stmt = (update(table).where(table.c.id == bindparam("_id"))
            .values({k: bindparam(k) for k in keys}))
    conn.execute(stmt, [{"_id": r["id"], **{k: r[k] for k in keys}} for r in rows])


# ---- contacts ------------------------------------------------------------------------


#: what a ContactView needs (the other timestamps are not read: converting them costs)
_VIEW = ("id", "email", "phone", "locale", "timezone", "country", "stage", "temperature",
         "score", "fit", "role_account", "attributes", "decay_at")


def contact_views(conn: Connection, ids: Iterable[int], lock: bool = False
                  ) -> tuple[dict[int, ContactView], dict[int, datetime | None]]:
    """Contacts as views, and when each decays next. With `lock` (to change scores) the
    rows are locked in id order on PostgreSQL, so two transactions never add points to
    the same stale score."""
    t = db.contact
    columns = [t.c[name] for name in _VIEW]
    found: dict[int, ContactView] = {}
    decay_at: dict[int, datetime | None] = {}
    for part in chunks(sorted(set(ids))):
        query = select(*columns).where(t.c.id.in_(part)).order_by(t.c.id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query).mappings():
            found[row["id"]] = ContactView.from_row(dict(row))
            decay_at[row["id"]] = row["decay_at"]
    return found, decay_at


def lock_contacts(conn: Connection, ids: Iterable[int]
                  ) -> tuple[dict[int, ContactView], dict[int, datetime | None]]:
    return contact_views(conn, ids, lock=True)


def update_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _update_many(conn, db.contact, rows)


def mark_for_evaluation(conn: Connection, ids: Iterable[int], now: datetime) -> None:
    """Due for journey evaluation by `now` (rows already due are not rewritten)."""
    t = db.contact
    for part in chunks(sorted(set(ids))):
        conn.execute(update(t).where(t.c.id.in_(part), or_(t.c.evaluate_at.is_(None),
                                                           t.c.evaluate_at > now))
                     .values(evaluate_at=now))


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


def insert_changes(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(insert(db.contact_change), list(rows))


def rule_hits_many(conn: Connection, contact_ids: Iterable[int], rule: str,
                   since: datetime) -> dict[int, int]:
    """contact → score changes made by `rule` since `since` (per-rule caps)."""
    t = db.contact_change
    found: dict[int, int] = {}
    for part in chunks(sorted(set(contact_ids))):
        stmt = (select(t.c.contact_id, func.count())
                .where(t.c.contact_id.in_(part), t.c.rule == rule, t.c.at >= since,
                       t.c.field == "score").group_by(t.c.contact_id))
        found.update({cid: count for cid, count in conn.execute(stmt)})
    return found


def qualifying_events(conn: Connection, contact_ids: Iterable[int],
                      limit: int = 20) -> dict[int, list[dict[str, Any]]]:
    """contact → its latest `limit` events that added points, with the points and the
    rule, newest first (handoff payloads)."""
    c, e = db.contact_change, db.event_t
    found: dict[int, list[dict[str, Any]]] = {}
    for part in chunks(sorted(set(contact_ids))):
        rank = func.row_number().over(partition_by=c.c.contact_id, order_by=c.c.id.desc())
        latest = (select(c.c.contact_id, c.c.event_id, c.c.delta, c.c.rule, c.c.id,
                         rank.label("rank"))
                  .where(c.c.contact_id.in_(part), c.c.field == "score", c.c.delta > 0,
                         c.c.event_id.is_not(None)).subquery())
        stmt = (select(latest.c.contact_id, e.c.id, e.c.type, e.c.occurred_at, e.c.properties,
                       latest.c.delta, latest.c.rule)
                .join(e, e.c.id == latest.c.event_id).where(latest.c.rank <= limit)
                .order_by(latest.c.contact_id, latest.c.id.desc()))
        for row in conn.execute(stmt).mappings():
            item = dict(row)
            found.setdefault(item.pop("contact_id"), []).append(item)
    return found


def set_event_properties(conn: Connection, event_id: int, properties: Mapping[str, Any]) -> None:
    t = db.event_t
    conn.execute(update(t).where(t.c.id == event_id).values(properties=dict(properties)))


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Store events once per (source, source_event_id): each row's new id, None for a
    replay (of an earlier event or of an earlier row of the same batch)."""
    t = db.event_t
    ids: list[int | None] = [None] * len(rows)
    keyed: dict[tuple[str, str], int] = {}
    plain: list[int] = []
    for index, row in enumerate(rows):
        if row.get("source_event_id") is None:
            plain.append(index)
        else:
            keyed.setdefault((row["source"], row["source_event_id"]), index)
    if keyed:
        module = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = (module.insert(t)
                .on_conflict_do_nothing(index_elements=["source", "source_event_id"])
                .returning(t.c.id, t.c.source, t.c.source_event_id))
        for new_id, source, source_id in conn.execute(stmt, [rows[i] for i in keyed.values()]):
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


def waiting_for_many(conn: Connection, contact_ids: Iterable[int],
                     event_types: Iterable[str]) -> list[dict[str, Any]]:
    """Enrollments of these contacts waiting for one of these event types."""
    t = db.enrollment
    types = sorted(set(event_types))
    rows: list[dict[str, Any]] = []
    for part in chunks(sorted(set(contact_ids))):
        stmt = select(t.c.id, t.c.contact_id, t.c.state, t.c.wait_event).where(
            t.c.contact_id.in_(part), state_in(["waiting"]), t.c.wait_event.in_(types))
        rows.extend(dict(r) for r in conn.execute(stmt).mappings())
    return rows


def live_enrollments(conn: Connection, contact_ids: Iterable[int]) -> list[dict[str, Any]]:
    """What exits and entries read of the live enrollments of these contacts."""
    t = db.enrollment
    columns = (t.c.id, t.c.contact_id, t.c.journey_id, t.c.purpose, t.c.exclusive, t.c.state)
    rows: list[dict[str, Any]] = []
    for part in chunks(sorted(set(contact_ids))):
        stmt = select(*columns).where(t.c.contact_id.in_(part),
                                      state_in(["active", "waiting", "paused"]))
        rows.extend(dict(r) for r in conn.execute(stmt).mappings())
    return rows


def insert_enrollments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """`store.insert_enrollments` in one executemany: a contact already live in that
    journey (another daemon, another request) is left as it is."""
    if not rows:
        return
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(db.enrollment).on_conflict_do_nothing(
        index_elements=["contact_id", "journey_id"], index_where=LIVE_SQL)
    conn.execute(stmt, list(rows))


def enrollment(conn: Connection, enrollment_id: int) -> dict[str, Any] | None:
    found = conn.execute(select(db.enrollment).where(db.enrollment.c.id == enrollment_id))
    row = found.mappings().first()
    return dict(row) if row else None


def update_enrollments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _update_many(conn, db.enrollment, rows)


# ---- handoffs ------------------------------------------------------------------------


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
