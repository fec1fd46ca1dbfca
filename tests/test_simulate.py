"""`nurture simulate` is the daemon's own tick under a simulated clock: on the shipped
examples its timelines match the real daemon run over the same days under freezegun,
and it leaves the store and the outbox byte for byte as they were."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from nurture.config.settings import Settings, load_settings
from nurture.daemon import Daemon
from nurture.engine.build import build_runtime
from nurture.intake import ledger
from nurture.providers.outbox import OutboxProvider
from nurture.services import contacts, journeys
from nurture.services import simulate as service
from nurture.store import schema
from nurture.store import simulation as sim_store
from nurture.store.database import Database

EXAMPLES = Path(__file__).resolve().parent.parent / "nurture" / "examples"
START = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # Monday 08:00 in Paris
DAYS = 10
ENV = {"NURTURE_SECRET_KEY": "test-secret-key"}
PEOPLE = [
    ("camille@example.com", "fr", {"first_name": "Camille", "company_size": 120,
                                   "role": "Head of Operations"}, ("newsletter", "marketing")),
    ("ana@example.com", "en", {"first_name": "Ana", "company_size": 8}, ("newsletter",)),
    ("noconsent@example.com", "en", {"first_name": "Noé"}, ()),
]
SCRIPT = [
    {"contact": "camille@example.com", "day": 1, "time": "09:00", "type": "email.opened"},
    {"contact": "camille@example.com", "day": 2, "time": "10:00", "type": "page.viewed",
     "properties": {"url": "https://acme-planning.example/pricing", "seconds": 90}},
    {"contact": "camille@example.com", "day": 3, "time": "10:00", "type": "demo.requested"},
    {"contact": "ana@example.com", "day": 2, "time": "12:00", "type": "content.downloaded",
     "properties": {"asset": "guide"}},
]


def project(root: Path) -> Settings:
    """The shipped example project with three contacts, as `nurture init` makes it."""
    shutil.copytree(EXAMPLES, root)
    settings = load_settings(root / "config.toml", env=ENV)
    database = Database(settings.database_url)
    schema.upgrade(database)
    with database.begin() as conn:
        for email, locale, attributes, purposes in PEOPLE:
            cid = contacts.add_contact(conn, settings, START - timedelta(days=1), email=email,
                                       locale=locale, attributes=attributes)
            contact = contacts.find_contact(conn, str(cid))
            for purpose in purposes:
                ledger.record_consent(conn, settings, START - timedelta(days=1),
                                      contact=contact, channel="email", purpose=purpose,
                                      action="granted", source="signup-form")
    database.dispose()
    return settings


def fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def script_file(root: Path) -> Path:
    path = root / "week.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in SCRIPT))
    return path


def test_simulate_leaves_the_store_and_the_outbox_unchanged(tmp_path: Path) -> None:
    settings = project(tmp_path / "p")
    before = fingerprint(tmp_path / "p")

    result = service.simulate(settings, days=DAYS, start=START,
                              script=service.read_script(script_file(tmp_path), START))

    assert fingerprint(tmp_path / "p") == before
    assert not (tmp_path / "p" / "outbox").exists()
    sent = [m for _, _, moments in result.timelines.values() for m in moments
            if m.what == "email sent"]
    assert sent, "the examples send something in ten days"


def test_simulate_matches_the_daemon_over_the_same_days(tmp_path: Path) -> None:
    simulated_project = project(tmp_path / "simulated")
    script = service.read_script(script_file(tmp_path), START)
    simulated = service.simulate(simulated_project, days=DAYS, start=START, script=script)

    # the real daemon: the journeys applied, a tick every 15 minutes under freezegun, the
    # scripted events arriving when they happen, messages written to the outbox
    settings = project(tmp_path / "real")
    rt = build_runtime(settings, providers={"email": OutboxProvider(settings.outbox_path),
                                            "sms": OutboxProvider(settings.outbox_path)})
    files, problems, _ = journeys.read_files(rt)
    assert problems == []
    journeys.apply_files(rt, files, START)
    pending = list(script)
    at = START
    with freeze_time(at) as clock:
        daemon = Daemon(rt)
        while at <= START + timedelta(days=DAYS):
            clock.move_to(at)
            while pending and pending[0].at <= at:
                service.play(rt, pending.pop(0), at)
            daemon.run_once()
            at += timedelta(minutes=15)
    with rt.db.reader() as conn:
        ids = sim_store.all_contact_ids(conn)
        real = sim_store.timelines(conn, ids, START)

    assert {cid: moments for cid, (_, _, moments) in real.items()} == {
        cid: [(m.at, m.what, m.detail) for m in moments]
        for cid, (_, _, moments) in simulated.timelines.items()}
    sent = sum(m[1] == "email sent" for _, _, moments in real.values() for m in moments)
    assert sent == len(list((settings.outbox_path / "email").glob("*.eml")))
    assert sent >= 3


def test_a_scripted_event_for_someone_not_simulated_is_refused(tmp_path: Path) -> None:
    settings = project(tmp_path / "p")
    script = [service.ScriptedEvent("nobody@example.com", START, "email.opened")]
    with pytest.raises(Exception, match="nobody@example.com"):
        service.simulate(settings, days=1, start=START, emails=["ana@example.com"],
                         script=script)


def test_a_bad_script_line_says_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"contact": "a@example.com", "type": "email.opened"}\n{"day": 2}\n')
    with pytest.raises(Exception, match=r"bad.jsonl:2: not a scripted event"):
        service.read_script(path, START)
