"""Maturity through the real engine: events on a SQLite file, ticks, journeys, handoffs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from nurture.engine import membership
from nurture.engine.membership import enroll
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import handoffs, maturity
from nurture.intake import jobs as maturity_jobs
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest, ingest_many
from nurture.services import contacts
from nurture.store import database as db
from nurture.store import queries as store
from tests.maturity_support import (
    FITTING,
    MONDAY,
    Recorder,
    add,
    build,
    crm_server,
    event,
    journeys_of,
    state,
)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return build(tmp_path / "project")


@pytest.fixture
def crm() -> Iterator[tuple[str, type[Recorder]]]:
    with crm_server(500) as found:
        yield found


def test_a_lead_matures_from_cold_to_prospect_through_events_only(
        tmp_path: Path, crm: tuple[str, type[Recorder]]) -> None:
    url, server = crm
    rt = build(tmp_path / "p", handoff=f'webhook_url = "{url}"')
    client = httpx.Client(timeout=5, trust_env=False)
    with freeze_time(MONDAY) as clock:
        def now() -> datetime:
            return datetime.now(UTC)

        def later(**delta: float) -> datetime:
            clock.tick(timedelta(**delta))
            return now()

        cid = add(rt, "camille@example.com", FITTING)
        tick(rt, now())
        assert journeys_of(state(rt, cid)) == {"cold-education": "active"}

        event(rt, cid, "content.downloaded", later(days=1), content="guide")
        event(rt, cid, "page.viewed", later(days=1), url="/blog/shifts", seconds=40)
        assert state(rt, cid)["contact"]["temperature"] == "cold"
        event(rt, cid, "content.downloaded", later(days=1), content="checklist")
        tick(rt, now())
        data = state(rt, cid)
        assert data["contact"]["temperature"] == "warm"  # 33 points, decayed for 2 days
        assert data["contact"]["score"] == pytest.approx(33 * 0.5 ** (2 / 14), abs=0.01)
        assert journeys_of(data)["cold-education"] == "exited"
        assert journeys_of(data)["warm-consideration"] in ("active", "waiting")

        # two quiet weeks: points halve, the lead cools down, and the history says why
        for _ in range(14):
            tick(rt, later(days=1))
        data = state(rt, cid)
        assert data["contact"]["temperature"] == "cold"
        assert data["contact"]["score"] == pytest.approx(33 * 0.5 ** (16 / 14), abs=0.01)
        decays = [c for c in data["changes"] if c["rule"] == "decay"]
        assert len(decays) >= 13 and all(c["delta"] < 0 for c in decays)
        cooled = [c for c in data["changes"] if c["field"] == "temperature"][-1]
        assert (cooled["old"], cooled["new"], cooled["event_id"]) == ("warm", "cold", None)

        # back, and close to a decision: pricing twice, a download, then a trial
        event(rt, cid, "page.viewed", later(hours=2), url="/pricing", seconds=45)
        assert state(rt, cid)["contact"]["temperature"] == "warm"
        event(rt, cid, "content.downloaded", later(hours=2), content="pricing-sheet")
        event(rt, cid, "page.viewed", later(hours=2), url="/fr/tarifs", seconds=90)
        tick(rt, now())
        data = state(rt, cid)
        assert (data["contact"]["temperature"], data["contact"]["stage"]) == ("hot", "lead")
        assert journeys_of(data)["hot-conversion"] in ("active", "waiting")

        trial_id = event(rt, cid, "trial.started", later(hours=3), plan="pro")
        data = state(rt, cid)
        assert data["contact"]["stage"] == "prospect"
        stage = [c for c in data["changes"] if c["field"] == "stage"][-1]
        assert (stage["rule"], stage["event_id"]) == ("qualification", trial_id)
        assert "fit 60 ≥ fit_threshold 50" in stage["reason"]
        assert journeys_of(data)["hot-conversion"] == "exited"
        assert "prospect-sales" in journeys_of(data)

        # the handoff: refused once (500), retried with backoff, delivered
        qualified_at = now()
        assert handoffs.deliver_due(rt, now(), client) == 0
        assert len(server.received) == 1
        assert handoffs.deliver_due(rt, later(seconds=15), client) == 1
        tick(rt, later(minutes=5))  # the journey's own `handoff` step fires
        tick(rt, later(minutes=1))  # ... and is skipped as a duplicate
    assert len(server.received) == 2
    headers, body = server.received[-1]
    assert server.received[0][1] == body  # the retry posts the same payload
    payload = json.loads(body)
    assert payload["contact"]["email"] == "camille@example.com"
    assert payload["contact"]["attributes"]["role"] == "Head of Operations"
    assert payload["score"] >= 100 and payload["fit"] == 60 and payload["stage"] == "prospect"
    assert payload["rule"] == "qualification"
    assert payload["qualified_at"] == qualified_at.isoformat()
    kinds = [e["type"] for e in payload["events"]]
    assert kinds[0] == "trial.started" and "page.viewed" in kinds
    assert headers["Idempotency-Key"] == f"nurture-handoff-{payload['handoff_id']}"
    assert headers["X-Nurture-Signature"] == handoffs.signature(rt.settings.secret_key, body)
    with rt.db.begin() as conn:
        rows = conn.execute(select(db.handoff).order_by(db.handoff.c.id)).mappings().all()
    assert [(r["state"], r["attempts"]) for r in rows] == [("delivered", 2), ("skipped", 0)]
    assert rows[0]["last_error"] == "" and rows[1]["last_error"] == "duplicate of handoff 1"


def test_a_demo_request_qualifies_at_once_and_fit_gates_engagement(rt: Runtime) -> None:
    fitting = add(rt, "head@fit.example", FITTING)
    misfit = add(rt, "student@misfit.example", {"role": "Student", "company_size": 2})
    demo_id = event(rt, fitting, "demo.requested", MONDAY, form="demo")
    data = state(rt, fitting)
    assert data["contact"]["stage"] == "prospect"
    stage = [c for c in data["changes"] if c["field"] == "stage"][0]
    assert (stage["rule"], stage["event_id"]) == ("strong_signal", demo_id)
    assert "prospect-sales" in journeys_of(data)
    with rt.db.begin() as conn:
        handed = conn.execute(select(db.handoff.c.contact_id, db.handoff.c.payload)).all()
    assert [cid for cid, _ in handed] == [fitting]
    assert handed[0][1]["reason"] == "demo.requested is a strong signal (fit not required)"

    at = MONDAY
    for day in range(6):  # an avid reader who will never buy
        at = MONDAY + timedelta(days=day, hours=1)
        event(rt, misfit, "page.viewed", at, url="/pricing", seconds=300)
        event(rt, misfit, "content.downloaded", at, content=f"ebook-{day}")
        event(rt, misfit, "trial.started", at)
    data = state(rt, misfit)["contact"]
    assert data["score"] > 300 and data["fit"] == 0
    assert (data["stage"], data["temperature"]) == ("lead", "hot")


def test_resending_the_same_source_event_id_changes_nothing(rt: Runtime) -> None:
    cid = add(rt, "a@example.com", FITTING)
    first = event(rt, cid, "page.viewed", MONDAY, "evt-1", url="/pricing", seconds=60)
    before = state(rt, cid)
    later = MONDAY + timedelta(hours=1)
    assert event(rt, cid, "page.viewed", later, "evt-1", url="/pricing", seconds=60) is None
    with rt.db.begin() as conn:
        again = ingest_many(conn, rt, [IncomingEvent("page.viewed", "test", later, cid, "evt-1",
                                                     {"url": "/pricing", "seconds": 60})] * 3,
                            later)
    assert first is not None and again == [None, None, None]
    after = state(rt, cid)
    assert after["contact"]["score"] == before["contact"]["score"] == 28
    assert after["changes"] == before["changes"] and after["events"] == before["events"]


def test_caps_limit_points_per_window_from_the_database(rt: Runtime) -> None:
    cid = add(rt, "a@example.com")
    for minute in range(10):
        event(rt, cid, "email.opened", MONDAY + timedelta(minutes=minute))
    assert state(rt, cid)["contact"]["score"] == 6  # 3 opens a day count
    event(rt, cid, "email.opened", MONDAY + timedelta(days=1, minutes=3))  # a rolling day
    data = state(rt, cid)
    assert data["contact"]["score"] == 8
    assert [c["reason"] for c in data["changes"] if c["rule"] == "open"][-1] == (
        "email.opened; hit 1 of 3 per 1d")


def test_decay_runs_on_schedule_and_demotes_only_when_configured(tmp_path: Path) -> None:
    rt = build(tmp_path / "a", repo_journeys=False)
    strict = build(tmp_path / "b", scoring="demote_prospects_below = 40", repo_journeys=False)
    for runtime in (rt, strict):
        cid = add(runtime, "a@example.com", FITTING)
        event(runtime, cid, "trial.started", MONDAY)
        event(runtime, cid, "trial.started", MONDAY)
        event(runtime, cid, "content.downloaded", MONDAY)
        event(runtime, cid, "page.viewed", MONDAY, url="/pricing", seconds=40)
        assert state(runtime, cid)["contact"]["stage"] == "prospect"
    with rt.db.begin() as conn:
        due = conn.execute(select(db.contact.c.decay_at)).scalar_one()
    assert due == MONDAY + timedelta(days=1)
    assert maturity_jobs.decay_due(rt, MONDAY + timedelta(hours=23)) == 0
    assert maturity_jobs.decay_due(rt, MONDAY + timedelta(days=28)) == 1  # catches up at once
    data = state(rt, 1)["contact"]
    assert data["score"] == pytest.approx(123 / 4, abs=0.01)
    assert (data["temperature"], data["stage"]) == ("warm", "prospect")  # not demoted
    with rt.db.begin() as conn:
        assert conn.execute(select(db.contact.c.decay_at)).scalar_one() == (
            MONDAY + timedelta(days=29))
    maturity_jobs.decay_due(rt, MONDAY + timedelta(days=400))
    with rt.db.begin() as conn:
        settled = conn.execute(select(db.contact.c.score, db.contact.c.decay_at)).one()
    assert tuple(settled) == (0, None)  # nothing left to decay: off the schedule


def test_prospects_sales_do_not_accept_are_recycled(rt: Runtime) -> None:
    waiting = add(rt, "waiting@example.com", FITTING)
    accepted = add(rt, "accepted@example.com", FITTING)
    for cid in (waiting, accepted):
        event(rt, cid, "demo.requested", MONDAY)
    with rt.db.begin() as conn:
        change = maturity.set_stage(conn, rt, accepted, "sales_accepted", "call booked",
                                    MONDAY + timedelta(days=1))
        assert change is not None and (change.old, change.new) == ("prospect", "sales_accepted")
        assert maturity.set_stage(conn, rt, accepted, "sales_accepted", "", MONDAY) is None
    assert maturity_jobs.recycle_unaccepted(rt, MONDAY + timedelta(days=13)) == 0
    assert maturity_jobs.recycle_unaccepted(rt, MONDAY + timedelta(days=14, hours=1)) == 1
    data = state(rt, waiting)
    assert data["contact"]["stage"] == "recycled"
    last = data["changes"][-1]
    assert (last["rule"], last["reason"]) == ("accept_within", "not accepted by sales within 14d")
    assert journeys_of(data)["prospect-sales"] == "exited"
    assert state(rt, accepted)["contact"]["stage"] == "sales_accepted"
    # a recycled lead qualifies again on new evidence only
    event(rt, waiting, "demo.requested", MONDAY + timedelta(days=20))
    assert state(rt, waiting)["contact"]["stage"] == "prospect"


def test_set_score_steps_re_derive_temperature(tmp_path: Path) -> None:
    rt = build(tmp_path / "p", repo_journeys=False, journeys={"bonus": """
        id: bonus
        name: Bonus
        purpose: newsletter
        entry: { when: "stage == 'lead'" }
        steps:
          - { id: boost, type: set, score: 70, reason: webinar attended }
          - { id: wait, type: wait, duration: 1d }
    """})
    cid = add(rt, "a@example.com", FITTING)
    tick(rt, MONDAY)
    data = state(rt, cid)
    assert (data["contact"]["score"], data["contact"]["temperature"]) == (70, "hot")
    assert [(c["field"], c["rule"]) for c in data["changes"]] == [  # fit: at `contact add`
        ("fit", "decision-maker,size"), ("score", "journey"), ("temperature", "bands")]
    with rt.db.begin() as conn:
        assert conn.execute(select(db.contact.c.decay_at)).scalar_one() == MONDAY + timedelta(1)


SCRIPT = [  # per contact, in order
    ("content.downloaded", {}),  # resumes the cold series waiting for a download
    ("page.viewed", {"url": "/pricing", "seconds": 50}),
    ("email.opened", {}), ("email.opened", {}), ("email.opened", {}),
    ("email.opened", {}),  # over the cap
    ("page.viewed", {"url": "/blog", "seconds": 3}),  # no points
    ("reply.received", {"channel": "email", "text": "Oui, très intéressé"}),  # pauses
    ("trial.started", {}),
    ("demo.requested", {}),
]


def outcome(rt: Runtime, cid: int, before: int) -> dict[str, object]:
    """Everything ingest may change for a contact; of its enrollments, those that existed
    `before` ingest (id ≤ before), and the live ones."""
    data = state(rt, cid)
    live = {"active", "waiting", "paused"}
    with rt.db.begin() as conn:
        handed = conn.execute(select(db.handoff.c.reason, db.handoff.c.payload)
                              .where(db.handoff.c.contact_id == cid)).all()
    return {
        "contact": {k: data["contact"][k] for k in ("score", "fit", "stage", "temperature",
                                                    "decay_at", "evaluate_at")},
        "changes": [(c["field"], c["old"], c["new"], c["delta"], c["rule"], c["event_id"],
                     c["reason"]) for c in data["changes"]],
        "events": [(e["id"], e["type"], e["source_event_id"], e["properties"])
                   for e in data["events"]],
        "earlier": [(e["journey_id"], e["state"], e["step_id"], e["end_reason"])
                    for e in data["enrollments"] if e["id"] <= before],
        # one by one, a contact may enter a journey at one event and leave it at the next,
        # before any step ran; in a batch it goes straight to where it ends up
        "live": sorted((e["journey_id"], e["state"]) for e in data["enrollments"]
                       if e["state"] in live),
        "consent": [(r["channel"], r["purpose"], r["action"]) for r in data["consent"]],
        "handoffs": [tuple(row) for row in handed],
    }


def test_batched_ingest_has_the_effects_of_one_by_one_ingest(tmp_path: Path) -> None:
    one, many = build(tmp_path / "one"), build(tmp_path / "many")
    at = MONDAY + timedelta(days=3, hours=1)  # the cold series waits for a download
    for runtime in (one, many):
        for index in range(3):
            add(runtime, f"c{index}@example.com", FITTING if index else {})
        tick(runtime, MONDAY)
        tick(runtime, at)
    with one.db.begin() as conn:
        before = conn.execute(select(func.max(db.enrollment.c.id))).scalar_one()
        assert {r["wait_event"] for r in store.live_enrollments(conn, [1, 2, 3], ["waiting"])
                } == {"content.downloaded"}
    batch = [IncomingEvent(kind, "test", at, cid, f"{cid}-{i}", props)
             for i, (kind, props) in enumerate(SCRIPT) for cid in (1, 2, 3)]
    batch[4:4] = [batch[1], IncomingEvent("page.viewed", "test", at, None, "anonymous")]
    for item in batch:
        with one.db.begin() as conn:
            ingest(conn, one, item, at)
    with many.db.begin() as conn:
        ids = ingest_many(conn, many, batch, at)
    assert ids[4] is None and None not in ids[:4] + ids[5:]  # a replay inside the batch
    for cid in (1, 2, 3):
        assert outcome(one, cid, before) == outcome(many, cid, before)
    for runtime in (one, many):  # the engine's own decisions agree: nothing left to do
        with runtime.db.begin() as conn:
            assert enroll(conn, runtime, [1, 2, 3], at) == 0
            assert [membership.apply_exits(conn, runtime, cid, at) for cid in (1, 2, 3)] == [0] * 3
            assert store.contacts_to_evaluate(conn, at, 10) == [1, 2, 3]
    data = state(many, 1)
    assert data["contact"]["stage"] == "prospect" and data["contact"]["fit"] == 0
    assert journeys_of(data)["cold-education"] == "exited"
    with many.db.begin() as conn:
        assert conn.execute(select(func.count()).select_from(db.handoff)).scalar_one() == 3


@pytest.mark.postgres
def test_the_same_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    with crm_server(502) as (hook, crm):
        rt = build(tmp_path / "pg", database_url=pg_url, handoff=f'webhook_url = "{hook}"')
        cids = [add(rt, f"c{i}@example.com", FITTING) for i in range(3)]
        batch = [IncomingEvent("page.viewed", "test", MONDAY, cid, f"v-{cid}",
                               {"url": "/pricing", "seconds": 40}) for cid in cids]
        with rt.db.begin() as conn:
            assert None not in ingest_many(conn, rt, batch, MONDAY)
            assert ingest_many(conn, rt, batch, MONDAY) == [None, None, None]
        event(rt, cids[0], "demo.requested", MONDAY)
        with httpx.Client(timeout=5, trust_env=False) as client:
            handoffs.deliver_due(rt, MONDAY, client)
            handoffs.deliver_due(rt, MONDAY + timedelta(minutes=1), client)
        assert maturity_jobs.decay_due(rt, MONDAY + timedelta(days=14)) == 3
        assert maturity_jobs.recycle_unaccepted(rt, MONDAY + timedelta(days=15)) == 1
    assert len(crm.received) == 2
    assert state(rt, cids[1])["contact"]["score"] == pytest.approx(14, abs=0.01)  # a half-life
    assert state(rt, cids[0])["contact"]["stage"] == "recycled"
    rt.db.dispose()


def test_recycled_leads_get_the_series_of_their_temperature_again(rt: Runtime) -> None:
    cid = add(rt, "a@example.com", FITTING)
    event(rt, cid, "demo.requested", MONDAY)
    back = MONDAY + timedelta(days=14, hours=1)
    assert maturity_jobs.recycle_unaccepted(rt, back) == 1
    tick(rt, back)
    data = state(rt, cid)
    assert (data["contact"]["stage"], data["contact"]["temperature"]) == ("recycled", "cold")
    assert journeys_of(data)["prospect-sales"] == "exited"
    assert journeys_of(data)["cold-education"] in ("active", "waiting")
    event(rt, cid, "page.viewed", back + timedelta(hours=1), url="/pricing", seconds=40)
    data = state(rt, cid)
    assert (data["contact"]["stage"], data["contact"]["temperature"]) == ("recycled", "warm")
    assert journeys_of(data)["cold-education"] == "exited"
    assert journeys_of(data)["warm-consideration"] == "active"


def test_contact_add_derives_the_fit_again_when_the_profile_changes(rt: Runtime) -> None:
    cid = add(rt, "a@example.com", {"role": "Intern"})
    for day in range(4):
        event(rt, cid, "trial.started", MONDAY + timedelta(days=day))
    assert (state(rt, cid)["contact"]["stage"], state(rt, cid)["contact"]["fit"]) == ("lead", 0)
    later = MONDAY + timedelta(days=5)
    for _ in range(2):  # the second time, nothing changes
        with rt.db.begin() as conn:
            contacts.add_contact(conn, rt.settings, later, email="a@example.com",
                                 attributes={"role": "Head of Operations", "company_size": 120})
    data = state(rt, cid)
    changes = [(c["field"], c["old"], c["new"], c["rule"], c["reason"]) for c in data["changes"]
               if c["at"] == later]
    assert changes == [
        ("fit", "0", "60", "decision-maker,size", "decision-maker +30, size +30"),
        ("stage", "lead", "prospect", "qualification",
         "score 160 ≥ qualify_at 100 and fit 60 ≥ fit_threshold 50")]
    with rt.db.begin() as conn:
        handed = conn.execute(select(db.handoff.c.payload)).scalars().all()
    assert [p["rule"] for p in handed] == ["qualification"]
    assert data["contact"]["evaluate_at"] == later


def test_set_steps_add_their_points_to_the_score_as_it_is_now(rt: Runtime) -> None:
    cid = add(rt, "a@example.com", FITTING)
    with rt.db.begin() as conn:  # what a tick's batch read before running the steps
        assert store.load_contacts(conn, [cid])[cid].score == 0
    event(rt, cid, "content.downloaded", MONDAY)  # 15 points meanwhile
    later = MONDAY + timedelta(minutes=1)
    with rt.db.begin() as conn:
        maturity.apply_set_steps(conn, rt, cid, [("plan", None, "pro", "chose a plan")],
                                 [(70, "webinar attended")], later)
    data = state(rt, cid)
    assert (data["contact"]["score"], data["contact"]["temperature"]) == (85, "hot")
    assert data["contact"]["attributes"]["plan"] == "pro"
    assert [(c["field"], c["old"], c["new"], c["rule"], c["reason"]) for c in data["changes"]
            if c["at"] == later] == [
        ("attributes.plan", "", "pro", "journey", "chose a plan"),
        ("score", "15", "85", "journey", "webinar attended"),
        ("temperature", "cold", "hot", "bands", "score 85 ≥ hot_at 60")]
    # leaves the cold series now; the hot one is entered on the next tick (evaluate_at)
    assert journeys_of(data) == {"cold-education": "exited"}
    assert data["contact"]["evaluate_at"] == later


@pytest.mark.postgres
def test_set_steps_and_events_on_one_contact_wait_for_each_other(tmp_path: Path,
                                                                  pg_url: str) -> None:
    rt = build(tmp_path / "pg", database_url=pg_url, repo_journeys=False)
    cid = add(rt, "a@example.com", FITTING)
    thread = threading.Thread(target=event, args=(rt, cid, "content.downloaded", MONDAY))
    with rt.db.begin() as conn:
        maturity.apply_set_steps(conn, rt, cid, [], [(70, "webinar attended")], MONDAY)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # the event waits for the contact's row
    thread.join(10)
    assert state(rt, cid)["contact"]["score"] == 85
    rt.db.dispose()


def test_an_event_moves_evaluate_at_to_now_only_when_it_is_not_due_already(
        rt: Runtime) -> None:
    """An already-due evaluation keeps its (earlier) time: rewriting the indexed column
    to the same effect is work for nothing; a future or empty one becomes now."""
    due, later, empty = (add(rt, f"{name}@example.com") for name in ("due", "later", "empty"))
    earlier = MONDAY - timedelta(hours=2)
    with rt.db.begin() as conn:
        store.update_contact(conn, due, {"evaluate_at": earlier})
        store.update_contact(conn, later, {"evaluate_at": MONDAY + timedelta(days=3)})
        store.update_contact(conn, empty, {"evaluate_at": None})
    at = MONDAY + timedelta(minutes=5)
    for cid in (due, later, empty):
        event(rt, cid, "page.viewed", at, url="/pricing")
    with rt.db.begin() as conn:
        found = dict(conn.execute(select(db.contact.c.id, db.contact.c.evaluate_at)).all())
    assert found[due] == earlier
    assert found[later] == at and found[empty] == at
