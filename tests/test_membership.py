"""Membership covers every contact: a journey applied today reaches every contact its entry
matches, a cool-down ends on its own, and a windowed count changes with time alone."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.services import contacts
from nurture.services.journeys import build_plan, read_files
from nurture.store import database as db
from nurture.store import queries as store
from tests.conftest import apply_journeys
from tests.fakes import enrollments, messages

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

BIG_COMPANIES = """
id: big-companies
name: Every lead of a company of 50 or more
purpose: newsletter
entry: { when: "stage == 'lead' and attributes.company_size >= 50" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 30d }
"""


def write(rt: Runtime, name: str, source: str) -> None:
    (rt.settings.journeys_path / f"{name}.yaml").write_text(textwrap.dedent(source))


def seed(rt: Runtime, count: int, now: datetime, size: Any, consent: Any) -> list[int]:
    """`count` contacts; `size(i)` their company size, `consent(i)` whether they gave the
    newsletter consent."""
    ids = []
    with rt.db.begin() as conn:
        for i in range(count):
            cid = contacts.add_contact(conn, rt.settings, now, email=f"c{i}@example.com",
                                       attributes={"company_size": size(i)})
            if consent(i):
                ledger.record_consent(conn, rt.settings, now,
                                      contact=contacts.find_contact(conn, str(cid)),
                                      channel="email", purpose="newsletter", action="granted",
                                      source="test")
            ids.append(cid)
    return ids


def enrolled(rt: Runtime, journey_id: str) -> set[int]:
    t = db.enrollment
    with rt.db.begin() as conn:
        return set(conn.execute(select(t.c.contact_id).where(t.c.journey_id == journey_id))
                   .scalars())


def test_a_journey_applied_today_enrolls_every_contact_its_entry_matches(make_runtime):
    rt = make_runtime("", {})
    ids = seed(rt, 1000, MONDAY, size=lambda i: 120 if i % 5 < 3 else 10,
               consent=lambda i: i % 10 != 0)
    tick(rt, MONDAY)  # every contact evaluated once: nothing flags them any more
    with rt.db.begin() as conn:
        assert store.contacts_to_evaluate(conn, MONDAY + timedelta(days=1), 10) == []
    matching = {cid for i, cid in enumerate(ids) if i % 5 < 3}
    assert len(matching) == 600

    write(rt, "big-companies", BIG_COMPANIES)
    files, problems, _ = read_files(rt)
    with rt.db.reader() as conn:
        plan = build_plan(conn, files, MONDAY + timedelta(hours=1))
    assert problems == [] and plan.journeys[0].newly_entering == 600
    apply_journeys(rt)
    assert enrolled(rt, "big-companies") == set()     # applying changes no contact

    report = tick(rt, MONDAY + timedelta(hours=1))
    assert report.entered == 600
    assert enrolled(rt, "big-companies") == matching
    consented = {cid for i, cid in enumerate(ids) if i % 5 < 3 and i % 10 != 0}
    with rt.db.begin() as conn:   # consent still gates each send
        sent = {r.contact_id: (r.state, r.skip_reason) for r in conn.execute(
            select(db.message.c.contact_id, db.message.c.state, db.message.c.skip_reason))}
    assert {c for c, (state, _) in sent.items() if state == "sent"} == consented
    assert {c for c, s in sent.items() if s == ("skipped", "no_consent")} == (
        matching - consented)
    assert report.sent == len(consented) == 500
    assert tick(rt, MONDAY + timedelta(hours=2)).entered == 0  # a sweep runs once


REENTRY = """
id: daily-tip
name: A tip, at most once a day
purpose: newsletter
entry: { when: "stage == 'lead'" }
reentry: 1d
steps:
  - { id: tip, type: send, channel: email, template: cold/welcome-guide }
"""


def test_a_cool_down_ends_on_its_own_and_the_contact_enters_again(make_runtime):
    rt = make_runtime("", {"daily-tip": REENTRY})
    [cid] = seed(rt, 1, MONDAY, size=lambda i: 10, consent=lambda i: True)
    tick(rt, MONDAY)
    assert [e["state"] for e in enrollments(rt, cid)] == ["completed"]
    tick(rt, MONDAY + timedelta(hours=1))  # evaluated after its exit: too early to enter
    with rt.db.begin() as conn:
        due = conn.execute(select(db.contact.c.evaluate_at)).scalar_one()
    assert due == MONDAY + timedelta(days=1)  # the cool-down's end, nothing else
    tick(rt, MONDAY + timedelta(hours=23))
    assert len(enrollments(rt, cid)) == 1
    tick(rt, MONDAY + timedelta(days=1))  # no event, no change: the cool-down ended
    assert [e["state"] for e in enrollments(rt, cid)] == ["completed", "completed"]
    assert [m["state"] for m in messages(rt, cid)] == ["sent", "sent"]


QUIET = """
id: quiet-week
name: Viewed the site, then a quiet week
purpose: newsletter
entry: { when: "events.page.viewed.count >= 1 and events.page.viewed.count_7d == 0" }
steps:
  - { id: nudge, type: send, channel: email, template: cold/guide-reminder }
"""


def test_a_windowed_count_is_evaluated_again_when_its_oldest_event_leaves_the_window(
        make_runtime):
    rt = make_runtime("", {"quiet-week": QUIET})
    [cid] = seed(rt, 1, MONDAY, size=lambda i: 10, consent=lambda i: True)
    with rt.db.begin() as conn:
        ingest(conn, rt, IncomingEvent("page.viewed", "test", MONDAY, cid,
                                       properties={"url": "/pricing"}), MONDAY)
    tick(rt, MONDAY)
    assert enrollments(rt, cid) == []
    with rt.db.begin() as conn:
        due = conn.execute(select(db.contact.c.evaluate_at)).scalar_one()
    assert MONDAY + timedelta(days=7) < due <= MONDAY + timedelta(days=7, seconds=1)
    tick(rt, MONDAY + timedelta(days=6))
    assert enrollments(rt, cid) == []
    tick(rt, MONDAY + timedelta(days=7, hours=1))  # the view left the 7-day window
    assert [e["journey_id"] for e in enrollments(rt, cid)] == ["quiet-week"]
    assert [m["template"] for m in messages(rt, cid)] == ["cold/guide-reminder"]


def test_a_sweep_enrolls_in_batches_and_resumes_where_it_stopped(make_runtime, monkeypatch):
    from nurture.engine import membership

    monkeypatch.setattr(membership, "SWEEP_BATCH", 7)
    rt = make_runtime("", {})
    seed(rt, 30, MONDAY, size=lambda i: 120, consent=lambda i: True)
    tick(rt, MONDAY)
    write(rt, "big-companies", BIG_COMPANIES)
    apply_journeys(rt)
    stops = iter([False, False, True])
    assert membership.sweep(rt, MONDAY, should_stop=lambda: next(stops)) == 14
    assert len(enrolled(rt, "big-companies")) == 14
    assert membership.sweep(rt, MONDAY) == 16
    with rt.db.begin() as conn:
        assert conn.execute(select(func.count()).select_from(db.enrollment)).scalar_one() == 30
        assert conn.execute(select(db.journey_state.c.sweep_after)).scalar_one() is None
