"""`POST /events` and `POST /contacts/{email}/stage` through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nurture.engine.runtime import Runtime
from nurture.store import database as db
from nurture.web.app import create_app
from tests.maturity_support import API_KEY, FITTING, MONDAY, add, build, journeys_of, state

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = build(tmp_path / "project")
    add(runtime, "camille@example.com", FITTING)
    add(runtime, "james@example.com", {"role": "Student"})
    return runtime


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt, clock=lambda: MONDAY)) as found:
        yield found


def count_events(rt: Runtime) -> int:
    with rt.db.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(db.event_t)).scalar_one())


def view(email: str = "camille@example.com", **extra: Any) -> dict[str, Any]:
    return {"type": "page.viewed", "email": email,
            "properties": {"url": "/pricing", "seconds": 45}, **extra}


def test_the_api_key_is_required(client: TestClient, rt: Runtime) -> None:
    assert client.post("/events", json=view()).status_code == 401
    wrong = {"X-API-Key": "nope"}
    assert client.post("/events", json=view(), headers=wrong).status_code == 401
    assert client.post("/contacts/camille@example.com/stage", json={"stage": "customer"}
                       ).status_code == 401
    assert count_events(rt) == 0


def test_one_event_scores_the_contact(client: TestClient, rt: Runtime) -> None:
    at = (MONDAY - timedelta(minutes=3)).isoformat()
    response = client.post("/events", headers=AUTH, json=view(
        "Camille@Example.com", id="evt-1", occurred_at=at))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": [],
                               "results": [{"index": 0, "event_id": 1, "status": "recorded"}]}
    data = state(rt, 1)
    assert data["contact"]["score"] == 28
    assert data["events"][0]["occurred_at"] == MONDAY - timedelta(minutes=3)
    assert data["events"][0]["source"] == "api"
    replay = client.post("/events", headers=AUTH, json=view(id="evt-1"))
    assert replay.json()["results"] == [{"index": 0, "event_id": None, "status": "duplicate"}]
    assert state(rt, 1)["contact"]["score"] == 28


def test_a_batch_keeps_its_valid_items_and_explains_the_others(
        client: TestClient, rt: Runtime) -> None:
    batch = [
        view(id="a"),
        {"type": "page.viewed", "email": "camille@example.com", "colour": "blue"},
        {"type": "page.exploded", "email": "camille@example.com"},
        view(occurred_at="2026-03-02T08:00:00"),
        view("nobody@example.com"),
        {"type": "content.downloaded", "contact_id": 2, "properties": {"content": "ebook"}},
        "not an object",
        {"type": "demo.requested", "email": "camille@example.com", "id": "demo-1"},
        view(occurred_at=(MONDAY + timedelta(hours=2)).isoformat()),
        {"type": "page.viewed"},
        view(id="a"),
        {"type": "page.viewed", "email": "james@example.com", "contact_id": 1},
    ]
    response = client.post("/events", headers=AUTH, json=batch)
    assert response.status_code == 207
    body = response.json()
    errors = {e["index"]: e["error"] for e in body["errors"]}
    assert sorted(errors) == [1, 2, 3, 4, 6, 8, 9, 11]
    assert "colour" in errors[1] and "Extra inputs" in errors[1]
    assert "unknown event type 'page.exploded'" in errors[2]
    assert "time zone" in errors[3]
    assert errors[4].startswith("no contact 'nobody@example.com'")
    assert "future" in errors[8]
    assert errors[9] == "email or contact_id is required"
    assert "not the same contact" in errors[11]
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, "recorded"), (5, "recorded"), (7, "recorded"), (10, "duplicate")]
    assert (body["accepted"], body["duplicates"]) == (3, 1)
    assert count_events(rt) == 3
    camille = state(rt, 1)
    assert camille["contact"]["stage"] == "prospect"
    assert "prospect-sales" in journeys_of(camille)
    assert state(rt, 2)["contact"]["score"] == 15


def test_limits_and_shapes(client: TestClient, rt: Runtime) -> None:
    too_many = client.post("/events", headers=AUTH, json=[view()] * 1001)
    assert too_many.status_code == 413 and "at most 1000" in too_many.json()["detail"]
    assert client.post("/events", headers=AUTH, json="page.viewed").status_code == 422
    bad = client.post("/events", headers={**AUTH, "Content-Type": "application/json"},
                      content=b"{not json")
    assert bad.status_code == 422
    unknown = client.post("/events", headers=AUTH, json=view("nobody@example.com"))
    assert unknown.status_code == 404
    assert unknown.json()["detail"]["errors"][0]["index"] == 0
    invalid = client.post("/events", headers=AUTH, json={"type": "page.viewed"})
    assert invalid.status_code == 422
    assert client.post("/events", headers=AUTH, json=[]).json()["accepted"] == 0
    assert count_events(rt) == 0


def test_sales_move_stages_over_the_api(client: TestClient, rt: Runtime) -> None:
    client.post("/events", headers=AUTH, json={"type": "demo.requested",
                                                "email": "camille@example.com"})
    accepted = client.post("/contacts/camille@example.com/stage", headers=AUTH,
                           json={"stage": "sales_accepted", "reason": "call on Tuesday"})
    assert accepted.status_code == 200
    assert accepted.json() == {"contact_id": 1, "email": "camille@example.com",
                               "stage": "sales_accepted", "previous": "prospect",
                               "changed": True, "reason": "call on Tuesday"}
    again = client.post("/contacts/camille@example.com/stage", headers=AUTH,
                        json={"stage": "sales_accepted"})
    assert again.json()["changed"] is False
    assert client.post("/contacts/camille@example.com/stage", headers=AUTH,
                       json={"stage": "recycled"}).status_code == 422
    assert client.post("/contacts/camille@example.com/stage", headers=AUTH,
                       json={"stage": "promoted"}).status_code == 422
    assert client.post("/contacts/nobody@example.com/stage", headers=AUTH,
                       json={"stage": "customer"}).status_code == 404
    won = client.post("/contacts/camille@example.com/stage", headers=AUTH,
                      json={"stage": "customer", "reason": "signed"})
    assert won.json()["stage"] == "customer"
    data = state(rt, 1)
    assert [(c["old"], c["new"], c["rule"], c["reason"]) for c in data["changes"]
            if c["field"] == "stage"] == [
        ("lead", "prospect", "strong_signal",
         "demo.requested is a strong signal (fit not required)"),
        ("prospect", "sales_accepted", "sales", "call on Tuesday"),
        ("sales_accepted", "customer", "sales", "signed")]
    assert journeys_of(data)["prospect-sales"] == "exited"
