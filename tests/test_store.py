"""Shared queries that guard invariants, on SQLite and PostgreSQL: a contact is live at
most once per journey, and values sent straight to the driver read back as SQLAlchemy's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from nurture.store import codec, schema
from nurture.store import database as db
from nurture.store import maturity as ms
from nurture.store import queries as store
from nurture.store.database import Database

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (f"sqlite:///{tmp_path / 'nurture.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    found = Database(url)
    schema.upgrade(found)
    with found.begin() as conn:
        for index in range(1, 4):
            store.insert_contact(conn, {"email": f"c{index}@example.com", "created_at": NOW,
                                        "updated_at": NOW, "attributes": {}})
    yield found
    found.dispose()


def row(contact_id: int, journey_id: str, **values: Any) -> dict[str, Any]:
    return {"contact_id": contact_id, "journey_id": journey_id, "journey_version": "v1",
            "purpose": "newsletter", "exclusive": True, "step_id": "welcome", "seq": 0,
            "state": "active", "next_run_at": NOW, "wait_event": None, "entered_at": NOW,
            "updated_at": NOW, "ended_at": None, "end_reason": "", "last_error": "",
            "claimed_by": None, "claimed_until": None, **values}


def live(database: Database) -> list[tuple[Any, ...]]:
    t = db.enrollment
    with database.begin() as conn:
        rows = conn.execute(select(t.c.contact_id, t.c.journey_id)
                            .where(t.c.state.in_(["active", "waiting", "paused"]))
                            .order_by(t.c.contact_id, t.c.journey_id))
        return [tuple(r) for r in rows]


def test_a_contact_is_live_once_per_journey(database: Database) -> None:
    with database.begin() as conn:
        batch = [row(1, "cold"), row(1, "cold"), row(2, "cold"), row(1, "warm", purpose="x"),
                 {k: v for k, v in row(3, "cold").items() if k != "claimed_by"}]
        assert store.insert_enrollments(conn, batch) == 4  # the repeated row is left out
        assert store.insert_enrollments(conn, [row(1, "cold", step_id="other")]) == 0
        assert store.insert_enrollments(conn, []) == 0
    assert live(database) == [(1, "cold"), (1, "warm"), (2, "cold"), (3, "cold")]
    with database.begin() as conn:
        t = db.enrollment
        conn.execute(update(t).where(t.c.contact_id == 1, t.c.journey_id == "cold")
                     .values(state="exited", ended_at=NOW))
        assert store.insert_enrollments(conn, [row(1, "cold")]) == 1  # ended: may re-enter


@pytest.mark.postgres
def test_two_daemons_enrolling_a_contact_at_once_make_one_enrollment(tmp_path: Path,
                                                                      pg_url: str) -> None:
    database = Database(pg_url)
    schema.upgrade(database)
    with database.begin() as conn:
        store.insert_contact(conn, {"email": "c1@example.com", "created_at": NOW,
                                    "updated_at": NOW, "attributes": {}})
    added: list[int] = []

    def other_daemon() -> None:
        with database.begin() as conn:
            added.append(store.insert_enrollments(conn, [row(1, "cold")]))

    with database.begin() as conn:
        added.append(store.insert_enrollments(conn, [row(1, "cold")]))
        thread = threading.Thread(target=other_daemon)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waits for this transaction to end
    thread.join(10)
    assert added == [1, 0] and live(database) == [(1, "cold")]
    database.dispose()


def test_values_sent_to_the_driver_read_back_as_sqlalchemy_gives_them(
        database: Database) -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    with database.begin() as conn:
        ms.insert_handoffs(conn, [{
            "contact_id": 1, "reason": "test", "payload": {"événement": [1, 2.5, None]},
            "notify": True, "state": "pending", "attempts": 0, "next_attempt_at": paris,
            "last_error": "", "created_at": NOW}])
        ms.insert_changes(conn, [(1, "score", "0", "2", 2.0, "open", None, "", paris)])
        found = conn.execute(select(db.handoff)).mappings().one()
        change = conn.execute(select(db.contact_change)).mappings().one()
        contact, decay_at = ms.contact_views(conn, [1])
        assert ms.rule_hits_many(conn, [1], "open", NOW) == {1: 1}
        assert ms.rule_hits_many(conn, [1], "open", NOW + timedelta(microseconds=1)) == {}
        with pytest.raises(ValueError, match="naive"):
            codec.driver_rows(conn, db.handoff, ["created_at"], [[NOW.replace(tzinfo=None)]])
    assert found["payload"] == {"événement": [1, 2.5, None]}
    assert found["next_attempt_at"] == NOW and found["next_attempt_at"].tzinfo == UTC
    assert change["at"] == NOW and change["at"].tzinfo == UTC
    assert contact[1].email == "c1@example.com" and contact[1].attributes == {}
    assert contact[1].role_account is False and decay_at == {1: None}


def test_every_sqlite_connection_gets_wal_and_its_page_cache(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with database.begin() as writer, database.reader() as reader:
            for conn in (writer, reader):
                found = [conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                         for name in ("journal_mode", "synchronous", "cache_size")]
                assert found == ["wal", 1, -8192]  # synchronous 1 = NORMAL
    finally:
        database.dispose()
