"""Maturity through the real engine: events on a SQLite file, ticks, journeys, handoffs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from nurture import db, handoffs, maturity, maturity_jobs, store
from nurture.engine import Runtime, tick
from nurture.events import IncomingEvent, ingest
from nurture.intake import ingest_many
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
    assert [(c["field"], c["rule"]) for c in data["changes"]] == [
        ("score", "journey"), ("fit", "decision-maker,size"), ("temperature", "bands")]
    with rt.db.begin() as conn:
        assert conn.execute(select(db.contact.c.decay_at)).scalar_one() == MONDAY + timedelta(1)


def test_batched_ingest_has_the_effects_of_one_by_one_ingest(tmp_path: Path) -> None:
    one, many = build(tmp_path / "one"), build(tmp_path / "many")
    script = [("content.downloaded", {}), ("page.viewed", {"url": "/pricing", "seconds": 50}),
              ("email.opened", {}), ("email.opened", {}), ("email.opened", {}),
              ("email.opened", {}), ("trial.started", {}), ("demo.requested", {})]
    for runtime in (one, many):
        for index in range(3):
            add(runtime, f"c{index}@example.com", FITTING if index else {})
        tick(runtime, MONDAY)
    batch = [IncomingEvent(kind, "test", MONDAY, cid, f"{cid}-{i}", props)
             for i, (kind, props) in enumerate(script) for cid in (1, 2, 3)]
    for item in batch:
        with one.db.begin() as conn:
            ingest(conn, one, item, MONDAY)
    with many.db.begin() as conn:
        ingest_many(conn, many, batch, MONDAY)
    for cid in (1, 2, 3):
        a, b = state(one, cid), state(many, cid)
        keys = ("score", "fit", "stage", "temperature", "decay_at")
        assert {k: a["contact"][k] for k in keys} == {k: b["contact"][k] for k in keys}
        assert ([(c["field"], c["new"], c["rule"]) for c in a["changes"]]
                == [(c["field"], c["new"], c["rule"]) for c in b["changes"]])
        # one by one, a contact may enter a journey at one event and leave it at the next,
        # before any step ran; in a batch it goes straight to where it ends up
        live = {"active", "waiting", "paused"}
        assert ({j for j, s in journeys_of(a).items() if s in live}
                == {j for j, s in journeys_of(b).items() if s in live})
    with many.db.begin() as conn:
        assert conn.execute(select(func.count()).select_from(db.handoff)).scalar_one() == 3
        assert store.contacts_to_evaluate(conn, MONDAY, 10) == [1, 2, 3]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (skipped without a server)."""
    server = os.environ.get("NURTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"nurture_maturity_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not answering at {server}: {e.orig}")
    yield f"{server}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
