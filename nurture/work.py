"""Claiming due work and writing a batch's results in a few statements.

The claim runs unchanged on SQLite (one writer at a time) and on PostgreSQL, where
`FOR UPDATE SKIP LOCKED` lets several daemons share the due rows without overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from nurture import db
from nurture.store import unclaimed

ENROLLMENT_FIELDS = ("step_id", "seq", "state", "next_run_at", "wait_event", "ended_at",
                     "end_reason", "last_error", "updated_at")
MESSAGE_RESULT_FIELDS = ("state", "provider", "provider_message_id", "attempts", "error",
                         "sent_at", "next_attempt_at", "updated_at", "lease_until",
                         "retry_payload")


def claim_due(conn: Connection, now: datetime, limit: int, worker: str,
              lease_until: datetime) -> list[dict[str, Any]]:
    """Take up to `limit` due enrollments for this worker until `lease_until`."""
    t = db.enrollment
    query = (select(t.c.id).where(t.c.next_run_at <= now, unclaimed(now))
             .order_by(t.c.next_run_at, t.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    conn.execute(update(t).where(t.c.id.in_(ids))
                 .values(claimed_by=worker, claimed_until=lease_until))
    rows = conn.execute(select(t).where(t.c.id.in_(ids)).order_by(t.c.next_run_at, t.c.id))
    return [dict(r) for r in rows.mappings()]


def write_enrollments(conn: Connection, worker: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Save each enrollment's new position and release our claim, in one statement."""
    if not rows:
        return
    t = db.enrollment
    stmt = (update(t).where(t.c.id == bindparam("_id"), t.c.claimed_by == bindparam("_worker"))
            .values({f: bindparam(f) for f in ENROLLMENT_FIELDS})
            .values(claimed_by=None, claimed_until=None))
    params = [{"_id": r["id"], "_worker": worker, **{f: r[f] for f in ENROLLMENT_FIELDS}}
              for r in rows]
    conn.execute(stmt, params)


def insert_messages(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(insert(db.message), list(rows))


def write_message_results(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record provider outcomes, addressed by our public message id."""
    if not rows:
        return
    t = db.message
    stmt = (update(t).where(t.c.public_id == bindparam("_public_id"))
            .values({f: bindparam(f) for f in MESSAGE_RESULT_FIELDS}))
    params = [{"_public_id": r["public_id"], **{f: r[f] for f in MESSAGE_RESULT_FIELDS}}
              for r in rows]
    conn.execute(stmt, params)


def due_retries(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    t = db.message
    query = (select(t).where(t.c.state == "retrying", t.c.next_attempt_at <= now)
             .order_by(t.c.next_attempt_at).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r) for r in conn.execute(query).mappings()]
