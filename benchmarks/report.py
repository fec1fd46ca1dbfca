"""How long does `nurture report` take on a large history? Prints figures; asserts nothing.

Seeds N contacts (default 100,000) of the example project on a SQLite file, each in two
journeys, with three messages per contact (sent, delivered, skipped for a reason…),
about one and a half events per message (delivered, opened, clicked, replies) and 5% of
contacts qualified, some of them customers. Then times `build_report` (every figure,
counted in SQL), the same for one journey and since a date, and rendering the HTML page.
Last line:

    report-s: T  journey-report-s: J  since-report-s: S  html-s: H  html-kb: K

    python benchmarks/report.py [--contacts 100000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import load_settings  # noqa: E402
from nurture.engine.build import build_runtime  # noqa: E402
from nurture.engine.runtime import Runtime  # noqa: E402
from nurture.providers.memory import MemoryProvider  # noqa: E402
from nurture.services import report_page  # noqa: E402
from nurture.services.journeys import apply_project  # noqa: E402
from nurture.services.report import Scope, build_report  # noqa: E402
from nurture.store import database as db  # noqa: E402

START = datetime(2026, 9, 7, 9, 0, tzinfo=UTC)
STEPS = {"cold-education": ["welcome", "article", "reminder"],
         "warm-consideration": ["comparison", "webinar", "webinar"]}
REASONS = ["no_consent", "frequency_cap", "suppressed", "role_account"]


def _messages(rng: random.Random, cid: int, enrollment: int, journey: str,
              at: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages, events = [], []
    for seq, step in enumerate(STEPS[journey][:2 if journey.startswith("warm") else 3]):
        mid = enrollment * 10 + seq
        skipped = rng.random() < 0.15
        state = "skipped" if skipped else rng.choice(["sent", "delivered", "delivered"])
        messages.append({
            "id": mid, "public_id": f"m{mid}", "contact_id": cid, "enrollment_id": enrollment,
            "seq": seq, "journey_id": journey, "step_id": step, "kind": "journey",
            "channel": "email", "purpose": "newsletter", "template": f"t/{step}",
            "state": state, "skip_reason": rng.choice(REASONS) if skipped else None,
            "created_at": at, "updated_at": at, "sent_at": None if skipped else at})
        if skipped:
            continue
        for kind, p in (("email.delivered", 0.8), ("email.opened", 0.45),
                        ("email.clicked", 0.12), ("reply.received", 0.02)):
            if rng.random() < p:
                events.append({"contact_id": cid, "type": kind, "source": "bench",
                               "source_event_id": f"{kind}-{mid}", "occurred_at": at,
                               "received_at": at, "message_id": mid,
                               "properties": {"intent": "positive"} if kind[0] == "r" else {},
                               "raw": {}})
    return messages, events


def seed(rt: Runtime, count: int) -> int:
    rng = random.Random(7)
    contacts, enrollments, messages, events, changes = [], [], [], [], []
    for cid in range(1, count + 1):
        at = START + timedelta(minutes=rng.randrange(60 * 24 * 90))
        contacts.append({"id": cid, "email": f"user{cid}@example.com", "stage": "lead",
                         "temperature": rng.choice(["cold", "cold", "warm", "hot"]),
                         "created_at": at, "updated_at": at, "attributes": {}})
        for j, journey in enumerate(STEPS):
            eid = cid * 2 + j
            goal = rng.random() < 0.05
            enrollments.append({
                "id": eid, "contact_id": cid, "journey_id": journey, "journey_version": "b",
                "purpose": "newsletter", "step_id": STEPS[journey][-1], "seq": 3,
                "state": "exited" if goal else "completed", "entered_at": at,
                "updated_at": at, "ended_at": at, "end_reason": "goal reached" if goal
                else "completed"})
            found = _messages(rng, cid, eid, journey, at)
            messages += found[0]
            events += found[1]
        if rng.random() < 0.05:
            later = at + timedelta(hours=rng.randrange(1, 24 * 30))
            changes.append({"contact_id": cid, "field": "stage", "old": "lead",
                            "new": "prospect", "at": later})
            if rng.random() < 0.3:
                changes.append({"contact_id": cid, "field": "stage", "old": "prospect",
                                "new": "customer", "at": later + timedelta(days=9)})
    with rt.db.begin() as conn:
        for table, rows in ((db.contact, contacts), (db.enrollment, enrollments),
                            (db.message, messages), (db.event_t, events),
                            (db.contact_change, changes)):
            for i in range(0, len(rows), 20_000):
                conn.execute(insert(table), rows[i:i + 20_000])
    return len(messages) + len(events)


def timed(rt: Runtime, scope: Scope) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    with rt.db.reader() as conn:
        data = build_report(conn, rt.journeys, START + timedelta(days=120), scope)
    return time.perf_counter() - began, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for part in ("journeys", "templates"):
            shutil.copytree(ROOT / part, folder / part)
        shutil.copy(ROOT / "config.toml", folder / "config.toml")
        settings = load_settings(folder / "config.toml", env={"NURTURE_SECRET_KEY": "bench"})
        sink = MemoryProvider()
        rt = build_runtime(settings, providers={"email": sink, "sms": sink})
        apply_project(rt, folder / "config.toml", START)
        began = time.perf_counter()
        rows = seed(rt, args.contacts)
        print(f"seeded {args.contacts:,} contacts, {rows:,} messages and events "
              f"in {time.perf_counter() - began:.1f} s")
        whole, data = timed(rt, Scope())
        journey, _ = timed(rt, Scope(journey="cold-education"))
        since, _ = timed(rt, Scope(since=START + timedelta(days=60)))
        began = time.perf_counter()
        page = report_page.render(data)
        html = time.perf_counter() - began
        rt.db.dispose()
    print(f"report-s: {whole:.2f}  journey-report-s: {journey:.2f}  since-report-s: "
          f"{since:.2f}  html-s: {html:.3f}  html-kb: {len(page.encode()) // 1024}")


if __name__ == "__main__":
    main()
