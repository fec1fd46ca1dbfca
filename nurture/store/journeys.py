"""Applied journeys, where enrollments stand in them, and the steps they took.

What `nurture plan` / `apply`, the operators' commands (pause, retry, enroll…) and the
daemon's entry sweeps read and write. Plain values in, no commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nurture.store import database as db
from nurture.store import queries as store
from nurture.store.codec import driver_sql, execute_many, read_document
from nurture.views import ContactView
from nurture.vocab import LIVE_ENROLLMENT_STATES, EnrollmentState

#: the `ledgerversion` row that moves forward whenever what is applied changes
GENERATION = "journeys"
LIVE = [s.value for s in LIVE_ENROLLMENT_STATES]


# ---- what is applied ------------------------------------------------------------------


def _insert(conn: Connection, table: Table) -> Any:
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def generation(conn: Connection) -> int:
    """Moves forward with every apply, removal, pause and resume (daemons reload then)."""
    t = db.ledger_version
    found = conn.execute(select(t.c.version).where(t.c.name == GENERATION)).scalar_one_or_none()
    return int(found or 0)


def bump_generation(conn: Connection) -> None:
    t = db.ledger_version
    stmt = _insert(conn, t).values(name=GENERATION, version=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"],
                                            set_={"version": t.c.version + 1}))


def journey_states(conn: Connection) -> dict[str, dict[str, Any]]:
    """journey id → its state row (removed journeys included, version None)."""
    t = db.journey_state
    return {r["journey_id"]: dict(r) for r in conn.execute(select(t)).mappings()}


def current_sources(conn: Connection) -> list[dict[str, Any]]:
    """Each applied (not removed) journey's current version with its source and state."""
    s, v = db.journey_state, db.journey_version
    stmt = (select(s.c.journey_id, s.c.version, s.c.paused, v.c.path, v.c.source)
            .join(v, and_(v.c.journey_id == s.c.journey_id, v.c.version == s.c.version))
            .order_by(s.c.journey_id))
    return [dict(r) for r in conn.execute(stmt).mappings()]


def version_source(conn: Connection, journey_id: str, version: str) -> dict[str, Any] | None:
    t = db.journey_version
    row = conn.execute(select(t).where(t.c.journey_id == journey_id,
                                       t.c.version == version)).mappings().first()
    return dict(row) if row else None


def record_version(conn: Connection, journey_id: str, version: str, path: str, source: str,
                   now: datetime) -> None:
    """Keep an applied version's source (applying the same version again keeps the first)."""
    stmt = _insert(conn, db.journey_version).values(
        journey_id=journey_id, version=version, path=path, source=source, applied_at=now)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["journey_id", "version"]))


def set_current(conn: Connection, journey_id: str, version: str, now: datetime,
                sweep: bool) -> None:
    """Make `version` the one new entries take; `sweep`: evaluate every contact against
    its entry (from the first contact on)."""
    values: dict[str, Any] = {"journey_id": journey_id, "version": version, "applied_at": now,
                              "removed_at": None, "updated_at": now,
                              "sweep_after": 0 if sweep else None}
    t = db.journey_state
    stmt = _insert(conn, t).values(**values, paused=False)
    conn.execute(stmt.on_conflict_do_update(index_elements=["journey_id"], set_=values))


def mark_removed(conn: Connection, journey_id: str, now: datetime) -> None:
    t = db.journey_state
    conn.execute(update(t).where(t.c.journey_id == journey_id).values(
        version=None, removed_at=now, sweep_after=None, paused=False, updated_at=now))


def set_paused(conn: Connection, journey_id: str, paused: bool, now: datetime) -> bool:
    """False when no such journey is applied."""
    t = db.journey_state
    done = conn.execute(update(t).where(t.c.journey_id == journey_id, t.c.version.is_not(None))
                        .values(paused=paused, updated_at=now))
    return bool(done.rowcount)


def sweeping(conn: Connection) -> list[dict[str, Any]]:
    """Journeys whose entry sweep is not finished, locked for this transaction (another
    daemon skips them: one sweeps at a time)."""
    t = db.journey_state
    stmt = select(t.c.journey_id, t.c.version, t.c.sweep_after).where(
        t.c.sweep_after.is_not(None), t.c.version.is_not(None)).order_by(t.c.journey_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def set_sweep(conn: Connection, journey_id: str, after: int | None) -> None:
    t = db.journey_state
    conn.execute(update(t).where(t.c.journey_id == journey_id).values(sweep_after=after))


# ---- contacts, in id order (the sweeps) -----------------------------------------------

_VIEW = ", ".join(f'"{c}"' for c in store.VIEW_COLUMNS)


def contacts_after(conn: Connection, after: int, limit: int) -> list[ContactView]:
    """The next `limit` contacts by id: one statement, read by the driver (no ORM, no
    per-value processing but the attributes document)."""
    sql = f"SELECT {_VIEW} FROM contact WHERE id > ? ORDER BY id LIMIT ?"
    rows = conn.exec_driver_sql(driver_sql(conn, sql), (after, limit)).fetchall()
    return [ContactView(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]),
                        dict(read_document(r[11]) or {})) for r in rows]


def live_between(conn: Connection, low: int, high: int) -> list[dict[str, Any]]:
    """What entries read of the live enrollments of contacts low < id <= high."""
    t = db.enrollment
    stmt = select(t.c.contact_id, t.c.journey_id, t.c.purpose, t.c.exclusive).where(
        t.c.contact_id > low, t.c.contact_id <= high, store.state_in(LIVE))
    return [{"contact_id": c, "journey_id": j, "purpose": p, "exclusive": bool(x)}
            for c, j, p, x in conn.execute(stmt)]


def last_ended_between(conn: Connection, low: int, high: int,
                       journey_ids: Sequence[str]) -> dict[tuple[int, str], datetime]:
    """(contact, journey) → when its latest enrollment there ended (re-entry policy)."""
    t = db.enrollment
    stmt = (select(t.c.contact_id, t.c.journey_id, func.max(t.c.ended_at))
            .where(t.c.contact_id > low, t.c.contact_id <= high,
                   t.c.journey_id.in_(list(journey_ids)))
            .group_by(t.c.contact_id, t.c.journey_id))
    return {(c, j): at for c, j, at in conn.execute(stmt) if at is not None}


WindowStats = tuple[dict[tuple[int, str, Any], int], dict[tuple[int, str, Any], datetime]]


def event_windows(conn: Connection, wanted: Iterable[tuple[str, Any]], now: datetime, *,
                  ids: Sequence[int] = (), between: tuple[int, int] | None = None
                  ) -> WindowStats:
    """(contact, type, window) → how many such events, and the oldest one counted in a
    window (when it leaves the window, the count changes). Contacts by `ids`, or by an id
    range `between` (low, high]."""
    t = db.event_t
    counts: dict[tuple[int, str, Any], int] = {}
    oldest: dict[tuple[int, str, Any], datetime] = {}
    parts: list[Any] = [None] if between else list(store.chunks(list(ids)))
    for event_type, window in set(wanted):
        for part in parts:
            where = [t.c.type == event_type]
            if between is not None:
                where += [t.c.contact_id > between[0], t.c.contact_id <= between[1]]
            else:
                where.append(t.c.contact_id.in_(part))
            if window is not None:
                where.append(t.c.occurred_at >= now - window)
            stmt = (select(t.c.contact_id, func.count(), func.min(t.c.occurred_at))
                    .where(*where).group_by(t.c.contact_id))
            for cid, count, first in conn.execute(stmt):
                counts[(cid, event_type, window)] = count
                if window is not None and first is not None:
                    oldest[(cid, event_type, window)] = first
    return counts, oldest


def schedule_evaluations(conn: Connection, due: Iterable[tuple[int, datetime]]) -> None:
    """Evaluate these contacts at these times, unless they are due sooner already."""
    rows = [(at, cid, at) for cid, at in due]
    execute_many(conn, "UPDATE contact SET evaluate_at = ? WHERE id = ? AND "
                 "(evaluate_at IS NULL OR evaluate_at > ?)", db.contact,
                 ("evaluate_at", "id", "evaluate_at"), rows)


def set_evaluations(conn: Connection, due: Iterable[tuple[int, datetime | None]]) -> None:
    """Evaluated now: each contact's next evaluation (a cool-down's or a window's end)."""
    execute_many(conn, "UPDATE contact SET evaluate_at = ? WHERE id = ?", db.contact,
                 ("evaluate_at", "id"), [(at, cid) for cid, at in due])


# ---- where enrollments stand -----------------------------------------------------------


def live_by_step(conn: Connection, journey_id: str) -> dict[str | None, int]:
    """step → how many live enrollments of the journey stand there."""
    t = db.enrollment
    stmt = (select(t.c.step_id, func.count()).where(t.c.journey_id == journey_id,
                                                    store.state_in(LIVE))
            .group_by(t.c.step_id))
    return {step: count for step, count in conn.execute(stmt)}


def live_by_wait(conn: Connection, journey_id: str) -> dict[str, int]:
    """wait step → how many live enrollments of the journey wait in it."""
    t = db.enrollment
    stmt = (select(t.c.wait_step, func.count()).where(
        t.c.journey_id == journey_id, store.state_in(LIVE), t.c.wait_step.is_not(None))
        .group_by(t.c.wait_step))
    return {step: count for step, count in conn.execute(stmt)}


def blocked_count(conn: Connection, journey_id: str) -> int:
    t = db.enrollment
    return int(conn.execute(select(func.count()).where(
        t.c.journey_id == journey_id, store.state_in([EnrollmentState.BLOCKED]))).scalar_one())


def live_rows(conn: Connection, journey_id: str, *, states: Sequence[str] = LIVE,
              step_id: str | None = None, contact_id: int | None = None
              ) -> list[dict[str, Any]]:
    t = db.enrollment
    where = [t.c.journey_id == journey_id, store.state_in(list(states))]
    if step_id is not None:
        where.append(t.c.step_id == step_id)
    if contact_id is not None:
        where.append(t.c.contact_id == contact_id)
    return [dict(r) for r in conn.execute(select(t).where(*where).order_by(t.c.id)).mappings()]


def blocked_rows(conn: Connection, journey_id: str | None = None,
                 step_id: str | None = None) -> list[dict[str, Any]]:
    t = db.enrollment
    where = [store.state_in([EnrollmentState.BLOCKED])]
    if journey_id is not None:
        where.append(t.c.journey_id == journey_id)
    if step_id is not None:
        where.append(t.c.step_id == step_id)
    return [dict(r) for r in conn.execute(select(t).where(*where).order_by(t.c.id)).mappings()]


def update_enrollments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each row: `id` and the columns to set (rows of one call share their keys)."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(k for k in row if k != "id"), []).append(row)
    for columns, group in groups.items():
        sql = f"UPDATE enrollment SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"
        execute_many(conn, sql, db.enrollment, columns,
                     [[*(r[c] for c in columns), r["id"]] for r in group])


def failed_journey_messages(conn: Connection, public_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Journey messages among these that a provider refused for good."""
    t = db.message
    found: list[dict[str, Any]] = []
    for part in store.chunks(list(public_ids)):
        stmt = select(t.c.id, t.c.enrollment_id, t.c.contact_id, t.c.step_id, t.c.channel,
                      t.c.purpose, t.c.to_address, t.c.error).where(
            t.c.public_id.in_(part), t.c.state == "failed", t.c.enrollment_id.is_not(None))
        found.extend(dict(r) for r in conn.execute(stmt).mappings())
    return found


def enrollment_rows(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    t = db.enrollment
    found: dict[int, dict[str, Any]] = {}
    for part in store.chunks(list(ids)):
        for row in conn.execute(select(t).where(t.c.id.in_(part))).mappings():
            found[row["id"]] = dict(row)
    return found


# ---- the path trace ---------------------------------------------------------------------

STEP_RUN_COLUMNS = ("enrollment_id", "contact_id", "journey_id", "journey_version", "step_id",
                    "kind", "outcome", "detail", "at", "until")


def insert_step_runs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    names = ", ".join(STEP_RUN_COLUMNS)
    sql = (f"INSERT INTO steprun ({names}) "
           f"VALUES ({', '.join('?' for _ in STEP_RUN_COLUMNS)})")
    execute_many(conn, sql, db.step_run, STEP_RUN_COLUMNS,
                 [[r[c] for c in STEP_RUN_COLUMNS] for r in rows])


def step_runs(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    t = db.step_run
    stmt = select(t).where(t.c.contact_id == contact_id).order_by(t.c.id)
    return [dict(r) for r in conn.execute(stmt).mappings()]
