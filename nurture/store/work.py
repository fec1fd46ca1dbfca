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
from nurture.store.codec import driver_read, execute_many, read_time, write_time

ENROLLMENT_FIELDS = ("journey_version", "step_id", "seq", "state", "next_run_at", "wait_event",
                     "wait_step", "ended_at", "end_reason", "last_error", "updated_at")
MESSAGE_RESULT_FIELDS = ("state", "provider", "provider_message_id", "attempts", "error",
                         "sent_at", "next_attempt_at", "updated_at", "lease_until",
                         "retry_payload", "skip_reason")


#: what a run needs of a claimed enrollment (`updated_at`: when intake resumed a wait_for)
CLAIM_COLUMNS = ("id", "contact_id", "journey_id", "journey_version", "step_id", "seq",
                 "state", "wait_event", "wait_step", "end_reason", "last_error", "updated_at")


def claim_due(conn: Connection, now: datetime, limit: int, worker: str,
              lease_until: datetime, skip_journeys: Sequence[str] = (),
              mark: bool = True) -> list[dict[str, Any]]:
    """Take up to `limit` due enrollments for this worker until `lease_until`: one
    UPDATE … RETURNING over the due rows (on PostgreSQL locked with SKIP LOCKED, so
    several daemons never take the same row). `skip_journeys`: paused ones.

    `mark=False` (SQLite, where the caller runs and records the batch in this same
    transaction, holding the one write lock throughout): the due rows are only read,
    since no one else can take them before the transaction ends; `write_enrollments`
    is then called with `worker=None`."""
    if not mark:
        return _read_due(conn, now, limit, skip_journeys)
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


def _read_due(conn: Connection, now: datetime, limit: int,
              skip_journeys: Sequence[str]) -> list[dict[str, Any]]:
    """`claim_due`'s rows, read at the driver (the claim's own conditions)."""
    skip = list(skip_journeys)
    stamp = write_time(now, conn.dialect.name == "sqlite")
    sql = (f"SELECT {', '.join(CLAIM_COLUMNS)} FROM enrollment WHERE next_run_at <= ? "
           "AND (claimed_until IS NULL OR claimed_until < ?)"
           + (f" AND journey_id NOT IN ({', '.join('?' * len(skip))})" if skip else "")
           + " ORDER BY next_run_at, id LIMIT ?")
    found = driver_read(conn, sql, (stamp, stamp, *skip, limit))
    at = CLAIM_COLUMNS.index("updated_at")
    rows = []
    for values in found:
        row = dict(zip(CLAIM_COLUMNS, values, strict=True))
        row.update(updated_at=read_time(values[at]), next_run_at=None, ended_at=None)
        rows.append(row)
    rows.sort(key=lambda row: row["id"])
    return rows


#: written whatever they were: a run always moves `next_run_at` (and these are in no index)
ALWAYS_WRITTEN = ("next_run_at", "ended_at", "updated_at")


def write_enrollments(conn: Connection, worker: str | None, rows: Sequence[Mapping[str, Any]],
                      claimed: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Save each enrollment's new position and release our claim (`worker`; None: the
    rows were read, not marked, in this transaction — see `claim_due`).

    With `claimed` (each row as claimed, in the same order), only the columns a run
    changed are written, a statement per set of them (a batch's rows mostly share one):
    writing `state` unchanged would still rewrite its two indexes, the costliest part of
    the statement."""
    if not rows:
        return
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    if claimed is None:
        groups[ENROLLMENT_FIELDS] = list(rows)
    else:
        for row, before in zip(rows, claimed, strict=True):
            fields = tuple(f for f in ENROLLMENT_FIELDS
                           if f in ALWAYS_WRITTEN or row[f] != before[f])
            groups.setdefault(fields, []).append(row)
    for fields, group in groups.items():
        assignments = ", ".join(f"{f} = ?" for f in fields)
        sql = f"UPDATE enrollment SET {assignments}, claimed_by = NULL, claimed_until = NULL "
        if worker is None:
            execute_many(conn, sql + "WHERE id = ?", db.enrollment, fields,
                         [[*(r[f] for f in fields), r["id"]] for r in group])
        else:
            execute_many(conn, sql + "WHERE id = ? AND claimed_by = ?", db.enrollment, fields,
                         [[*(r[f] for f in fields), r["id"], worker] for r in group])


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

