"""PostgreSQL: the same engine, and several daemons sharing the work without double sends."""

from __future__ import annotations

import collections
import email
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.config.settings import load_settings
from nurture.engine.tick import tick
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.memory import MemoryProvider
from nurture.services import contacts
from nurture.store import database as db
from nurture.store.database import Database
from tests.conftest import applied_runtime, apply_config, seed_contacts, write_project

pytestmark = pytest.mark.postgres

SERVER = os.environ.get("NURTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")

JOURNEY = """
id: hello
name: Hello
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: wait-download, type: wait_for, event: content.downloaded, timeout: 5d }
  - { id: digest, type: send, channel: email, template: cold/newsletter-digest }
"""

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def seed(config: Path, url: str, count: int, now: datetime = MONDAY) -> None:
    seed_contacts(config, count, now, env={"NURTURE_DATABASE_URL": url})
    apply_config(config, env={"NURTURE_DATABASE_URL": url})


def test_the_engine_runs_unchanged_on_postgresql(tmp_path, pg_url):
    config = write_project(tmp_path / "p", journeys={"hello": JOURNEY})
    seed(config, pg_url, 3)
    settings = load_settings(config, env={"NURTURE_DATABASE_URL": pg_url})
    sink = MemoryProvider()
    rt = applied_runtime(settings, providers={"email": sink, "sms": sink})
    tick(rt, MONDAY)
    later = MONDAY + timedelta(hours=3)
    with rt.db.begin() as conn:
        first = contacts.find_contact(conn, "user0@example.com")
        event = IncomingEvent("content.downloaded", "api", later, first.id, source_event_id="e1")
        assert ingest(conn, rt, event, later) is not None
        assert ingest(conn, rt, event, later) is None          # stored once
    tick(rt, later)
    assert sorted(m.to for m in sink.sent) == sorted(
        ["user0@example.com", "user1@example.com", "user2@example.com", "user0@example.com"])
    with rt.db.begin() as conn:
        created = conn.execute(select(db.message.c.created_at)).scalars().first()
    assert created is not None and created.tzinfo is not None
    rt.db.dispose()


def test_several_daemons_share_the_work_and_none_double_sends(tmp_path, pg_url):
    count = 400
    config = write_project(tmp_path / "p", "batch_size = 10\n", {"hello": JOURNEY})
    # the daemons read the real clock: seed in the past, and send at any hour
    seed(config, pg_url, count, datetime.now(UTC) - timedelta(minutes=1))
    env = {**os.environ, "NURTURE_CONFIG": str(config), "NURTURE_DATABASE_URL": pg_url}
    daemons = [subprocess.Popen([sys.executable, "-c", "from nurture.cli.main import main; main()",
                                 "run", "--once"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for _ in range(3)]
    outputs = [d.communicate(timeout=300)[0].decode() for d in daemons]
    assert all(d.returncode == 0 for d in daemons), outputs
    processed = [int(o.split("processed=")[1].split()[0]) for o in outputs]
    assert sum(processed) == count, processed
    assert sum(1 for p in processed if p > 0) >= 2, f"work was not shared: {processed}"

    recipients: collections.Counter[str] = collections.Counter(
        email.message_from_bytes(p.read_bytes())["To"]
        for p in (tmp_path / "p" / "outbox" / "email").glob("*.eml"))
    assert len(recipients) == count and max(recipients.values()) == 1
    database = Database(pg_url)
    with database.begin() as conn:
        sent = conn.execute(select(func.count()).select_from(db.message)
                            .where(db.message.c.state == "sent")).scalar_one()
        claimed = conn.execute(select(func.count()).select_from(db.enrollment)
                               .where(db.enrollment.c.claimed_by.is_not(None))).scalar_one()
    database.dispose()
    assert sent == count and claimed == 0
