"""The one send path: consent, suppression and the window hold at the provider call.

Real SDKs against the loopback fake (tests/fakes.py), real signed webhooks, the real
one-click endpoint: a withdrawal or a suppression committed before a provider call
always wins, retries included.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import ledger
from nurture.providers.memory import MemoryProvider
from nurture.providers.sendgrid import SendGridProvider
from nurture.providers.twilio import TwilioProvider
from nurture.services import contacts
from nurture.web.app import create_app
from tests.conftest import applied_runtime
from tests.fakes import (
    Answer,
    FakeApi,
    LoopbackTwilioHttpClient,
    add_contact,
    messages,
    project_settings,
    running,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
EMAIL = "camille@example.com"
PHONE = "+33612345678"
TOKEN = "test-auth-token-0123456789"
ACCOUNT = "AC" + "0" * 32
BASE = "https://nurture.test"
UNAVAILABLE = Answer(503, {"errors": [{"message": "service unavailable"}]})
EMAIL_SERIES = """
id: welcome
name: Welcome
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
"""
SMS_SERIES = """
id: texts
name: Texts
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: sms, template: hot/trial-reminder }
"""
CONFIG = """
[providers]
retry_base_seconds = 30
max_attempts = 5
timeout_seconds = 2
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    with running() as fake:
        yield fake


def engine(tmp_path: Path, api: FakeApi, journeys: dict[str, str]) -> Runtime:
    settings = project_settings(tmp_path / "project", CONFIG, journeys)
    return applied_runtime(settings, providers={
        "email": SendGridProvider("SG.test-key", settings, host=api.url),
        "sms": TwilioProvider(ACCOUNT, TOKEN, settings, LoopbackTwilioHttpClient(api.url))})


def one_click(client: TestClient, public_id: str, rt: Runtime) -> None:
    path = urlsplit(rt.links.unsubscribe_url(public_id)).path
    answer = client.post(path, files={"List-Unsubscribe": (None, "One-Click")},
                         follow_redirects=False)
    assert answer.status_code == 200


def first_attempt_refused(rt: Runtime, api: FakeApi) -> dict[str, Any]:
    api.answer(UNAVAILABLE)
    tick(rt, NOW)
    [message] = messages(rt)
    assert (message["state"], message["attempts"]) == ("retrying", 1)
    return message


def test_a_retry_after_a_one_click_unsubscribe_is_skipped(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES})
    add_contact(rt, NOW, EMAIL)
    message = first_attempt_refused(rt, api)
    one_click(TestClient(create_app(rt, Clock(NOW))), message["public_id"], rt)

    tick(rt, NOW + timedelta(hours=1))

    [after] = messages(rt)
    assert (after["state"], after["skip_reason"]) == ("skipped", "no_consent")
    assert len(api.sent("/v3/mail/send")) == 1  # the refused attempt only


def test_a_retry_after_a_signed_twilio_stop_is_skipped(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api, {"texts": SMS_SERIES})
    add_contact(rt, NOW, EMAIL, phone=PHONE, consents=(("sms", "newsletter"),))
    first_attempt_refused(rt, api)
    params = {"From": PHONE, "To": "+33700000001", "Body": "STOP", "MessageSid": "SM" + "b" * 32,
              "AccountSid": ACCOUNT, "NumMedia": "0", "NumSegments": "1", "FromCountry": "FR"}
    signature = RequestValidator(TOKEN).compute_signature(f"{BASE}/webhooks/twilio/sms", params)
    client = TestClient(create_app(rt, Clock(NOW + timedelta(seconds=5))))
    answer = client.post("/webhooks/twilio/sms", data=params,
                         headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200

    tick(rt, NOW + timedelta(hours=1))

    [after] = messages(rt)
    assert (after["state"], after["skip_reason"]) == ("skipped", "no_consent")
    assert len(api.sent("/2010-04-01/Accounts")) == 1


def test_a_retry_after_a_hard_bounce_is_skipped(tmp_path: Path, api: FakeApi,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES})
    add_contact(rt, NOW, EMAIL)
    first_attempt_refused(rt, api)
    # an earlier campaign's bounce for the address, reported by SendGrid meanwhile
    body = json.dumps([{"email": EMAIL, "timestamp": int(NOW.timestamp()) + 60,
                        "event": "bounce", "type": "bounce", "status": "5.1.1",
                        "sg_event_id": "sg-bounce-1",
                        "reason": "550 5.1.1 The email account does not exist"}]).encode()
    stamp = str(int(NOW.timestamp()) + 60)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    client = TestClient(create_app(rt, Clock(NOW + timedelta(seconds=60))))
    answer = client.post("/webhooks/sendgrid/events", content=body, headers={
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})
    assert answer.status_code == 200

    tick(rt, NOW + timedelta(hours=1))

    [after] = messages(rt)
    assert (after["state"], after["skip_reason"]) == ("skipped", "suppressed")
    assert len(api.sent("/v3/mail/send")) == 1


def test_a_retry_outside_the_window_waits_for_its_opening(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES.replace(
        "steps:", 'send_window:\n  email: { days: [mon], start: "09:00", end: "10:30" }\n'
                  "steps:")})
    add_contact(rt, NOW, EMAIL)
    message = first_attempt_refused(rt, api)
    late = NOW + timedelta(hours=3)  # 13:00 in Paris: the journey's window has closed

    tick(rt, late)

    [held] = messages(rt)
    assert held["state"] == "retrying" and held["next_attempt_at"] > late
    assert held["next_attempt_at"] == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    assert len(api.sent("/v3/mail/send")) == 1
    tick(rt, held["next_attempt_at"])
    [sent] = messages(rt)
    assert (sent["state"], sent["public_id"]) == ("sent", message["public_id"])


def test_a_withdrawal_committed_mid_batch_stops_every_later_message(tmp_path: Path,
                                                                    api: FakeApi) -> None:
    """A slow provider (0.2 s a message), a batch of 20: half the contacts withdraw while
    the fifth message is with the provider; not one of theirs is handed over after."""
    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES})
    ids = [add_contact(rt, NOW, f"lead{i:02d}@example.com") for i in range(20)]
    withdrawing = {f"lead{i:02d}@example.com": cid for i, cid in enumerate(ids) if i >= 10}
    answered = api.success
    committed_at: list[int] = []

    def slow(request: Any) -> Answer:
        if len(api.requests) == 5:  # the provider holds the fifth; the people click now
            with rt.db.begin() as conn:
                for cid in withdrawing.values():
                    contact = contacts.find_contact(conn, str(cid))
                    ledger.record_consent(conn, rt.settings, NOW, contact=contact,
                                          channel="email", purpose="newsletter",
                                          action="withdrawn", source="one-click")
            committed_at.append(len(api.requests))
        answer = answered(request)
        answer.delay = 0.2
        return answer

    api.success = slow  # type: ignore[method-assign]
    tick(rt, NOW)

    assert committed_at == [5]
    after = [r.json()["personalizations"][0]["to"][0]["email"]
             for r in api.sent("/v3/mail/send")[5:]]
    assert not set(after) & set(withdrawing)
    states = {m["to_address"]: (m["state"], m["skip_reason"]) for m in messages(rt)}
    for address in withdrawing:
        assert states[address] == ("skipped", "no_consent")
    assert sum(state == ("sent", None) for state in states.values()) == 10


def test_each_provider_call_reads_the_ledger_version_once(
        tmp_path: Path, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost of the last look: one small read per message; consent and suppression are
    read again only when the version moved."""
    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES})
    for i in range(5):
        add_contact(rt, NOW, f"lead{i}@example.com")
    from nurture.store import queries as store

    looks: list[str] = []
    reader, statuses = store.ledger_version_reader, store.consent_statuses

    def counting_reader(conn: Any) -> Any:
        read = reader(conn)

        def counted() -> int:
            looks.append("version")
            return read()
        return counted

    def counting_statuses(conn: Any, ids: Any) -> Any:
        looks.append("consent")
        return statuses(conn, ids)

    monkeypatch.setattr(store, "ledger_version_reader", counting_reader)
    monkeypatch.setattr(store, "consent_statuses", counting_statuses)
    tick(rt, NOW)

    # the batch's prefetch, then the guard: its first look, then one version per message
    assert looks == ["consent", "version", "consent", *["version"] * 4]


def test_confirmations_and_notifications_are_messages_with_states(tmp_path: Path) -> None:
    """Double opt-in confirmations and sales notifications go through the one path:
    rows with states, shown by `contact show`, erased by `contact forget`."""
    from nurture.services import gdpr
    from nurture.services.signup import SignupForm, record_signup

    settings = project_settings(tmp_path / "project", CONFIG + """
[handoff]
notify_email = "sales@acme.test"
""", {"welcome": EMAIL_SERIES})
    outbox = MemoryProvider()
    rt = applied_runtime(settings, providers={"email": outbox, "sms": MemoryProvider()})
    form = SignupForm(email=EMAIL, phone=None, channels=["email"], purposes=["newsletter"],
                      wording="Yes, send me guides", wording_version="v1", source="form",
                      form_id="footer", locale="fr", timezone=None, country=None,
                      attributes={}, double_opt_in=True)
    with rt.db.begin() as conn:
        result = record_signup(conn, rt, NOW, form, {"ip": "203.0.113.7"})
    assert result.confirmation is not None
    from nurture.engine.send import deliver

    assert deliver(rt, [result.confirmation], NOW).sent == 1
    with rt.db.begin() as conn:
        contact = contacts.find_contact(conn, EMAIL)
        from nurture.store import queries as store

        store.insert_handoff(conn, contact.id, "qualified", "welcome", NOW)
    tick(rt, NOW)

    kinds = {m["kind"]: m for m in messages(rt)}
    assert kinds["confirmation"]["state"] == "sent"
    assert kinds["notification"]["state"] == "sent"
    assert kinds["notification"]["to_address"] == "sales@acme.test"
    assert {m.to for m in outbox.sent} >= {EMAIL, "sales@acme.test"}
    with rt.db.begin() as conn:
        shown = contacts.describe(conn, contacts.find_contact(conn, EMAIL))
        assert {m["kind"] for m in shown["messages"]} >= {"confirmation", "notification"}
        gdpr.forget_contact(conn, contacts.find_contact(conn, EMAIL), NOW)
    assert messages(rt) == []


def test_a_retry_of_a_paused_journey_waits_for_resume(tmp_path: Path, api: FakeApi) -> None:
    from nurture.services import journeys

    rt = engine(tmp_path, api, {"welcome": EMAIL_SERIES})
    add_contact(rt, NOW, EMAIL)
    first_attempt_refused(rt, api)
    with rt.db.begin() as conn:
        journeys.pause(conn, rt, "welcome", NOW)

    tick(rt, NOW + timedelta(hours=1))
    [held] = messages(rt)
    assert held["state"] == "retrying" and held["next_attempt_at"] > NOW + timedelta(hours=1)
    assert len(api.sent("/v3/mail/send")) == 1

    with rt.db.begin() as conn:
        journeys.resume(conn, rt, "welcome", NOW + timedelta(hours=2))
    tick(rt, held["next_attempt_at"])
    [sent] = messages(rt)
    assert sent["state"] == "sent" and len(api.sent("/v3/mail/send")) == 2
