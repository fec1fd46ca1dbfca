"""SendGrid email through the real SDK, pointed at a loopback fake of the v3 API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nurture.config.settings import Settings
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ConfigError, ProviderError
from nurture.providers.base import OutgoingMessage
from nurture.providers.memory import MemoryProvider
from nurture.providers.registry import build_providers
from nurture.providers.sendgrid import SendGridProvider
from tests.conftest import applied_runtime
from tests.fakes import (
    Answer,
    FakeApi,
    add_contact,
    messages,
    project_settings,
    running,
    suppressed,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PUBLIC_ID = "0123456789abcdef0123456789abcdef"
MESSAGE = OutgoingMessage(
    public_id=PUBLIC_ID, channel="email", to="camille@example.com",
    sender="Acme Planning <hello@acme.test>", subject="Bienvenue, Camille",
    text="Bonjour Camille", html="<p>Bonjour Camille</p>",
    reply_to=f"reply+{PUBLIC_ID}@reply.acme.test",
    headers={"List-Unsubscribe": "<https://nurture.test/u/TOKEN>",
             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    categories=("cold-education", "welcome"))
INVALID_TO = {"errors": [{"message": "Does not contain a valid address.",
                          "field": "personalizations.0.to.0.email",
                          "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/"
                                  "errors.html#message.personalizations.to"}]}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with running() as fake:
        yield fake


def settings(**providers: object) -> Settings:
    return Settings.model_validate({"providers": {"timeout_seconds": 2.0, **providers}})


def test_send_posts_the_exact_v3_request(api: FakeApi) -> None:
    result = SendGridProvider("SG.test-key", settings(), host=api.url).send(MESSAGE)

    [request] = api.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.header("Authorization") == "Bearer SG.test-key"
    assert request.header("Content-Type") == "application/json"
    assert request.header("User-Agent").startswith("sendgrid/")
    assert request.json() == {
        "from": {"name": "Acme Planning", "email": "hello@acme.test"},
        "reply_to": {"email": f"reply+{PUBLIC_ID}@reply.acme.test"},
        "subject": "Bienvenue, Camille",
        "personalizations": [{"to": [{"email": "camille@example.com"}]}],
        "content": [{"type": "text/plain", "value": "Bonjour Camille"},
                    {"type": "text/html", "value": "<p>Bonjour Camille</p>"}],
        "headers": {"List-Unsubscribe": "<https://nurture.test/u/TOKEN>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "categories": ["cold-education", "welcome"],
        "custom_args": {"nurture_message_id": PUBLIC_ID},
    }
    assert (result.provider, result.provider_message_id) == ("sendgrid", "sgmsg0001")


def test_sandbox_mode_and_configured_categories(api: FakeApi) -> None:
    provider = SendGridProvider("SG.k", settings(sendgrid_sandbox=True,
                                                 sendgrid_categories=["nurture", "welcome"]),
                                host=api.url)
    provider.send(MESSAGE)

    body = api.requests[0].json()
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert body["categories"] == ["cold-education", "welcome", "nurture"]
    assert body["custom_args"] == {"nurture_message_id": PUBLIC_ID}  # never personal data


@pytest.mark.parametrize(("status", "body", "retryable", "consequence"), [
    (429, {"errors": [{"message": "too many requests"}]}, True, None),
    (401, {"errors": [{"message": "The provided authorization grant is invalid"}]}, True,
     None),
    (500, {"errors": [{"message": "internal error"}]}, True, None),
    (503, b"upstream unavailable", True, None),
    (400, INVALID_TO, False, "suppress"),
    (400, {"errors": [{"message": "Does not contain a valid address.",
                       "field": "from.email"}]}, False, None),
    (403, {"errors": [{"field": None, "message": "The from address does not match a verified "
                                                 "Sender Identity."}]}, False, None),
    (413, {"errors": [{"message": "payload too large"}]}, False, None),
])
def test_errors_are_classified(api: FakeApi, status: int, body: object, retryable: bool,
                               consequence: str | None) -> None:
    api.answer(Answer(status, body))
    with pytest.raises(ProviderError) as caught:
        SendGridProvider("SG.k", settings(), host=api.url).send(MESSAGE)

    assert caught.value.retryable is retryable
    assert caught.value.code == str(status)
    assert caught.value.consequence == consequence
    assert str(status) in str(caught.value)


def test_a_slow_answer_times_out_as_unknown_never_retried(api: FakeApi) -> None:
    """The request went out: it may have been sent, so retrying could send it twice."""
    api.answer(Answer(202, headers={"X-Message-Id": "late"}, delay=1.5))
    provider = SendGridProvider("SG.k", settings(timeout_seconds=0.3), host=api.url)

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)

    assert time.monotonic() - started < 1.2
    assert not caught.value.retryable and caught.value.code == "timeout"


def test_a_refused_connection_is_retryable() -> None:
    provider = SendGridProvider("SG.k", settings(), host="http://127.0.0.1:9")
    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)
    assert caught.value.retryable and caught.value.code == "network"


# ---- through the engine ---------------------------------------------------------------

WELCOME = """
id: welcome
name: Welcome
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
"""
CONFIG = """
[providers]
email = "sendgrid"
retry_base_seconds = 30
max_attempts = 5
timeout_seconds = 2
"""


def engine(tmp_path: Path, api: FakeApi) -> Runtime:
    settings = project_settings(tmp_path / "project", CONFIG, {"welcome": WELCOME})
    provider = SendGridProvider("SG.test-key", settings, host=api.url)
    return applied_runtime(settings, providers={"email": provider, "sms": MemoryProvider()})


def test_tick_sends_through_sendgrid_with_unsubscribe_headers(tmp_path: Path,
                                                              api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_contact(rt, NOW, "camille@example.com")

    assert tick(rt, NOW).sent == 1

    [message] = messages(rt)
    [request] = api.sent("/v3/mail/send")
    body = request.json()
    assert message["state"] == "sent" and message["provider"] == "sendgrid"
    assert message["provider_message_id"] == "sgmsg0001"
    assert body["custom_args"] == {"nurture_message_id": message["public_id"]}
    assert body["categories"] == ["welcome", "hello"]
    unsubscribe = body["headers"]["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://nurture.test/u/") and unsubscribe.endswith(">")
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["from"] == {"name": "Acme Planning", "email": "hello@acme.test"}
    assert body["personalizations"] == [{"to": [{"email": "camille@example.com"}]}]
    assert body["subject"] == message["subject"]


def test_429_then_500_are_retried_then_sent_once(tmp_path: Path, api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_contact(rt, NOW, "camille@example.com")
    api.answer(Answer(429, {"errors": [{"message": "too many requests"}]}),
               Answer(500, {"errors": [{"message": "internal error"}]}))

    tick(rt, NOW)
    [first] = messages(rt)
    assert (first["state"], first["attempts"]) == ("retrying", 1) and "429" in first["error"]
    tick(rt, NOW + timedelta(minutes=1))
    [second] = messages(rt)
    assert (second["state"], second["attempts"]) == ("retrying", 2) and "500" in second["error"]
    tick(rt, NOW + timedelta(minutes=5))
    tick(rt, NOW + timedelta(hours=1))

    [sent] = messages(rt)
    assert (sent["state"], sent["attempts"]) == ("sent", 3)
    requests = api.sent("/v3/mail/send")
    assert len(requests) == 3  # two refusals, then exactly one accepted send
    assert requests[0].json() == requests[2].json()
    assert sent["provider_message_id"] == "sgmsg0001"


def test_400_is_recorded_not_retried_and_the_address_suppressed(tmp_path: Path,
                                                                api: FakeApi) -> None:
    rt = engine(tmp_path, api)
    add_contact(rt, NOW, "camille@example.com")
    api.answer(Answer(400, INVALID_TO))

    tick(rt, NOW)
    tick(rt, NOW + timedelta(hours=2))

    [message] = messages(rt)
    assert message["state"] == "failed" and "valid address" in message["error"]
    assert len(api.sent("/v3/mail/send")) == 1
    assert suppressed(rt, "camille@example.com")["reason"] == "provider_rejected"


# ---- registry -------------------------------------------------------------------------


def test_registry_builds_sendgrid_from_the_environment() -> None:
    chosen = settings(email="sendgrid")
    built = build_providers(chosen, env={"SENDGRID_API_KEY": "SG.real-key"})
    assert isinstance(built["email"], SendGridProvider)
    assert built["email"].client.api_key == "SG.real-key"
    assert built["email"].client.client.timeout == 2.0

    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        build_providers(chosen, env={})
    production = Settings.model_validate({"mode": "production",
                                          "providers": {"email": "sendgrid"}})
    with pytest.raises(ConfigError, match="placeholder"):
        build_providers(production, env={"SENDGRID_API_KEY": "change-me"})


def test_idn_recipients_go_out_in_their_ascii_form(api: FakeApi) -> None:
    from dataclasses import replace

    SendGridProvider("SG.k", settings(), host=api.url).send(
        replace(MESSAGE, to="jose@münchen.de"))
    [request] = api.requests
    assert request.json()["personalizations"] == [{"to": [{"email": "jose@xn--mnchen-3ya.de"}]}]
