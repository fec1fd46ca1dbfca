"""How fast are events ingested and scored? Prints figures; asserts nothing.

Seeds N contacts (default 10,000) of the example project (its journeys, templates and
scoring rules: config.toml), each a cold lead enrolled in the cold series, on a SQLite
file. Then ingests events (default 100,000: page views with and without the pricing page,
opens, clicks, downloads, a few demo requests) through the path `POST /events` batches
take, `intake.ingest_many`: stored once, scored with caps, fit, temperature and stage
re-derived, every change recorded, journeys left and entered, handoffs recorded. One
transaction per batch. A smaller sample then goes one by one through `events.ingest`
(the CLI's and the webhooks' path). Last line:

    events/s: N  one-by-one-events/s: M  peak-rss-mb: R

    python benchmarks/events.py [--contacts 10000] [--events 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import load_settings  # noqa: E402
from nurture.engine.build import build_runtime  # noqa: E402
from nurture.engine.runtime import Runtime  # noqa: E402
from nurture.intake.events import IncomingEvent  # noqa: E402
from nurture.intake.ingest import ingest, ingest_many  # noqa: E402
from nurture.providers.memory import MemoryProvider  # noqa: E402
from nurture.services import journeys  # noqa: E402
from nurture.store import database as db  # noqa: E402

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
ROLES = ["Head of Operations", "Directrice des opérations", "Intern", "COO", "Chargée RH"]
PAGES = ["/blog/planning", "/blog/shifts", "/features", "/fonctionnalites", "/pricing",
         "/tarifs", "/customers"]


def make_project(folder: Path, batch: int) -> Path:
    for part in ("journeys", "templates"):
        shutil.copytree(ROOT / part, folder / part)
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    (folder / "config.toml").write_text(text.replace("batch_size = 500", f"batch_size = {batch}"))
    return folder / "config.toml"


def seed(rt: Runtime, count: int) -> None:
    """Cold leads, each in the cold series (waiting), in bulk."""
    rng = random.Random(7)
    contacts, enrollments = [], []
    for i in range(1, count + 1):
        contacts.append({
            "id": i, "email": f"user{i}@example.com", "phone": None, "locale": "fr",
            "timezone": "Europe/Paris", "country": "FR", "stage": "lead", "temperature": "cold",
            "score": 0.0, "fit": 0.0, "role_account": False, "created_at": NOW,
            "updated_at": NOW, "attributes": {
                "first_name": "Camille", "role": rng.choice(ROLES),
                "company_size": rng.choice([5, 40, 120, 800]), "industry": "retail"}})
        enrollments.append({
            "contact_id": i, "journey_id": "cold-education", "journey_version": "bench",
            "purpose": "newsletter", "exclusive": True, "step_id": "pause-1", "seq": 1,
            "state": "active", "next_run_at": NOW + timedelta(days=3), "entered_at": NOW,
            "updated_at": NOW, "end_reason": "", "last_error": ""})
    with rt.db.begin() as conn:
        conn.execute(insert(db.contact), contacts)
        conn.execute(insert(db.enrollment), enrollments)


def make_events(contacts: int, count: int, start: int = 0) -> list[IncomingEvent]:
    rng = random.Random(11 + start)
    found = []
    for i in range(start, start + count):
        cid = rng.randint(1, contacts)
        roll = rng.random()
        props: dict[str, Any]
        if roll < 0.5:
            kind, props = "page.viewed", {"url": rng.choice(PAGES), "seconds": rng.randint(2, 300)}
        elif roll < 0.75:
            kind, props = "email.opened", {}
        elif roll < 0.9:
            kind, props = "email.clicked", {"url": "https://acme.example/guide"}
        elif roll < 0.999:
            kind, props = "content.downloaded", {"content": rng.choice(["guide", "ebook"])}
        else:
            kind, props = "demo.requested", {"form": "demo"}
        found.append(IncomingEvent(kind, "bench", NOW - timedelta(seconds=count - i), cid,
                                   f"evt-{i}", props))
    return found


def counts(rt: Runtime) -> str:
    with rt.db.begin() as conn:
        changes = conn.execute(select(func.count()).select_from(db.contact_change)).scalar_one()
        stages = dict(conn.execute(select(db.contact.c.temperature, func.count())
                                   .group_by(db.contact.c.temperature)).all())
        prospects = conn.execute(select(func.count()).where(
            db.contact.c.stage == "prospect")).scalar_one()
    return f"{changes} changes recorded, temperatures {stages}, {prospects} prospects"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--single", type=int, default=2000, help="events ingested one by one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(make_project(Path(folder), args.batch))
        sink = MemoryProvider()
        rt = build_runtime(settings, providers={"email": sink, "sms": sink})
        journeys.apply_files(rt, journeys.read_files(rt)[0], NOW)  # as `nurture apply`
        seed(rt, args.contacts)
        events = make_events(args.contacts, args.events)
        started = time.perf_counter()
        for first in range(0, len(events), args.batch):
            with rt.db.begin() as conn:
                ingest_many(conn, rt, events[first:first + args.batch], NOW)
        elapsed = time.perf_counter() - started
        rate = len(events) / elapsed
        print(f"batched: {len(events)} events in {elapsed:.2f}s ({args.batch} per "
              f"transaction); {counts(rt)}")
        sample = make_events(args.contacts, args.single, start=args.events)
        started = time.perf_counter()
        for item in sample:
            with rt.db.begin() as conn:
                ingest(conn, rt, item, NOW)
        single = len(sample) / (time.perf_counter() - started)
        print(f"one by one: {len(sample)} events at {single:.0f}/s (a transaction each)")
        rt.db.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events/s: {rate:.0f}  one-by-one-events/s: {single:.0f}  peak-rss-mb: {peak:.0f}")


if __name__ == "__main__":
    main()
