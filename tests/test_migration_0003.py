"""Revision 0003 (journey state, step runs, blocked enrollments) keeps existing rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from nurture.store import database as db
from nurture.store import schema
from nurture.store.database import Database

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def at_0002(url: str) -> Database:
    database = Database(url)
    with database.engine.begin() as conn:
        command.upgrade(schema._config(conn), "0002")
    return database


def enrollment(i: int, state: str, step: str) -> dict[str, object]:
    return {"id": i, "contact_id": 1, "journey_id": f"j{i}", "journey_version": "v1",
            "purpose": "newsletter", "exclusive": True, "step_id": step, "seq": 2,
            "state": state, "next_run_at": NOW, "wait_event": "content.downloaded"
            if state == "waiting" else None, "entered_at": NOW, "updated_at": NOW,
            "ended_at": None, "end_reason": "", "last_error": "", "claimed_by": None,
            "claimed_until": None}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0003_keeps_rows_makes_applied_versions_current_and_blocked_ones_live(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if backend == "sqlite" else (
        request.getfixturevalue("pg_url"))
    database = at_0002(url)
    with database.begin() as conn:
        conn.execute(db.contact.insert().values(
            id=1, email="c@example.com", locale="en", timezone="Europe/Paris", attributes={},
            stage="lead", temperature="cold", score=0.0, fit=0.0, role_account=False,
            created_at=NOW, updated_at=NOW))
        enrollments = [enrollment(1, "waiting", "ask"), enrollment(2, "active", "article"),
                       enrollment(3, "failed", "gone")]
        for row in enrollments:
            conn.execute(db.enrollment.insert().values(**row))
        for version, at in (("v1", NOW), ("v2", NOW + timedelta(days=1))):
            conn.execute(db.journey_version.insert().values(
                journey_id="j1", version=version, path="journeys/j1.yaml",
                source=f"id: j1 # {version}", applied_at=at))

    assert schema.upgrade(database) == ("0002", schema.head())
    with database.begin() as conn:
        rows = {r["id"]: dict(r) for r in conn.execute(select(db.enrollment)).mappings()}
        for row in enrollments:
            assert {k: rows[row["id"]][k] for k in row} == row  # every value kept
        assert [rows[i]["wait_step"] for i in (1, 2, 3)] == ["ask", None, None]
        states = [dict(r) for r in conn.execute(select(db.journey_state)).mappings()]
        assert [(s["journey_id"], s["version"], s["paused"], s["sweep_after"]) for s in states
                ] == [("j1", "v2", False, None)]
        assert len(conn.execute(select(db.journey_version)).all()) == 2
    assert schema.differences(database) == []
    # a blocked enrollment holds the contact's place: no second live one in that journey
    with pytest.raises(IntegrityError), database.begin() as conn:
        conn.execute(db.enrollment.insert().values(**{**enrollment(4, "blocked", "x"),
                                                      "journey_id": "j2"}))
    database.dispose()
