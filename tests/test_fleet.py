"""A fleet on one PostgreSQL database: three daemons share the due work and the senders'
pace (`twilio_mps`), which the fleet as a whole never exceeds; each daemon's last tick
is on record for `nurture status`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.config.settings import load_settings
from nurture.intake import ledger
from nurture.providers.pacing import LocalPacer, SharedPacer
from nurture.services import contacts
from nurture.store import database as db
from nurture.store import pacing, schema
from nurture.store.database import Database
from tests.conftest import apply_config, write_project
from tests.fakes import Answer, FakeApi, running

TOKEN = "test-auth-token-0123456789"
ACCOUNT = "AC" + "0" * 32
TEXTS = """
id: texts
name: Texts
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: sms, template: hot/trial-reminder }
"""
#: one daemon of the fleet: the real tick, Twilio's SDK pointed at the loopback fake,
#: the pace booked in the database
WORKER = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from nurture.config.settings import load_settings
    from nurture.daemon import Daemon
    from nurture.engine.build import build_runtime
    from nurture.providers.memory import MemoryProvider
    from nurture.providers.pacing import LocalPacer, SharedPacer
    from nurture.providers.twilio import TwilioProvider
    from nurture.store.database import Database
    from tests.fakes import LoopbackTwilioHttpClient

    config, url, worker = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
    database = Database(settings.database_url)
    twilio = TwilioProvider("%(account)s", "%(token)s", settings, LoopbackTwilioHttpClient(url),
                            pacer=SharedPacer(settings.providers.twilio_mps, database))
    rt = build_runtime(settings, database=database,
                       providers={"email": MemoryProvider(), "sms": twilio})
    rt.worker = worker
    daemon = Daemon(rt, clock=lambda: datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
    while daemon.run_once().processed:
        pass
""") % {"account": ACCOUNT, "token": TOKEN}


def seed_texted(config: Path, count: int, now: datetime) -> None:
    """`count` contacts with a French mobile number and SMS consent for the newsletter."""
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
    database = Database(settings.database_url)
    schema.upgrade(database)
    with database.begin() as conn:
        for i in range(count):
            cid = contacts.add_contact(conn, settings, now, email=f"user{i}@example.com",
                                       phone=f"+336123400{i:02d}")
            ledger.record_consent(conn, settings, now, contact=contacts.find_contact(
                conn, str(cid)), channel="sms", purpose="newsletter", action="granted",
                source="test")
    database.dispose()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with running() as fake:
        yield fake


def stamped(api: FakeApi) -> list[float]:
    """Arrival times of the Twilio requests, taken by the fake as they come."""
    arrivals: list[float] = []
    answered = api.success

    def success(request: Any) -> Answer:
        arrivals.append(time.monotonic())
        return answered(request)

    api.success = success  # type: ignore[method-assign]
    return arrivals


@pytest.mark.postgres
@pytest.mark.slow
def test_three_daemons_never_exceed_the_senders_pace_together(
        tmp_path: Path, api: FakeApi, pg_url: str) -> None:
    contacts, mps = 30, 5.0
    config = write_project(tmp_path / "p", f'database_url = "{pg_url}"\nbatch_size = 4\n'
                           f"[providers]\ntwilio_mps = {mps}\n", {"texts": TEXTS})
    seed_texted(config, contacts, datetime(2026, 12, 8, 8, 0, tzinfo=UTC))
    apply_config(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
    arrivals = stamped(api)

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = str(Path(__file__).resolve().parent.parent)
    fleet = [subprocess.Popen([sys.executable, str(script), str(config), api.url, f"d{i}"],
                              cwd=root, env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin",
                                             "NO_PROXY": "127.0.0.1,localhost"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(3)]
    outputs = [p.communicate(timeout=180)[0].decode() for p in fleet]
    assert [p.returncode for p in fleet] == [0, 0, 0], outputs

    assert len(arrivals) == contacts
    # any window of two seconds holds at most 2 × mps segments (each text is one
    # segment), with two of slack: one for the window's edges, one because the fake stamps
    # arrivals in this process, which a loaded machine can hold back, bunching a few
    # stamps together (a per-process pace would put ~6 × mps in such a window)
    worst = max(sum(1 for t in arrivals if start <= t < start + 2.0) for start in arrivals)
    assert worst <= 2 * mps + 2, worst
    assert arrivals[-1] - arrivals[0] >= (contacts - 1) / mps * 0.9
    settings = load_settings(config, env={})
    database = Database(settings.database_url)
    with database.reader() as conn:
        sent = conn.execute(select(db.message.c.contact_id, func.count())
                            .where(db.message.c.state == "sent")
                            .group_by(db.message.c.contact_id)).all()
        workers = {r.worker for r in conn.execute(select(db.daemon_beat.c.worker))}
    database.dispose()
    assert len(sent) == contacts and {n for _, n in sent} == {1}
    assert workers == {"d0", "d1", "d2"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_booking_takes_the_senders_next_slot(backend: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'pace.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    database = Database(url)
    schema.upgrade(database)
    with database.begin() as conn:
        first = pacing.book(conn, "+15550001", 0.5)
    with database.begin() as conn:
        second = pacing.book(conn, "+15550001", 0.5)
        other = pacing.book(conn, "+15550002", 0.5)
    assert first == 0.0 and other == 0.0
    assert 0.4 < second <= 0.5  # booked behind the first half second
    slept: list[float] = []
    SharedPacer(2.0, database, sleep=slept.append).wait("+15550001", 1)
    assert len(slept) == 1 and 0.5 < slept[0] <= 1.0
    database.dispose()


def test_a_daemon_woken_past_its_slot_books_another_instead_of_sending_late(
        tmp_path: Path) -> None:
    """Sending in a missed slot could put two messages side by side with the slots other
    daemons took meanwhile: faster than the rate together."""
    database = Database(f"sqlite:///{tmp_path / 'pace.db'}")
    schema.upgrade(database)
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the first wake-up is a whole second late
        slept.append(seconds)
        now[0] += seconds + (1.0 if len(slept) == 1 else 0.0)

    pacer = SharedPacer(2.0, database, sleep=sleep, clock=lambda: now[0])
    with database.begin() as conn:
        pacing.book(conn, "+15550001", 0.5)  # someone holds the next half second
    pacer.wait("+15550001", 1)
    assert len(slept) == 2  # slot missed, a later one booked and kept
    with database.begin() as conn:
        behind = pacing.book(conn, "+15550001", 0.5)
    assert behind > 0.5  # three slots taken in all: the missed one stays unused
    database.dispose()


def test_a_late_wake_up_delays_the_next_message_of_one_process() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds + 0.7  # every wake-up late

    pacer = LocalPacer(2.0, clock=lambda: now[0], sleep=sleep)
    sent = []
    for _ in range(3):
        pacer.wait("+15550001", 1)
        sent.append(now[0])
    assert all(b - a >= 0.5 for a, b in zip(sent, sent[1:], strict=False))


def test_status_shows_each_daemons_last_tick(tmp_path: Path) -> None:
    from nurture.cli.main import app

    config = write_project(tmp_path / "p", "", {"texts": TEXTS})
    env = {"NURTURE_SECRET_KEY": "test-secret-key"}
    apply_config(config, env=env)
    from nurture.daemon import Daemon
    from tests.conftest import applied_runtime

    rt = applied_runtime(load_settings(config, env=env))
    rt.worker = "host-a:42"
    at = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    Daemon(rt, clock=lambda: at).run_once()
    rt.db.dispose()

    result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    [beat] = json.loads(result.stdout)["daemons"]
    assert beat["worker"] == "host-a:42"
    assert datetime.fromisoformat(beat["last_tick_at"]) == at
    assert beat["last_tick"]["processed"] == 0
    people = CliRunner().invoke(app, ["--config", str(config), "status"], env=env)
    assert "host-a:42" in people.stdout


def test_healthz_reports_the_database_the_lag_and_the_daemons(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from nurture.daemon import Daemon
    from nurture.web.app import create_app
    from tests.conftest import applied_runtime

    config = write_project(tmp_path / "p", "", {"texts": TEXTS})
    rt = applied_runtime(load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"}))
    seed_texted(config, 2, datetime(2026, 12, 8, 8, 0, tzinfo=UTC))
    at = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    client = TestClient(create_app(rt, lambda: at))

    behind = client.get("/healthz").json()
    assert behind["database"] == "reachable" and behind["daemons"] == []
    assert behind["lag_seconds"] == 3600.0  # two contacts to enter since 08:00, no tick yet

    rt.worker = "host-a:42"
    Daemon(rt, clock=lambda: at).run_once()
    caught_up = client.get("/healthz").json()
    assert caught_up["lag_seconds"] == 0.0
    assert [d["worker"] for d in caught_up["daemons"]] == ["host-a:42"]

    rt.db.engine.dispose()
    (config.parent / "nurture.db").unlink()
    (config.parent / "nurture.db").mkdir()  # the file is gone: the database cannot open
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json()["database"] == "unreachable"
