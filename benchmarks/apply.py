"""How long does applying a journey to every contact take? Prints figures; asserts nothing.

Seeds N contacts (default 100,000; 60% of them match the journey's entry) in bulk through
the driver, with their journeys evaluated already (nothing flags them), then times:

- `plan`: the changes and how many contacts would newly enter (a dry run of the sweep);
- `apply`: recording the version;
- the sweep the next tick runs (`membership.sweep`): every contact evaluated against the
  new entry, in batches, and the matching ones enrolled.

Last line:

    contacts: N  entered: E  plan-s: P  apply-s: A  sweep-s: S  apply-to-contacts-s: A+S

    python benchmarks/apply.py [--contacts 100000] [--db postgresql://…/an_empty_database]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import load_settings  # noqa: E402
from nurture.engine import membership  # noqa: E402
from nurture.engine.build import build_runtime  # noqa: E402
from nurture.providers.memory import MemoryProvider  # noqa: E402
from nurture.services import journeys  # noqa: E402
from nurture.store import codec, schema  # noqa: E402
from nurture.store import database as db  # noqa: E402
from nurture.store.database import Database  # noqa: E402

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
JOURNEY = """id: broadcast
name: Every lead of a company of 50 or more
purpose: newsletter
entry: { when: "stage == 'lead' and attributes.company_size >= 50" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 30d }
"""
CONFIG = """mode = "dev"
default_locale = "en"
locales = ["en", "fr"]
{database}
[attributes.first_name]
[attributes.company_size]
type = "int"
"""
CHUNK = 20_000
COLUMNS = ("id", "email", "locale", "timezone", "attributes", "stage", "temperature", "score",
           "fit", "role_account", "created_at", "updated_at")


def make_project(folder: Path, db_url: str | None) -> Path:
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "journeys").mkdir()
    database = f'database_url = "{db_url}"' if db_url else ""
    (folder / "config.toml").write_text(CONFIG.replace("{database}", database))
    return folder / "config.toml"


def seed(database: Database, count: int) -> None:
    """`count` leads; three in five work for a company of 120 (the entry matches them)."""
    sql = (f"INSERT INTO contact ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in COLUMNS)})")
    with database.begin() as conn:
        for start in range(1, count + 1, CHUNK):
            rows = [(i, f"user{i}@example.com", "en", "Europe/Paris",
                     {"first_name": "Camille", "company_size": 120 if i % 5 < 3 else 10},
                     "lead", "cold", 0.0, 0.0, False, NOW, NOW)
                    for i in range(start, min(start + CHUNK, count + 1))]
            codec.execute_many(conn, sql, db.contact, COLUMNS, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--db", help="postgresql://… (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = make_project(Path(tmp), args.db)
        settings = load_settings(config)
        database = Database(settings.database_url)
        schema.upgrade(database)
        seed(database, args.contacts)
        sink = MemoryProvider()
        rt = build_runtime(settings, database=database, providers={"email": sink, "sms": sink})
        journeys.apply_files(rt, [], NOW)  # an applied project, no journey yet
        (config.parent / "journeys" / "broadcast.yaml").write_text(JOURNEY)
        files, _, _ = journeys.read_files(rt)

        started = time.perf_counter()
        with rt.db.reader() as conn:
            plan = journeys.build_plan(conn, files, NOW)
        plan_s = time.perf_counter() - started
        started = time.perf_counter()
        journeys.apply_files(rt, files, NOW)
        apply_s = time.perf_counter() - started
        started = time.perf_counter()
        entered = membership.sweep(rt, NOW)
        sweep_s = time.perf_counter() - started

        predicted = plan.journeys[0].newly_entering
        print(f"plan predicted {predicted} newcomers; the sweep enrolled {entered}")
        print(f"contacts: {args.contacts}  entered: {entered}  plan-s: {plan_s:.2f}  "
              f"apply-s: {apply_s:.2f}  sweep-s: {sweep_s:.2f}  "
              f"apply-to-contacts-s: {apply_s + sweep_s:.2f}")
        rt.db.dispose()


if __name__ == "__main__":
    main()
