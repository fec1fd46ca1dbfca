"""Each daemon's heartbeat (its last tick and what it did) and how far behind due work is:
what `nurture status` and `/healthz` tell an operator."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from nurture.store import database as db
from nurture.store.queries import upsert
from nurture.store.tables import LIVE_SQL, RETRYING_SQL


def beat(conn: Connection, worker: str, started_at: datetime, now: datetime,
         report: Mapping[str, Any]) -> None:
    upsert(conn, db.daemon_beat, {"worker": worker, "started_at": started_at,
                                  "last_tick_at": now, "last_report": dict(report)},
           keys=("worker",))


def beats(conn: Connection) -> list[dict[str, Any]]:
    t = db.daemon_beat
    return [dict(r) for r in conn.execute(select(t).order_by(t.c.last_tick_at.desc()))
            .mappings()]


def oldest_due(conn: Connection, now: datetime) -> datetime | None:
    """The oldest moment work became due and is still waiting (an enrollment step, a
    retry, a contact to evaluate for entry): how far behind the fleet is."""
    e, m, c = db.enrollment, db.message, db.contact
    found = [conn.execute(select(func.min(e.c.next_run_at))
                          .where(LIVE_SQL, e.c.next_run_at <= now)).scalar_one_or_none(),
             conn.execute(select(func.min(m.c.next_attempt_at))
                          .where(RETRYING_SQL, m.c.next_attempt_at <= now)).scalar_one_or_none(),
             conn.execute(select(func.min(c.c.evaluate_at))
                          .where(c.c.evaluate_at <= now)).scalar_one_or_none()]
    moments = [t for t in found if t is not None]
    return min(moments) if moments else None
