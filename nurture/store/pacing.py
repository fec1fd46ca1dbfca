"""The send pace of each sender, shared by every daemon on the database.

One row per sender holds when its next message may go (`free_at`, seconds since the
epoch: a pacing clock, not a stored date). Booking is one upsert in its own short
transaction, so the row is locked only while the slot is taken, never while waiting.
On PostgreSQL the database's clock is the fleet's clock; SQLite serves one machine,
whose clock is passed in.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection

_POSTGRES = """
WITH t AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
INSERT INTO sendpace (sender, free_at) SELECT %s, t.now + %s FROM t
ON CONFLICT (sender) DO UPDATE
SET free_at = greatest(sendpace.free_at, EXCLUDED.free_at - %s) + %s
RETURNING free_at - %s, extract(epoch FROM clock_timestamp())::float8
"""
_SQLITE = """
INSERT INTO sendpace (sender, free_at) VALUES (?, ? + ?)
ON CONFLICT (sender) DO UPDATE
SET free_at = max(sendpace.free_at, excluded.free_at - ?) + ?
RETURNING free_at - ?
"""


def book(conn: Connection, sender: str, seconds: float) -> float:
    """Take the sender's next `seconds` of sending time; how long to wait for its start."""
    if conn.dialect.name == "postgresql":
        row = conn.exec_driver_sql(_POSTGRES, (sender, seconds, seconds, seconds,
                                               seconds)).one()
        return max(0.0, float(row[0]) - float(row[1]))
    now = time.time()
    start = conn.exec_driver_sql(_SQLITE, (sender, now, seconds, seconds, seconds,
                                           seconds)).scalar_one()
    return max(0.0, float(start) - now)
