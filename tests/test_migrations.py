"""The store owns its schema through Alembic: databases in use upgrade in place with
their data, the models and the migrations agree, and an outdated schema is refused."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select
from sqlmodel import SQLModel

from nurture.errors import SchemaOutdated
from nurture.store import codec, schema
from nurture.store import database as db
from nurture.store.database import Database
from tests.conftest import write_project

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

#: one row for every table of revision 0001 (main's schema before migrations)
BASELINE_ROWS = {
    "contact": {"id": 1, "email": "camille@example.com", "phone": "+33612345678",
                "locale": "fr", "timezone": "Europe/Paris", "country": "FR",
                "attributes": {"first_name": "Camille"}, "stage": "lead",
                "temperature": "warm", "score": 25.0, "fit": 10.0, "role_account": False,
                "created_at": NOW, "updated_at": NOW, "stage_changed_at": None,
                "evaluate_at": NOW, "decay_at": None},
    "enrollment": {"id": 1, "contact_id": 1, "journey_id": "cold-education",
                   "journey_version": "v1", "purpose": "newsletter", "exclusive": True,
                   "step_id": "welcome", "seq": 1, "state": "active", "next_run_at": NOW,
                   "wait_event": None, "entered_at": NOW, "updated_at": NOW, "ended_at": None,
                   "end_reason": "", "last_error": "", "claimed_by": None,
                   "claimed_until": None},
    "message": {"id": 1, "public_id": "0123abcd", "contact_id": 1, "enrollment_id": 1,
                "seq": 0, "journey_id": "cold-education", "step_id": "welcome",
                "channel": "email", "purpose": "newsletter", "template": "cold/welcome-guide",
                "locale": "fr", "state": "sent", "skip_reason": None, "error": "",
                "to_address": "camille@example.com", "subject": "Bienvenue",
                "body_text": "Bonjour", "segments": 0, "provider": "outbox",
                "provider_message_id": "outbox-0123abcd", "attempts": 1,
                "next_attempt_at": None, "retry_payload": None, "lease_until": None,
                "created_at": NOW, "sent_at": NOW, "updated_at": NOW},
    "event": {"id": 1, "contact_id": 1, "type": "email.opened", "source": "sendgrid",
              "source_event_id": "sg-1", "occurred_at": NOW, "received_at": NOW,
              "message_id": 1, "properties": {"ip": "203.0.113.7"}, "raw": {"event": "open"}},
    "consentrecord": {"id": 1, "contact_id": 1, "channel": "email", "purpose": "newsletter",
                      "action": "granted", "legal_basis": "consent", "source": "form",
                      "address": "camille@example.com", "evidence": {"wording_version": "v3"},
                      "recorded_at": NOW},
    "consentstate": {"contact_id": 1, "channel": "email", "purpose": "newsletter",
                     "action": "granted", "legal_basis": "consent", "record_id": 1,
                     "updated_at": NOW},
    "suppression": {"id": 1, "address_hash": "ab" * 32, "reason": "erased", "detail": "",
                    "created_at": NOW},
    "contactchange": {"id": 1, "contact_id": 1, "field": "score", "old": "0", "new": "25",
                      "delta": 25.0, "rule": "open", "event_id": 1, "reason": "", "at": NOW},
    "handoff": {"id": 1, "contact_id": 1, "reason": "qualified", "payload": {"source": "x"},
                "notify": True, "state": "pending", "attempts": 0, "next_attempt_at": NOW,
                "last_error": "", "created_at": NOW, "delivered_at": None},
    "journeyversion": {"journey_id": "cold-education", "version": "v1", "path": "j.yaml",
                       "source": "id: cold-education", "applied_at": NOW},
}


def at_revision(url: str, revision: str) -> Database:
    database = Database(url)
    with database.engine.begin() as conn:
        command.upgrade(schema._config(conn), revision)
    return database


def test_every_table_of_revision_0001_has_a_row_in_the_fixture() -> None:
    database = at_revision("sqlite://", "0001")
    tables = set(inspect(database.engine).get_table_names()) - {"alembic_version"}
    assert tables == set(BASELINE_ROWS)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_at_0001_upgrades_to_head_with_every_row_intact(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue(
        "pg_url")
    database = at_revision(url, "0001")
    with database.begin() as conn:
        for name, row in BASELINE_ROWS.items():  # the columns 0001 made, bound by the codec
            sql = (f"INSERT INTO {name} ({', '.join(row)}) "
                   f"VALUES ({', '.join('?' for _ in row)})")
            codec.execute_many(conn, sql, SQLModel.metadata.tables[name], list(row),
                               [list(row.values())])
    tables = SQLModel.metadata.tables

    before, after = schema.upgrade(database)

    assert (before, after) == ("0001", schema.head())
    with database.begin() as conn:
        for name, row in BASELINE_ROWS.items():
            [stored] = [dict(r) for r in conn.execute(select(tables[name])).mappings()]
            assert {k: stored[k] for k in row} == row, name
        assert conn.execute(select(db.message.c.kind)).scalar_one() == "journey"
    assert schema.differences(database) == []
    database.dispose()


def test_a_database_made_before_migrations_is_recognised_and_upgraded(tmp_path: Path) -> None:
    """Databases in use today have the tables of 0001 and no alembic_version."""
    database = at_revision(f"sqlite:///{tmp_path / 'legacy.db'}", "0001")
    with database.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.execute(insert(db.contact).values(**BASELINE_ROWS["contact"]))
    assert schema.upgrade(database) == ("0001", schema.head())
    with database.begin() as conn:
        assert conn.execute(select(db.contact.c.email)).scalar_one() == "camille@example.com"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_models_and_the_migrations_agree(backend: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    """Alembic's autogenerate comparison is empty: a model change without its revision
    fails here (and so in CI)."""
    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else request.getfixturevalue(
        "pg_url")
    database = Database(url)
    schema.upgrade(database)
    assert schema.differences(database) == []
    database.dispose()


def test_an_outdated_schema_is_refused_until_upgraded(tmp_path: Path) -> None:
    database = at_revision(f"sqlite:///{tmp_path / 'old.db'}", "0001")
    with pytest.raises(SchemaOutdated, match="nurture db upgrade"):
        schema.require_current(database)
    schema.upgrade(database)
    schema.require_current(database)


def test_the_cli_names_the_command_and_db_upgrade_fixes_it(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p")
    at_revision(f"sqlite:///{config.parent / 'nurture.db'}", "0001").dispose()

    def nurture(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from nurture.cli.main import main; main()",
                               "--config", str(config), *args], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "NURTURE_SECRET_KEY": "k" * 20},
                              timeout=120)

    refused = nurture("status")
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        f"error: the database schema is at revision 0001, this version needs "
        f"{schema.head()}: run `nurture db upgrade`"]
    upgraded = nurture("db", "upgrade")
    assert upgraded.returncode == 0 and f"upgraded from 0001 to revision {schema.head()}" in (
        upgraded.stdout)
    assert nurture("status").returncode == 0
    again = nurture("db", "upgrade", "--json")
    assert '"change": "unchanged"' in again.stdout
