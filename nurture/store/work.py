"""Claiming due work and writing a batch's results in a few statements.

The claim runs unchanged on SQLite (one writer at a time) and on PostgreSQL, where
`FOR UPDATE SKIP LOCKED` lets several daemons share the due rows without overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from nurture.store import database as db
from nurture.store import queries as store
from nurture.store import tables as models
from nurture.store.codec import execute_many

ENROLLMENT_FIELDS = ("journey_version", "step_id", "seq", "state", "next_run_at", "wait_event",
                     "wait_step", "ended_at", "end_reason", "last_error", "updated_at")
MESSAGE_RESULT_FIELDS = ("state", "provider", "provider_message_id", "attempts", "error",
                         "sent_at", "next_attempt_at", "updated_at", "lease_until",
                         "retry_payload", "skip_reason")


#: what a run needs of a claimed enrollment (`updated_at`: when intake resumed a wait_for)
CLAIM_COLUMNS = ("id", "contact_id", "journey_id", "journey_version", "step_id", "seq",
                 "state", "wait_event", "wait_step", "end_reason", "last_error", "updated_at")


def claim_due(conn: Connection, now: datetime, limit: int, worker: str,
              lease_until: datetime, skip_journeys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Take up to `limit` due enrollments for this worker until `lease_until`: one
    UPDATE … RETURNING over the due rows (on PostgreSQL locked with SKIP LOCKED, so
    several daemons never take the same row). `skip_journeys`: paused ones."""
    t = db.enrollment
    where = [t.c.next_run_at <= now, store.unclaimed(now)]
    if skip_journeys:
        where.append(t.c.journey_id.not_in(list(skip_journeys)))
    due = (select(t.c.id).where(*where).order_by(t.c.next_run_at, t.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (update(t).where(t.c.id.in_(due.scalar_subquery()))
             .values(claimed_by=worker, claimed_until=lease_until)
             .returning(*(t.c[name] for name in CLAIM_COLUMNS)))
    rows = [dict(zip(CLAIM_COLUMNS, row, strict=True)) for row in conn.execute(claim)]
    for row in rows:
        row.update(next_run_at=None, ended_at=None)
    rows.sort(key=lambda row: row["id"])
    return rows


def write_enrollments(conn: Connection, worker: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Save each enrollment's new position and release our claim, in one statement."""
    if not rows:
        return
    assignments = ", ".join(f"{f} = ?" for f in ENROLLMENT_FIELDS)
    sql = (f"UPDATE enrollment SET {assignments}, claimed_by = NULL, claimed_until = NULL "
           "WHERE id = ? AND claimed_by = ?")
    execute_many(conn, sql, db.enrollment, ENROLLMENT_FIELDS,
                 [[*(r[f] for f in ENROLLMENT_FIELDS), r["id"], worker] for r in rows])


def insert_messages(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    sql = (f"INSERT INTO message ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' for _ in columns)})")
    execute_many(conn, sql, db.message, columns, [list(r.values()) for r in rows])


def write_message_results(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record provider outcomes, addressed by our public message id."""
    if not rows:
        return
    assignments = ", ".join(f"{f} = ?" for f in MESSAGE_RESULT_FIELDS)
    # only messages still in flight: a webhook that already said "delivered" (or "bounced")
    # for a message is never overwritten by the batch's later "sent"
    sql = f"UPDATE message SET {assignments} WHERE public_id = ? AND state = 'sending'"
    execute_many(conn, sql, db.message, MESSAGE_RESULT_FIELDS,
                 [[*(r[f] for f in MESSAGE_RESULT_FIELDS), r["public_id"]] for r in rows])


def due_retries(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    t = db.message
    query = (select(t).where(models.RETRYING_SQL, t.c.next_attempt_at <= now)
             .order_by(t.c.next_attempt_at).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r) for r in conn.execute(query).mappings()]

