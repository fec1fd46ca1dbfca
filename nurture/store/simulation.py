"""The queries of `nurture simulate`: copying chosen contacts into a scratch database,
finding the next moment something is due there, and reading timelines back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select
from sqlmodel import SQLModel

from nurture.store import database as db
from nurture.store.queries import chunks
from nurture.store.tables import LIVE_SQL, RETRYING_SQL

#: fields of `contact_change` a timeline shows
TIMELINE_FIELDS = ("score", "temperature", "stage", "fit")


def all_contact_ids(conn: Connection) -> list[int]:
    return [int(i) for i in conn.execute(select(db.contact.c.id).order_by(db.contact.c.id))
            .scalars()]


def copy_contacts(source: Connection, target: Connection, ids: Sequence[int]) -> None:
    """Every row about these contacts, and every row about no contact in particular
    (suppression list, applied journeys), in foreign-key order."""
    for table in SQLModel.metadata.sorted_tables:
        if table.name == "contact":
            _copy(source, target, table, table.c.id, ids)
        elif "contact_id" in table.c:
            _copy(source, target, table, table.c.contact_id, ids)
        else:
            rows = [dict(r) for r in source.execute(select(table)).mappings()]
            if rows:
                target.execute(insert(table), rows)


def _copy(source: Connection, target: Connection, table: Table, key: Any,
          ids: Sequence[int]) -> None:
    for part in chunks(list(ids)):
        rows = [dict(r) for r in source.execute(select(table).where(key.in_(part)))
                .mappings()]
        if rows:
            target.execute(insert(table), rows)


def next_due(conn: Connection, after: datetime) -> datetime | None:
    """The first moment after `after` when the daemon has something to do."""
    e, m, c, h = db.enrollment, db.message, db.contact, db.handoff
    candidates = [
        select(func.min(e.c.next_run_at)).where(LIVE_SQL, e.c.next_run_at > after),
        select(func.min(m.c.next_attempt_at)).where(RETRYING_SQL, m.c.next_attempt_at > after),
        select(func.min(c.c.evaluate_at)).where(c.c.evaluate_at > after),
        select(func.min(c.c.decay_at)).where(c.c.decay_at > after),
        select(func.min(h.c.next_attempt_at)).where(h.c.state == "pending",
                                                    h.c.next_attempt_at > after),
    ]
    found = [conn.execute(query).scalar_one_or_none() for query in candidates]
    moments = [t for t in found if t is not None]
    return min(moments) if moments else None


Timeline = list[tuple[datetime, str, str]]


def timelines(conn: Connection, ids: Sequence[int],
              since: datetime) -> dict[int, tuple[str, str, Timeline]]:
    """Contact id → (email or phone, time zone, what happened since `since`, in order)."""
    c = db.contact
    people = {int(r.id): (r.email or r.phone or str(r.id), r.timezone)
              for part in chunks(list(ids))
              for r in conn.execute(select(c.c.id, c.c.email, c.c.phone, c.c.timezone)
                                    .where(c.c.id.in_(part)))}
    found: dict[int, Timeline] = {cid: [] for cid in people}
    for part in chunks(list(ids)):
        for row in _rows(conn, db.message, part, since, "created_at"):
            what = "sent" if row["state"] in ("sent", "delivered", "sending") else row["state"]
            reason = f" ({row['skip_reason']}: {row['error']})" if row["skip_reason"] else ""
            where = f"{row['journey_id'] or row['kind']}/{row['step_id'] or '-'}"
            found[row["contact_id"]].append((row["created_at"], f"{row['channel']} {what}",
                                             f"{row['template']} [{where}]{reason}"))
        for row in _rows(conn, db.enrollment, part, since, "entered_at"):
            found[row["contact_id"]].append((row["entered_at"], "entered", row["journey_id"]))
        for row in _rows(conn, db.enrollment, part, since, "ended_at"):
            found[row["contact_id"]].append((row["ended_at"], "left",
                                             f"{row['journey_id']}: {row['end_reason']}"))
        for row in _rows(conn, db.contact_change, part, since, "at"):
            if row["field"] in TIMELINE_FIELDS:
                rule = f" ({row['rule']})" if row["rule"] else ""
                found[row["contact_id"]].append((row["at"], row["field"],
                                                 f"{row['old']} → {row['new']}{rule}"))
        for row in _rows(conn, db.event_t, part, since, "occurred_at"):
            found[row["contact_id"]].append((row["occurred_at"], "event", row["type"]))
    # at one moment: what the contact did, how it scored, where it went, what it got
    order = {"event": 0, "score": 1, "fit": 1, "temperature": 2, "stage": 3, "entered": 4,
             "left": 6}
    return {cid: (name, zone, sorted(found[cid], key=lambda m: (m[0], order.get(m[1], 5),
                                                                 m[1], m[2])))
            for cid, (name, zone) in people.items()}


def _rows(conn: Connection, table: Table, ids: Sequence[int], since: datetime,
          column: str) -> list[dict[str, Any]]:
    when = table.c[column]
    stmt = (select(table).where(table.c.contact_id.in_(list(ids)), when.is_not(None),
                                when >= since).order_by(when, table.c.id))
    return [dict(r) for r in conn.execute(stmt).mappings()]
