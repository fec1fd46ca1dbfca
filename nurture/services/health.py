"""What `/healthz` reports: the database answers, how far behind due work is, and each
daemon's last tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from nurture.engine.runtime import Runtime
from nurture.store import daemons


def health(rt: Runtime, now: datetime) -> tuple[bool, dict[str, Any]]:
    """(healthy, report). Read in autocommit: a health probe never takes the write lock."""
    try:
        with rt.db.reader() as conn:
            conn.execute(text("SELECT 1"))
            oldest = daemons.oldest_due(conn, now)
            beats = daemons.beats(conn)
    except SQLAlchemyError as e:
        return False, {"status": "unavailable", "database": "unreachable",
                       "error": type(e).__name__}
    return True, {
        "status": "ok", "database": "reachable",
        # age of the oldest due work still waiting (0: nothing overdue)
        "lag_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
        "daemons": [{"worker": b["worker"], "last_tick_at": b["last_tick_at"].isoformat(),
                     "seconds_since_tick": round((now - b["last_tick_at"]).total_seconds(), 3)}
                    for b in beats],
    }
