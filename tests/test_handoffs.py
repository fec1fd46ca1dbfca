"""Sales handoffs POSTed to a real HTTP server on 127.0.0.1: retries, failures, email."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from nurture.engine.runtime import Runtime
from nurture.intake import handoffs
from nurture.providers.memory import MemoryProvider
from nurture.store import database as db
from nurture.store import maturity as ms
from nurture.store import queries as store
from tests.maturity_support import FITTING, MONDAY, add, build, crm_server, event

SECOND = timedelta(seconds=1)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2, trust_env=False) as found:
        yield found


def runtime(tmp_path: Path, url: str, extra: str = "") -> Runtime:
    return build(tmp_path / "project", handoff=f'webhook_url = "{url}"\n{extra}')


def rows(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(select(db.handoff).order_by(db.handoff.c.id))
                .mappings()]


def qualify(rt: Runtime, email: str = "camille@example.com") -> int:
    cid = add(rt, email, FITTING)
    event(rt, cid, "page.viewed", MONDAY, url="/pricing", seconds=90)
    event(rt, cid, "quote.requested", MONDAY, product="pro")
    return cid


def test_a_500_is_retried_with_backoff_and_the_same_json_is_delivered(
        tmp_path: Path, client: httpx.Client) -> None:
    with crm_server(500) as (url, crm):
        rt = runtime(tmp_path, url)
        cid = qualify(rt)
        assert handoffs.deliver_due(rt, MONDAY, client) == 0
        first = rows(rt)[0]
        assert (first["state"], first["attempts"]) == ("pending", 1)
        assert first["last_error"] == "HTTP 500: {}"
        wait = first["next_attempt_at"] - MONDAY
        assert 7.5 * SECOND <= wait <= 12.5 * SECOND  # retry_base_seconds 10, ±25% jitter
        assert handoffs.deliver_due(rt, MONDAY + 5 * SECOND, client) == 0  # not yet due
        assert len(crm.received) == 1
        assert handoffs.deliver_due(rt, MONDAY + 13 * SECOND, client) == 1
        assert handoffs.deliver_due(rt, MONDAY + 60 * SECOND, client) == 0  # delivered once
    assert len(crm.received) == 2
    (_, refused), (headers, body) = crm.received
    assert refused == body
    payload = json.loads(body)
    assert payload["handoff_id"] == first["id"]
    assert payload["contact"] == {
        "id": cid, "email": "camille@example.com", "phone": None, "locale": "en",
        "timezone": "Europe/Paris", "country": None, "attributes": FITTING}
    assert (payload["stage"], payload["temperature"], payload["fit"]) == ("prospect", "warm", 60)
    assert payload["score"] == 28
    assert payload["reason"] == "quote.requested is a strong signal (fit not required)"
    assert [(e["type"], e["rule"], e["points"]) for e in payload["events"]] == [
        ("page.viewed", "pricing", 25), ("page.viewed", "view", 3)]
    assert payload["events"][0]["properties"] == {"url": "/pricing", "seconds": 90}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Nurture-Signature"].startswith("sha256=")
    done = rows(rt)[0]
    assert (done["state"], done["attempts"], done["delivered_at"]) == (
        "delivered", 2, MONDAY + 13 * SECOND)


def test_retries_stop_at_max_attempts(tmp_path: Path, client: httpx.Client) -> None:
    with crm_server(503, 503, 503) as (url, crm):
        rt = runtime(tmp_path, url, "max_attempts = 3")
        qualify(rt)
        at = MONDAY
        for _ in range(5):
            handoffs.deliver_due(rt, at, client)
            at += timedelta(minutes=10)
    row = rows(rt)[0]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("failed", 3, None)
    assert row["last_error"].startswith("HTTP 503")
    assert len(crm.received) == 3


def test_a_refusal_is_final(tmp_path: Path, client: httpx.Client) -> None:
    with crm_server(400, 429) as (url, crm):
        rt = runtime(tmp_path, url)
        qualify(rt, "a@example.com")
        qualify(rt, "b@example.com")
        handoffs.deliver_due(rt, MONDAY, client)
    assert [(r["state"], r["attempts"]) for r in rows(rt)] == [("failed", 1), ("pending", 1)]


def test_a_dead_endpoint_does_not_hold_the_tick(tmp_path: Path, client: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rt = runtime(tmp_path, f"http://127.0.0.1:{port}/gone")
    for index in range(5):
        qualify(rt, f"c{index}@example.com")
    assert handoffs.deliver_due(rt, MONDAY, client) == 0
    found = rows(rt)
    assert [r["attempts"] for r in found] == [1, 1, 1, 0, 0]
    assert all(r["state"] == "pending" for r in found)
    assert "ConnectError" in found[0]["last_error"]
    assert [r["next_attempt_at"] for r in found[3:]] == [MONDAY, MONDAY]  # next tick


def test_timeouts_are_retried(tmp_path: Path) -> None:
    with crm_server() as (url, crm):
        crm.delay = 0.5
        rt = runtime(tmp_path, url)
        qualify(rt)
        with httpx.Client(timeout=0.1, trust_env=False) as impatient:
            handoffs.deliver_due(rt, MONDAY, impatient)
    row = rows(rt)[0]
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("timeout")


def test_without_a_webhook_handoffs_are_recorded_and_sales_notified(tmp_path: Path) -> None:
    rt = build(tmp_path / "p", handoff='notify_email = "sales@acme.test"')
    qualify(rt)
    assert handoffs.deliver_due(rt, MONDAY, None) == 0
    assert (rows(rt)[0]["state"], rows(rt)[0]["last_error"]) == ("recorded", "")
    provider = rt.providers["email"]
    assert isinstance(provider, MemoryProvider)
    (mail,) = provider.sent
    assert mail.to == "sales@acme.test" and mail.categories == ("handoff",)
    assert mail.subject == "New qualified prospect: Camille (Boulangeries Martin), score 28.0"
    assert "Head of Operations" in mail.html and "List-Unsubscribe" not in mail.headers
    handoffs.deliver_due(rt, MONDAY + timedelta(hours=1), None)
    assert len(provider.sent) == 1  # once per handoff


def test_a_journey_handoff_gets_the_full_payload_and_duplicates_are_skipped(
        tmp_path: Path, client: httpx.Client) -> None:
    with crm_server() as (url, crm):
        rt = runtime(tmp_path, url, 'dedupe_within = "1h"')
        cid = add(rt, "a@example.com", FITTING)
        with rt.db.begin() as conn:
            store.insert_handoff(conn, cid, "asked for a call", "warm-consideration", MONDAY)
            store.insert_handoff(conn, cid, "again", "warm-consideration", MONDAY + 10 * SECOND)
            store.insert_handoff(conn, cid, "later", "warm-consideration",
                                 MONDAY + timedelta(hours=2))
        handoffs.deliver_due(rt, MONDAY + timedelta(hours=3), client)
        with rt.db.begin() as conn:
            saved = ms.contact_handoffs(conn, cid)
    assert [(r["state"], r["last_error"]) for r in saved] == [
        ("delivered", ""), ("skipped", "duplicate of handoff 1"), ("delivered", "")]
    payload = json.loads(crm.received[0][1])
    assert payload["source"] == "warm-consideration" and payload["reason"] == "asked for a call"
    assert payload["contact"]["email"] == "a@example.com" and payload["stage"] == "lead"
    assert saved[0]["payload"]["contact"]["email"] == "a@example.com"  # kept for retries


def test_the_payload_carries_the_score_as_every_output_shows_it(tmp_path: Path) -> None:
    """One number per fact: sales see 92.6 in the email, the CRM gets 92.6, not 92.55."""
    from nurture.views import ContactView

    rt = runtime(tmp_path, "http://127.0.0.1:9/unused")
    cid = add(rt, "camille@example.com", FITTING)
    with rt.db.begin() as conn:
        store.update_contact(conn, cid, {"score": 92.55, "fit": 59.95})
        [row] = conn.execute(select(db.contact).where(db.contact.c.id == cid)).mappings()
        payload = handoffs.full_payload(conn, {"payload": {}, "reason": "asked"},
                                        ContactView.from_row(row))
    assert (payload["score"], payload["fit"]) == (92.6, 60.0)
