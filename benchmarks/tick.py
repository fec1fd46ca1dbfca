"""How fast does the tick advance contacts? Prints figures; asserts nothing.

Seeds N contacts (default 100,000) with consent and an enrollment due now in a journey
whose first step sends an SMS, then runs real ticks (`engine.tick`) with an in-memory
provider. The floor is timed in the same run on a copy of the same data: the same
template compiled once and rendered, the same rows read and updated with plain
`sqlite3` `executemany` in one transaction per batch. Last line:

    contact-steps/s: N  peak-rss-mb: M  ratio-to-floor: R

A contact-step is one send step executed for one contact (its gates, render, record).

    python benchmarks/tick.py [--contacts 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import load_settings  # noqa: E402
from nurture.daemon import settle_memory  # noqa: E402
from nurture.engine.build import build_runtime  # noqa: E402
from nurture.engine.tick import tick  # noqa: E402
from nurture.providers.memory import MemoryProvider  # noqa: E402
from nurture.store import database as db  # noqa: E402

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)  # a Tuesday: inside every send window

JOURNEY = """id: reminder
name: Trial reminder by SMS
purpose: marketing
entry: { when: "stage == 'lead' and temperature == 'hot'" }
exit_when: "stage != 'lead'"
steps:
  - { id: remind, type: send, channel: sms, template: hot/trial-reminder }
  - { id: pause, type: wait, duration: 3d }
"""

CONFIG = """mode = "dev"
default_locale = "fr"
locales = ["fr", "en"]
batch_size = {batch}
[sender]
company = "Acme Planning SAS"
[attributes.first_name]
[attributes.company]
[[frequency_caps]]
channel = "any"
max = 4
per = "7d"
"""


def make_project(folder: Path, batch: int) -> Path:
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "journeys").mkdir()
    (folder / "journeys" / "reminder.yaml").write_text(JOURNEY)
    (folder / "config.toml").write_text(CONFIG.replace("{batch}", str(batch)))
    return folder / "config.toml"


def seed(runtime: object, count: int) -> None:
    """Contacts with SMS consent for marketing and an enrollment due now, in bulk."""
    rt = runtime
    contacts, consents, records, enrollments = [], [], [], []
    for i in range(1, count + 1):
        contacts.append({
            "id": i, "email": f"user{i}@example.com", "phone": f"+3361{i:07d}", "locale": "fr",
            "timezone": "Europe/Paris", "country": "FR", "attributes": {"first_name": "Camille"},
            "stage": "lead", "temperature": "hot", "score": 70.0, "fit": 10.0,
            "role_account": False, "created_at": NOW, "updated_at": NOW,
        })
        records.append({"id": i, "contact_id": i, "channel": "sms", "purpose": "marketing",
                        "action": "granted", "legal_basis": "consent", "source": "bench",
                        "address": contacts[-1]["phone"], "evidence": {}, "recorded_at": NOW})
        consents.append({"contact_id": i, "channel": "sms", "purpose": "marketing",
                         "action": "granted", "legal_basis": "consent", "record_id": i,
                         "updated_at": NOW})
        enrollments.append({"contact_id": i, "journey_id": "reminder", "journey_version": "b",
                            "purpose": "marketing", "exclusive": True, "step_id": "remind",
                            "seq": 0, "state": "active", "next_run_at": NOW, "entered_at": NOW,
                            "updated_at": NOW, "end_reason": "", "last_error": ""})
    with rt.db.begin() as conn:  # type: ignore[attr-defined]
        for table, rows in ((db.contact, contacts), (db.consent_record, records),
                            (db.consent_state, consents), (db.enrollment, enrollments)):
            conn.execute(insert(table), rows)


def run_engine(config: Path, count: int) -> tuple[float, int]:
    settings = load_settings(config)
    sink = MemoryProvider()
    rt = build_runtime(settings, providers={"email": sink, "sms": sink})
    seed(rt, count)
    settle_memory()  # as the daemon does after start-up
    started = time.perf_counter()
    report = tick(rt, NOW)
    elapsed = time.perf_counter() - started
    idle_started = time.perf_counter()
    tick(rt, NOW + timedelta(minutes=1))
    idle = time.perf_counter() - idle_started
    assert report.sent == count == len(sink.sent), (report, len(sink.sent))
    print(f"engine: {count} contact-steps in {elapsed:.2f}s; idle tick {idle * 1000:.1f} ms")
    rt.db.dispose()
    return count / elapsed, report.sent


def run_floor(config: Path, count: int, batch: int) -> float:
    """The same work by hand: read due rows, render, insert messages, move enrollments."""
    settings = load_settings(config)
    from nurture.content.rendering import TemplateCatalog

    catalog = TemplateCatalog(settings.templates_path, default_locale="fr", locales=["fr", "en"],
                              attribute_names=settings.attributes)
    template = catalog.environment.get_template("sms/hot/trial-reminder.fr.txt")
    path = settings.database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("UPDATE enrollment SET step_id='remind', seq=0, next_run_at=?",
                 (NOW.replace(tzinfo=None).isoformat(" "),))
    started = time.perf_counter()
    now_text = NOW.replace(tzinfo=None).isoformat(" ")
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT e.id, e.contact_id, c.phone, c.attributes FROM enrollment e JOIN contact c "
            "ON c.id = e.contact_id WHERE e.next_run_at <= ? AND e.step_id = 'remind' "
            "ORDER BY e.next_run_at LIMIT ?", (now_text, batch)).fetchall()
        if not rows:
            conn.execute("COMMIT")
            break
        messages, moves = [], []
        for enrollment_id, contact_id, phone, _attributes in rows:
            text = template.render(contact={"first_name": "Camille"},
                                   links={"unsubscribe": "u", "preferences": "p"},
                                   sender={"company": "Acme"}, message={"id": "m"},
                                   journey={"id": "j", "name": "n"})
            messages.append((uuid.uuid4().hex, contact_id, enrollment_id, 0, "sms", "marketing",
                             "hot/trial-reminder", "sending", phone, text, now_text, now_text))
            moves.append((now_text, enrollment_id))
        conn.executemany(
            "INSERT INTO message (public_id, contact_id, enrollment_id, seq, channel, purpose, "
            "template, state, to_address, body_text, created_at, updated_at, locale, error, "
            "subject, segments, provider, attempts, kind) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'fr',"
            "'','',1,'',0,'journey')", [(*m[:3], m[3] + 1000, *m[4:]) for m in messages])
        conn.executemany("UPDATE enrollment SET step_id=NULL, seq=2, next_run_at=? WHERE id=?",
                         [("2027-01-01 00:00:00", e) for _, e in moves])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    print(f"floor:  {count} contact-steps in {elapsed:.2f}s")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = make_project(Path(folder), args.batch)
        rate, _ = run_engine(config, args.contacts)
        floor = run_floor(config, args.contacts, args.batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"contact-steps/s: {rate:.0f}  peak-rss-mb: {peak:.0f}  ratio-to-floor: "
          f"{rate / floor:.2f}")


if __name__ == "__main__":
    main()
