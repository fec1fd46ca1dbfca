"""How fast does `nurture import` load contacts? Prints figures; asserts nothing.

Writes a CSV of N rows (default 100,000) for the example project (its config.toml:
attributes, fit rules, purposes): email, phone (French mobiles, national format), first
name, company, role, company size, industry, locale; about 1% of rows are refused
(syntax, disposable domain, bad phone) and 1% repeat an earlier address in another case.
Imports it on a SQLite file with `--consent email:newsletter` through the path the CLI
takes (`services.importing.import_contacts`: checks, merge, chunked set-based writes,
consent ledger, fit), then imports it again (nothing changes). Optionally loads past
events for the imported contacts (`--events`, `services.event_import`). Last line:

    rows/s: N  reimport-rows/s: M  [event-rows/s: E]  peak-rss-mb: R

    python benchmarks/import.py [--rows 100000] [--chunk 2000] [--events 0]
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import load_settings  # noqa: E402
from nurture.engine.build import build_runtime  # noqa: E402
from nurture.engine.runtime import Runtime  # noqa: E402
from nurture.providers.memory import MemoryProvider  # noqa: E402
from nurture.services.event_import import EventImportOptions, import_events  # noqa: E402
from nurture.services.importing import ImportOptions, import_contacts  # noqa: E402
from nurture.store import database as db  # noqa: E402

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
ROLES = ["Head of Operations", "Directrice des opérations", "Intern", "COO", "Chargée RH"]
INDUSTRIES = ["retail", "logistics", "health", "software", "hospitality"]
KINDS = ["page.viewed", "email.opened", "email.clicked", "content.downloaded"]


def make_project(folder: Path) -> Path:
    for part in ("journeys", "templates"):
        shutil.copytree(ROOT / part, folder / part)
    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    return folder / "config.toml"


def write_rows(path: Path, count: int) -> None:
    rng = random.Random(7)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "phone", "first_name", "company", "role", "company_size",
                      "industry", "locale"])
        for i in range(count):
            roll = rng.random()
            email = f"user{i}@company{i % 500}.example.com"
            phone = f"06 {i // 1_000_000 % 100:02d} {i // 10_000 % 100:02d} " \
                    f"{i // 100 % 100:02d} {i % 100:02d}"
            if roll < 0.004:
                email = f"user{i}.example.com"  # no @
            elif roll < 0.007:
                email = f"user{i}@mailinator.com"
            elif roll < 0.01:
                phone = "12345"
            elif roll < 0.02 and i:
                email = f"USER{i - 1}@Company{(i - 1) % 500}.example.com"  # a duplicate
            out.writerow([email, phone, "Camille", f"Company {i % 500}", rng.choice(ROLES),
                          rng.choice([5, 40, 120, 800]), rng.choice(INDUSTRIES),
                          rng.choice(["fr", "en"])])


def write_events(path: Path, rows: int, count: int) -> None:
    rng = random.Random(11)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "type", "occurred_at", "prop.url", "prop.seconds"])
        for _ in range(count):
            user = rng.randrange(rows)
            at = NOW - timedelta(days=90) + timedelta(seconds=rng.randrange(89 * 86400))
            out.writerow([f"user{user}@company{user % 500}.example.com", rng.choice(KINDS),
                          at.isoformat(), rng.choice(["/blog", "/pricing", "/features"]),
                          rng.randint(2, 300)])


def counts(rt: Runtime) -> str:
    with rt.db.begin() as conn:
        contacts = conn.execute(select(func.count()).select_from(db.contact)).scalar_one()
        ledger = conn.execute(select(func.count()).select_from(db.consent_record)).scalar_one()
        fitting = conn.execute(select(func.count()).where(db.contact.c.fit > 0)).scalar_one()
    return f"{contacts} contacts, {ledger} ledger entries, {fitting} with a fit"


def timed_import(rt: Runtime, file: Path, chunk: int) -> tuple[float, str]:
    options = ImportOptions(consents=["email:newsletter"], source="bench",
                            evidence={"wording_version": "v1"}, chunk=chunk)
    started, cpu = time.perf_counter(), time.process_time()
    report = import_contacts(rt, file, options, NOW)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    summary = (f"{report.rows} rows in {elapsed:.2f}s ({cpu:.2f}s CPU): {report.created} created, "
               f"{report.updated} updated, {report.unchanged} unchanged, {report.merged} "
               f"merged, {len(report.rejected)} rejected")
    return report.rows / elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=2000, help="contacts per transaction")
    parser.add_argument("--events", type=int, default=0, help="past events to load after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(make_project(Path(folder)))
        sink = MemoryProvider()
        rt = build_runtime(settings, providers={"email": sink, "sms": sink})
        file = Path(folder) / "contacts.csv"
        write_rows(file, args.rows)
        rate, summary = timed_import(rt, file, args.chunk)
        print(f"import: {summary}; {counts(rt)}")
        again, summary = timed_import(rt, file, args.chunk)
        print(f"re-import: {summary}; {counts(rt)}")
        figures = f"rows/s: {rate:.0f}  reimport-rows/s: {again:.0f}"
        if args.events:
            events = Path(folder) / "events.csv"
            write_events(events, args.rows, args.events)
            started = time.perf_counter()
            report = import_events(rt, events, EventImportOptions(source="bench"), NOW)
            elapsed = time.perf_counter() - started
            print(f"events: {report.stored} stored in {elapsed:.2f}s for {report.contacts} "
                  f"contacts, {len(report.rejected)} rejected")
            figures += f"  event-rows/s: {args.events / elapsed:.0f}"
        rt.db.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{figures}  peak-rss-mb: {peak:.0f}")


if __name__ == "__main__":
    main()
