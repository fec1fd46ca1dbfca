"""Twilio SMS through the real SDK, pointed at a loopback fake of the REST API."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.config.settings import Settings
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ConfigError, ProviderError
from nurture.providers.base import OutgoingMessage
from nurture.providers.memory import MemoryProvider
from nurture.providers.pacing import LocalPacer
from nurture.providers.registry import build_providers
from nurture.providers.twilio import TwilioProvider
from tests.conftest import applied_runtime
from tests.fakes import (
    Answer,
    FakeApi,
    LoopbackTwilioHttpClient,
    add_contact,
    consent_records,
    messages,
    project_settings,
    running,
    suppressed,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SID = "AC" + "0" * 31 + "1"
TOKEN = "test-auth-token"
PUBLIC_ID = "0123456789abcdef0123456789abcdef"
CALLBACK = f"https://nurture.test/webhooks/twilio/status?m={PUBLIC_ID}"
MESSAGE = OutgoingMessage(public_id=PUBLIC_ID, channel="sms", to="+33612345678",
                          sender="+33700000001", text="Votre essai vous attend. STOP au 36111",
                          status_callback=CALLBACK)
MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    with running() as fake:
        yield fake


class FakeClock:
    """A monotonic clock that only moves when the provider sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def settings(**providers: Any) -> Settings:
    return Settings.model_validate({"providers": {"timeout_seconds": 2.0, **providers}})


def provider(api: FakeApi, chosen: Settings | None = None,
             clock: FakeClock | None = None) -> TwilioProvider:
    clock = clock or FakeClock()
    return TwilioProvider(SID, TOKEN, chosen or settings(), LoopbackTwilioHttpClient(api.url),
                          clock=clock, sleep=clock.sleep)


def test_send_posts_the_exact_messages_request(api: FakeApi) -> None:
    result = provider(api).send(MESSAGE)

    [request] = api.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    expected_auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.header("Authorization") == f"Basic {expected_auth}"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert request.form() == {"To": "+33612345678", "From": "+33700000001",
                              "Body": "Votre essai vous attend. STOP au 36111",
                              "StatusCallback": CALLBACK, "ValidityPeriod": "14400"}
    assert result.provider == "twilio" and result.provider_message_id.startswith("SM")


def test_a_messaging_service_replaces_the_sender(api: FakeApi) -> None:
    chosen = settings(twilio_messaging_service_sid="MG" + "1" * 32, twilio_validity_seconds=600)
    provider(api, chosen).send(MESSAGE)

    form = api.requests[0].form()
    assert form["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in form
    assert form["ValidityPeriod"] == "600"


def test_pacing_counts_segments_per_sender(api: FakeApi) -> None:
    clock = FakeClock()
    sender = provider(api, settings(twilio_mps=1.0), clock)
    long_text = "x" * 200  # GSM-7: two segments

    sender.send(MESSAGE)
    sender.send(OutgoingMessage(PUBLIC_ID[::-1], "sms", "+33612345679", "+33700000001",
                                text=long_text))
    sender.send(MESSAGE)
    sender.send(OutgoingMessage("other", "sms", "+33612345670", "+33700000002", text="hi"))

    # 1 s after the first message, 2 s after the two-segment one; another sender is free
    assert clock.sleeps == [1.0, 2.0]
    assert len(api.sent(MESSAGES_PATH)) == 4


def test_pacer_allows_several_messages_per_second() -> None:
    clock = FakeClock()
    pacer = LocalPacer(4.0, clock, clock.sleep)
    for _ in range(5):
        pacer.wait("+1555", 1)
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


@pytest.mark.parametrize(("status", "code", "retryable", "consequence"), [
    (429, 20429, True, None),
    (401, 20003, True, None),
    (500, 20500, True, None),
    (503, 20503, True, None),
    (400, 21610, False, "withdraw"),
    (400, 21211, False, "suppress"),
    (400, 21614, False, "suppress"),
    (400, 21408, False, None),
])
def test_errors_are_classified(api: FakeApi, status: int, code: int, retryable: bool,
                               consequence: str | None) -> None:
    api.answer(Answer(status, twilio_error(status, code, "refused")))
    with pytest.raises(ProviderError) as caught:
        provider(api).send(MESSAGE)

    assert caught.value.retryable is retryable
    assert caught.value.consequence == consequence
    assert caught.value.code == str(code)


def test_a_slow_answer_times_out_as_unknown_never_retried(api: FakeApi) -> None:
    """The request went out: it may have been sent, so retrying could send it twice."""
    api.answer(Answer(201, {"sid": "SMlate", "status": "queued"}, delay=1.5))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        provider(api, settings(timeout_seconds=0.3)).send(MESSAGE)
    assert time.monotonic() - started < 1.2
    assert not caught.value.retryable and caught.value.code == "timeout"


def test_a_refused_connection_is_retryable() -> None:
    client = LoopbackTwilioHttpClient("http://127.0.0.1:9")
    sender = TwilioProvider(SID, TOKEN, settings(), client, sleep=lambda s: None)
    with pytest.raises(ProviderError) as caught:
        sender.send(MESSAGE)
    assert caught.value.retryable and caught.value.code == "network"


def test_the_default_http_client_gets_the_configured_timeout() -> None:
    sender = TwilioProvider(SID, TOKEN, settings(timeout_seconds=3.5))
    assert sender.client.http_client.timeout == 3.5


# ---- through the engine ---------------------------------------------------------------

REMINDER = """
id: reminder
name: Reminder
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: text, type: send, channel: sms, template: hot/trial-reminder }
  - { id: pause, type: wait, duration: 1d }
  - { id: again, type: send, channel: sms, template: hot/trial-reminder }
"""
CONFIG = """
[providers]
sms = "twilio"
retry_base_seconds = 30
timeout_seconds = 2
"""


def engine(tmp_path: Path, api: FakeApi) -> Runtime:
    chosen = project_settings(tmp_path / "project", CONFIG, {"reminder": REMINDER})
    sender = TwilioProvider(SID, TOKEN, chosen, LoopbackTwilioHttpClient(api.url),
                            sleep=lambda s: None)
    return applied_runtime(chosen, providers={"email": MemoryProvider(), "sms": sender})


def add_phone(rt: Runtime) -> int:
    return add_contact(rt, NOW, "camille@example.com", phone="+33612345678",
                       consents=(("sms", "newsletter"),))


def test_tick_sends_through_twilio_with_our_status_callback(tmp_path: Path,
                                                            api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_phone(rt)

    assert tick(rt, NOW).sent == 1

    [message] = messages(rt)
    [request] = api.sent(MESSAGES_PATH)
    form = request.form()
    assert message["state"] == "sent" and message["provider_message_id"].startswith("SM")
    assert form["StatusCallback"] == (
        f"https://nurture.test/webhooks/twilio/status?m={message['public_id']}")
    assert form["To"] == "+33612345678" and form["From"] == "+33700000001"
    assert form["Body"] == message["body_text"]


def test_500_is_retried_then_sent_once(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_phone(rt)
    api.answer(Answer(500, twilio_error(500, 20500, "internal error")))

    tick(rt, NOW)
    assert messages(rt)[0]["state"] == "retrying"
    tick(rt, NOW + timedelta(minutes=1))
    tick(rt, NOW + timedelta(minutes=30))

    [message] = messages(rt)
    assert (message["state"], message["attempts"]) == ("sent", 2)
    assert len(api.sent(MESSAGES_PATH)) == 2


def test_opted_out_21610_withdraws_sms_consent_and_later_steps_skip(tmp_path: Path,
                                                                    api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    cid = add_phone(rt)
    api.answer(Answer(400, twilio_error(400, 21610,
                                        "Attempt to send to unsubscribed recipient")))

    tick(rt, NOW)
    tick(rt, NOW + timedelta(days=1, minutes=1))

    first, second = messages(rt)
    assert first["state"] == "failed" and "21610" in first["error"]
    assert (second["state"], second["skip_reason"]) == ("skipped", "no_consent")
    withdrawal = consent_records(rt, cid)[-1]
    assert (withdrawal["action"], withdrawal["purpose"]) == ("withdrawn", "*")
    assert len(api.sent(MESSAGES_PATH)) == 1


def test_invalid_number_21211_is_suppressed(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_phone(rt)
    api.answer(Answer(400, twilio_error(400, 21211, "The 'To' number is not valid")))

    tick(rt, NOW)
    tick(rt, NOW + timedelta(days=1, minutes=1))

    first, second = messages(rt)
    assert first["state"] == "failed"
    assert (second["state"], second["skip_reason"]) == ("skipped", "suppressed")
    assert suppressed(rt, "+33612345678") is not None


# ---- registry -------------------------------------------------------------------------


def test_registry_builds_twilio_from_config_and_environment() -> None:
    chosen = settings(sms="twilio", twilio_account_sid=SID)
    built = build_providers(chosen, env={"TWILIO_AUTH_TOKEN": TOKEN})
    assert isinstance(built["sms"], TwilioProvider)
    assert built["sms"].client.username == SID and built["sms"].client.password == TOKEN

    from_env = build_providers(settings(sms="twilio"),
                               env={"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": SID})
    assert from_env["sms"].client.username == SID  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        build_providers(chosen, env={})
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        build_providers(settings(sms="twilio"), env={"TWILIO_AUTH_TOKEN": TOKEN})
