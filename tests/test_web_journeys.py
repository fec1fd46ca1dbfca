"""The operators' API: pause, resume, retry, enroll, unenroll, behind the API key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.web.app import create_app
from tests.fakes import enrollments, messages
from tests.maturity_support import API_KEY, MONDAY, add, build

AUTH = {"Authorization": f"Bearer {API_KEY}"}

HELLO = """
id: hello
name: Hello
purpose: newsletter
entry: { when: "attributes.company_size >= 50" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 2d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
"""


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return build(tmp_path / "project", journeys={"hello": HELLO}, repo_journeys=False)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt, clock=lambda: MONDAY)) as found:
        yield found


def sent(rt: Runtime, cid: int) -> list[str]:
    return [m["step_id"] for m in messages(rt, cid) if m["state"] == "sent"]


def test_every_operation_needs_the_api_key(client: TestClient) -> None:
    for path, body in (("/journeys/hello/pause", None), ("/journeys/hello/resume", None),
                       ("/journeys/retry", {}),
                       ("/contacts/a@example.com/enroll", {"journey": "hello"}),
                       ("/contacts/a@example.com/unenroll", {"journey": "hello"})):
        assert client.post(path, json=body).status_code == 401, path
        assert client.post(path, json=body, headers={"X-API-Key": "nope"}).status_code == 401


def test_pause_and_resume(client: TestClient, rt: Runtime) -> None:
    cid = add(rt, "big@example.com", {"company_size": 120})
    answer = client.post("/journeys/hello/pause", headers=AUTH)
    assert (answer.status_code, answer.json()) == (200, {"journey": "hello", "paused": True,
                                                         "change": "updated"})
    again = client.post("/journeys/hello/pause", headers=AUTH)  # the CLI's twin: same words
    assert (again.status_code, again.json()["change"]) == (200, "unchanged")
    tick(rt, MONDAY)
    assert sent(rt, cid) == [] and enrollments(rt, cid)[0]["step_id"] == "welcome"
    assert client.post("/journeys/hello/resume", headers=AUTH).json()["paused"] is False
    tick(rt, MONDAY + timedelta(minutes=1))
    assert sent(rt, cid) == ["welcome"]
    assert client.post("/journeys/nope/pause", headers=AUTH).status_code == 409


def test_enroll_unenroll_and_retry(client: TestClient, rt: Runtime) -> None:
    cid = add(rt, "small@example.com", {"company_size": 5})
    answer = client.post("/contacts/small@example.com/enroll", headers=AUTH,
                         json={"journey": "hello", "reason": "met at the fair"})
    assert answer.status_code == 201
    assert answer.json()["contact_id"] == cid
    again = client.post(f"/contacts/{cid}/enroll", headers=AUTH, json={"journey": "hello"})
    assert again.status_code == 409 and "already in journey" in again.json()["detail"]
    unknown = client.post("/contacts/who@example.com/enroll", headers=AUTH,
                          json={"journey": "hello"})
    assert unknown.status_code == 404
    assert client.post("/contacts/small@example.com/enroll", headers=AUTH,
                       json={"journey": "nope"}).status_code == 409
    tick(rt, MONDAY)
    assert sent(rt, cid) == ["welcome"]

    assert client.post("/journeys/retry", headers=AUTH, json={"journey": "hello"}).json() == {
        "resumed": 0, "journey": "hello", "step": None}
    assert client.post("/journeys/retry", headers=AUTH, json={"step": "x"}).status_code == 422

    left = client.post("/contacts/small@example.com/unenroll", headers=AUTH,
                       json={"journey": "hello", "reason": "asked us to stop"})
    assert (left.status_code, left.json()["step"]) == (200, "article")
    [row] = enrollments(rt, cid)
    assert (row["state"], row["end_reason"]) == ("exited", "unenrolled: asked us to stop")
    assert client.post("/contacts/small@example.com/unenroll", headers=AUTH,
                       json={"journey": "hello"}).status_code == 409
    tick(rt, MONDAY + timedelta(days=3))
    assert sent(rt, cid) == ["welcome"]
