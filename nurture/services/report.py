"""Counts for `nurture status` (and, later, `nurture report`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from nurture.store import database as db


def _count_by(conn: Connection, *columns: Any) -> dict[str, int]:
    stmt = select(*columns, func.count()).group_by(*columns)
    return {"/".join(str(v) for v in row[:-1]): row[-1] for row in conn.execute(stmt)}


def status_counts(conn: Connection) -> dict[str, dict[str, int]]:
    return {
        "contacts by stage": _count_by(conn, db.contact.c.stage),
        "contacts by temperature": _count_by(conn, db.contact.c.temperature),
        "enrollments by journey/state": _count_by(conn, db.enrollment.c.journey_id,
                                                  db.enrollment.c.state),
        "messages by state": _count_by(conn, db.message.c.state),
        "skipped by reason": _count_by(conn, db.message.c.skip_reason),
    }
