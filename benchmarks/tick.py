"""How fast does the tick advance contacts? Prints figures; asserts nothing.

Seeds N contacts (default 100,000) with SMS consent and an enrollment in a journey whose
first step sends an SMS; a fraction of them (`--due`, default all) is due now, the rest
waits months. Seeding runs in a process of its own, so the peak RSS printed is the
engine's. Then `--processes` daemons (default 1) run real ticks (`engine.tick.tick`)
with a provider that keeps nothing (`Sink`) on the same database (SQLite file, or `--db
postgresql://…`), sharing the due work through their claims. The floor is timed in the
same run on a copy of the same data (SQLite) or the same database reset (PostgreSQL):
the same template compiled once and rendered, the same rows read and updated with plain
driver `executemany` in one transaction per batch. Idle ticks (nothing due) are timed
last (the median of five). Last line:

    contact-steps/s: N  ratio-to-floor: R  tick-s: T  idle-tick-ms: I  peak-rss-mb: M

A contact-step is one send step executed for one contact (its gates, render, record,
hand-over).

    python benchmarks/tick.py [--contacts 100000] [--due 100%] [--batch 1000]
                              [--processes 1] [--db postgresql://…]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)  # a Tuesday: inside every send window
LATER = datetime(2027, 6, 1, tzinfo=UTC)
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
lease_seconds = 600
{database}
[sender]
company = "Acme Planning SAS"
[attributes.first_name]
[attributes.company]
[[frequency_caps]]
channel = "any"
max = 4
per = "7d"
"""
CHUNK = 20_000


def make_project(folder: Path, batch: int, db_url: str | None) -> Path:
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "journeys").mkdir()
    (folder / "journeys" / "reminder.yaml").write_text(JOURNEY)
    database = f'database_url = "{db_url}"' if db_url else ""
    (folder / "config.toml").write_text(CONFIG.replace("{batch}", str(batch))
                                        .replace("{database}", database))
    return folder / "config.toml"


class Sink:
    """A provider that takes every message and keeps none (a provider's memory is not the
    engine's: `MemoryProvider` would hold every message of the run)."""

    name = "memory"

    def __init__(self) -> None:
        self.count = 0

    def send(self, message: Any) -> Any:
        from nurture.providers.base import SendResult

        self.count += 1
        return SendResult(self.name, f"mem-{message.public_id}")


def _runtime(config: Path) -> Any:
    from nurture.config.settings import load_settings
    from nurture.engine.build import build_runtime

    sink = Sink()
    return build_runtime(load_settings(config), providers={"email": sink, "sms": sink}), sink


def seed(config: Path, count: int, due: int) -> None:
    """Contacts with SMS consent for marketing and an enrollment (`due` of them due now),
    in bulk through the driver; the journey applied as `nurture apply` does."""
    from nurture.config.settings import load_settings
    from nurture.services import journeys
    from nurture.store import codec, schema
    from nurture.store import database as db
    from nurture.store.database import Database

    database = Database(load_settings(config).database_url)
    schema.upgrade(database)
    rt, _ = _runtime(config)
    files, _, _ = journeys.read_files(rt)
    journeys.apply_files(rt, files, NOW)
    version = rt.journeys["reminder"].version
    tables = [
        (db.contact, ("id", "email", "phone", "locale", "timezone", "country", "attributes",
                      "stage", "temperature", "score", "fit", "role_account", "created_at",
                      "updated_at"),
         lambda i: (i, f"user{i}@example.com", f"+3361{i:07d}", "fr", "Europe/Paris", "FR",
                    {"first_name": "Camille"}, "lead", "hot", 70.0, 10.0, False, NOW, NOW)),
        (db.consent_record, ("id", "contact_id", "channel", "purpose", "action",
                             "legal_basis", "source", "address", "evidence", "recorded_at"),
         lambda i: (i, i, "sms", "marketing", "granted", "consent", "bench", f"+3361{i:07d}",
                    {}, NOW)),
        (db.consent_state, ("contact_id", "channel", "purpose", "action", "legal_basis",
                            "record_id", "updated_at"),
         lambda i: (i, "sms", "marketing", "granted", "consent", i, NOW)),
        (db.enrollment, ("contact_id", "journey_id", "journey_version", "purpose", "exclusive",
                         "step_id", "seq", "state", "next_run_at", "entered_at", "updated_at",
                         "end_reason", "last_error"),
         lambda i: (i, "reminder", version, "marketing", True, "remind", 0, "active",
                    NOW if i <= due else LATER, NOW, NOW, "", "")),
    ]
    with database.begin() as conn:
        for table, columns, row in tables:
            sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                   f"VALUES ({', '.join('?' for _ in columns)})")
            for start in range(1, count + 1, CHUNK):
                codec.execute_many(conn, sql, table, columns,
                                   [row(i) for i in range(start, min(start + CHUNK, count + 1))])
        # seeded enrolled: the entry sweep that follows an apply has nothing left to do
        journeys.jstore.set_sweep(conn, "reminder", None)
    if not database.is_sqlite:
        with database.begin() as conn:
            # statistics, as autovacuum's analyze gives a live database: right after a bulk
            # load PostgreSQL's planner scans whole tables for the idle tick's checks
            conn.exec_driver_sql("ANALYZE")
    database.dispose()
    rt.db.dispose()


def run_engine(config: Path) -> dict[str, Any]:
    """One daemon: ticks at NOW until nothing is due, then an idle tick."""
    import resource

    from nurture.daemon import settle_memory
    from nurture.engine.tick import tick

    rt, sink = _runtime(config)
    settle_memory()  # as the daemon does after start-up
    started = time.perf_counter()
    sent = tick(rt, NOW).sent
    elapsed = time.perf_counter() - started
    idles = []
    for minute in range(1, 6):  # the median of a few: one alone is at the mercy of the machine
        idle_started = time.perf_counter()
        tick(rt, NOW + timedelta(minutes=minute))
        idles.append(time.perf_counter() - idle_started)
    idle = sorted(idles)[len(idles) // 2]
    assert sent == sink.count, (sent, sink.count)
    rt.db.dispose()
    return {"sent": sent, "started": started, "elapsed": elapsed, "idle": idle,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_floor(config: Path, count: int, batch: int, db_url: str | None) -> float:
    """The same work by hand: read due rows, render, insert messages, move enrollments."""
    from nurture.config.settings import load_settings
    from nurture.content.rendering import TemplateCatalog

    settings = load_settings(config)
    catalog = TemplateCatalog(settings.templates_path, default_locale="fr", locales=["fr", "en"],
                              attribute_names=settings.attributes)
    template = catalog.environment.get_template("sms/hot/trial-reminder.fr.txt")
    if db_url:
        import psycopg

        conn: Any = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"),
                                    autocommit=True)
        mark, now_value, later = "%s", NOW, LATER
    else:
        import sqlite3

        conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"),
                               isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        mark, now_value = "?", NOW.replace(tzinfo=None).isoformat(" ")
        later = LATER.replace(tzinfo=None).isoformat(" ")
    cur = conn.cursor()
    cur.execute("DELETE FROM message")
    cur.execute(f"UPDATE enrollment SET step_id='remind', seq=0, next_run_at={mark} "
                f"WHERE next_run_at IS NOT NULL AND next_run_at <= {mark}", (now_value, later))
    q = mark
    started = time.perf_counter()
    done = 0
    while True:
        cur.execute("BEGIN")
        cur.execute(
            "SELECT e.id, e.contact_id, c.phone, c.attributes FROM enrollment e JOIN contact c "
            f"ON c.id = e.contact_id WHERE e.next_run_at <= {q} AND e.step_id = 'remind' "
            f"ORDER BY e.next_run_at LIMIT {q}", (now_value, batch))
        rows = cur.fetchall()
        if not rows:
            cur.execute("COMMIT")
            break
        messages, moves = [], []
        for enrollment_id, contact_id, phone, _attributes in rows:
            text = template.render(contact={"first_name": "Camille"},
                                   links={"unsubscribe": "u", "preferences": "p"},
                                   sender={"company": "Acme"}, message={"id": "m"},
                                   journey={"id": "j", "name": "n"})
            messages.append((uuid.uuid4().hex, contact_id, enrollment_id, 1000, "sms",
                             "marketing", "hot/trial-reminder", "sending", phone, text,
                             now_value, now_value))
            moves.append((later, enrollment_id))
        values = ",".join([q] * 12)
        cur.executemany(
            "INSERT INTO message (public_id, contact_id, enrollment_id, seq, channel, purpose, "
            "template, state, to_address, body_text, created_at, updated_at, locale, error, "
            f"subject, segments, provider, attempts, kind) VALUES ({values},'fr','','',1,'',"
            "0,'journey')", messages)
        cur.executemany(f"UPDATE enrollment SET step_id=NULL, seq=2, next_run_at={q} "
                        f"WHERE id={q}", moves)
        cur.execute("COMMIT")
        done += len(rows)
    elapsed = time.perf_counter() - started
    conn.close()
    print(f"floor:  {done} contact-steps in {elapsed:.2f}s")
    return done / elapsed


def _python(*args: str) -> dict[str, Any]:
    """Run a stage of this benchmark in a process of its own; its JSON answer."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--due", default="100%", help="how many are due: a count or N%%")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--db", default=None, help="postgresql://… (default: a SQLite file)")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    due = (int(args.contacts * float(args.due[:-1]) / 100) if args.due.endswith("%")
           else int(args.due))
    if args.stage == "seed":
        seed(Path(args.config), args.contacts, due)
        print("{}")
        return
    if args.stage == "engine":
        print(json.dumps(run_engine(Path(args.config))))
        return
    with tempfile.TemporaryDirectory() as folder:
        if args.db:
            _reset_postgres(args.db)
        config = make_project(Path(folder) / "project", args.batch, args.db)
        common = ["--config", str(config), "--contacts", str(args.contacts), "--due",
                  str(due)]
        _python("--stage", "seed", *common)
        if not args.db:  # the floor works on a copy of the same seeded data
            db_file = Path(folder) / "project" / "nurture.db"
            shutil.copy(db_file, Path(folder) / "floor.db")
        stage = [sys.executable, __file__, "--stage", "engine", *common]
        wall = time.perf_counter()
        workers = [subprocess.Popen(stage, stdout=subprocess.PIPE, text=True)
                   for _ in range(args.processes)]
        results = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
        wall = time.perf_counter() - wall
        sent = sum(r["sent"] for r in results)
        busiest = max(r["elapsed"] for r in results)
        idle = min(r["idle"] for r in results)
        rss = max(r["rss_mb"] for r in results)
        print(f"engine: {sent} contact-steps in {busiest:.2f}s by {args.processes} "
              f"process(es) ({wall:.2f}s wall with start-up); idle tick {idle * 1000:.1f} ms")
        if not args.db:
            shutil.copy(Path(folder) / "floor.db", db_file)
        floor = run_floor(config, args.contacts, args.batch, args.db)
    rate = sent / busiest
    print(f"contact-steps/s: {rate:.0f}  ratio-to-floor: {rate / floor:.2f}  "
          f"tick-s: {busiest:.2f}  idle-tick-ms: {idle * 1000:.1f}  peak-rss-mb: {rss:.0f}")


if __name__ == "__main__":
    main()
