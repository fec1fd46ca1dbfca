"""Twilio inbound SMS and status callbacks, signed for real with the SDK's RequestValidator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.scoring.replies import Classifier
from nurture.store import database as db
from nurture.web.app import create_app
from tests.fakes import (
    add_contact,
    consent_records,
    count,
    enrollments,
    events,
    messages,
    suppressed,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
TOKEN = "test-auth-token-0123456789"
PHONE = "+33612345678"
SID = "SM" + "a" * 32
BASE = "https://nurture.test"
SERIES = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: sms, template: hot/trial-reminder }
  - { id: pause, type: wait, duration: 1d }
  - { id: second, type: send, channel: sms, template: hot/trial-reminder }
"""


class Hook:
    """A running app with one SMS sent to a French contact, and a Twilio signer."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.client = TestClient(create_app(rt, lambda: NOW))
        self.contact = add_contact(rt, NOW, "camille@example.com", phone=PHONE, locale="fr",
                                   consents=(("sms", "newsletter"),))
        tick(rt, NOW)
        self.message = messages(rt)[0]

    def post(self, path: str, params: dict[str, str], *, signed_url: str | None = None,
             token: str = TOKEN, headers: dict[str, str] | None = None) -> Any:
        url = signed_url or f"{BASE}{path}"
        signature = RequestValidator(token).compute_signature(url, params)
        return self.client.post(path, data=params,
                                headers={"X-Twilio-Signature": signature, **(headers or {})})

    def sms(self, body: str, sid: str = SID, **extra: str) -> Any:
        return self.post("/webhooks/twilio/sms", inbound(body, sid, **extra))

    def status(self, status: str, *, error: str | None = None, with_id: bool = True) -> Any:
        params = {"MessageSid": self.message["provider_message_id"], "MessageStatus": status,
                  "SmsSid": self.message["provider_message_id"], "SmsStatus": status,
                  "AccountSid": "AC" + "0" * 32, "From": "+33700000001", "To": PHONE,
                  "ApiVersion": "2010-04-01"}
        if error:
            params["ErrorCode"] = error
        query = f"?m={self.message['public_id']}" if with_id else ""
        return self.post(f"/webhooks/twilio/status{query}", params)


def inbound(body: str, sid: str = SID, **extra: str) -> dict[str, str]:
    """A recorded-shape inbound SMS post."""
    return {"ToCountry": "FR", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "FR", "To": "+33700000001",
            "MessagingServiceSid": "MG" + "1" * 32, "ToZip": "", "NumSegments": "1",
            "MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": PHONE,
            "ApiVersion": "2010-04-01", **extra}


@pytest.fixture
def hook(make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> Hook:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    return Hook(make_runtime("", {"series": SERIES}))


def replies(hook: Hook) -> list[dict[str, Any]]:
    return [e for e in events(hook.rt) if e["type"] == "reply.received"]


def sms_withdrawals(hook: Hook) -> list[dict[str, Any]]:
    return [r for r in consent_records(hook.rt, hook.contact)
            if r["channel"] == "sms" and r["action"] == "withdrawn"]


# ---- inbound SMS ----------------------------------------------------------------------


def test_an_inbound_sms_is_stored_as_a_reply_and_answered_empty(hook: Hook) -> None:
    response = hook.sms("Bonjour, c'est combien ?")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    [reply] = replies(hook)
    assert (reply["contact_id"], reply["source"], reply["source_event_id"]) == (
        hook.contact, "twilio", SID)
    assert reply["properties"]["channel"] == "sms"
    assert reply["properties"]["text"] == "Bonjour, c'est combien ?"
    assert reply["properties"]["opt_out_type"] is None
    assert reply["raw"]["NumSegments"] == "1"


@pytest.mark.parametrize("word", ["HELP", "aide", "Info"])
def test_help_is_answered_with_the_help_text_in_the_contact_language(hook: Hook,
                                                                     word: str) -> None:
    response = hook.sms(word)
    text = hook.rt.settings.sms.help_text["fr"].replace("'", "&apos;")
    assert response.text == (f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                             f"{text}</Message></Response>")
    assert enrollments(hook.rt, hook.contact)[0]["state"] != "paused"


def test_replies_are_read_by_the_classifier_compiled_once(hook: Hook,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hook.sms("HELP", sid="SM" + "b" * 32)  # the runtime's classifier exists from now on
    compiled: list[object] = []
    real = Classifier.__init__

    def counting(self: Classifier, *args: Any, **kwargs: Any) -> None:
        compiled.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Classifier, "__init__", counting)
    for index, text in enumerate(["HELP", "aide", "Bonjour"]):
        assert hook.sms(text, sid=f"SM{index:032d}").status_code == 200
    assert compiled == []


def test_help_already_answered_by_twilio_advanced_opt_out_gets_no_second_answer(
        hook: Hook) -> None:
    response = hook.sms("HELP", OptOutType="HELP")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_stop_withdraws_sms_consent_once_and_the_next_sms_step_is_skipped(hook: Hook) -> None:
    response = hook.sms("STOP", OptOutType="STOP")

    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    [withdrawal] = sms_withdrawals(hook)  # the reply hook and OptOutType: recorded once
    assert withdrawal["purpose"] == "*"
    tick(hook.rt, NOW + timedelta(days=1, minutes=1))
    second = messages(hook.rt)[1]
    assert (second["step_id"], second["state"], second["skip_reason"]) == (
        "second", "skipped", "no_consent")


def test_french_arret_without_opt_out_type_withdraws_through_the_reply_hook(hook: Hook) -> None:
    hook.sms("ARRÊT")
    [withdrawal] = sms_withdrawals(hook)
    assert withdrawal["purpose"] == "*"


def test_opt_out_type_alone_is_honoured(hook: Hook) -> None:
    # a custom Twilio opt-out keyword our classifier does not know
    hook.sms("BASTA", OptOutType="STOP")
    [withdrawal] = sms_withdrawals(hook)
    assert (withdrawal["source"], withdrawal["purpose"]) == ("twilio", "*")
    assert withdrawal["evidence"]["opt_out_type"] == "STOP"


def test_start_after_stop_opts_back_in(hook: Hook) -> None:
    hook.sms("STOP", sid="SM" + "1" * 32, OptOutType="STOP")
    hook.sms("START", sid="SM" + "2" * 32, OptOutType="START")

    tick(hook.rt, NOW + timedelta(days=1, minutes=1))

    assert messages(hook.rt)[1]["state"] == "sent"
    channel_wide = [r for r in consent_records(hook.rt, hook.contact) if r["purpose"] == "*"]
    assert [r["action"] for r in channel_wide] == ["withdrawn", "granted"]


def test_oui_rappelez_moi_scores_up_and_pauses_the_sequence(hook: Hook) -> None:
    with hook.rt.db.begin() as conn:
        before = conn.execute(db.contact.select()).mappings().one()["score"]

    hook.sms("oui, rappelez-moi")

    with hook.rt.db.begin() as conn:
        contact = conn.execute(db.contact.select()).mappings().one()
    assert contact["score"] > before
    assert enrollments(hook.rt, hook.contact)[0]["state"] == "paused"
    assert replies(hook)[0]["properties"]["intent"] == "meeting_request"
    tick(hook.rt, NOW + timedelta(days=2))
    assert len(messages(hook.rt)) == 1  # the sequence stopped on reply


def test_an_unknown_number_is_kept_unmatched(hook: Hook) -> None:
    response = hook.post("/webhooks/twilio/sms", inbound("Qui êtes-vous ?", From="+33699999999"))
    assert response.status_code == 200
    [reply] = replies(hook)
    assert reply["contact_id"] is None


def test_an_inbound_replay_is_harmless(hook: Hook) -> None:
    hook.sms("STOP", OptOutType="STOP")
    hook.sms("STOP", OptOutType="STOP")
    assert len(replies(hook)) == 1 and len(sms_withdrawals(hook)) == 1


# ---- status callbacks -----------------------------------------------------------------


def test_delivered_updates_the_message_and_records_the_event(hook: Hook) -> None:
    response = hook.status("delivered")

    assert response.status_code == 204
    assert messages(hook.rt)[0]["state"] == "delivered"
    [event] = [e for e in events(hook.rt) if e["type"] == "sms.delivered"]
    assert event["source_event_id"] == f"{hook.message['provider_message_id']}:delivered"
    assert (event["contact_id"], event["message_id"]) == (hook.contact, hook.message["id"])
    assert event["raw"]["MessageStatus"] == "delivered"


def test_undelivered_to_an_unknown_handset_fails_and_suppresses(hook: Hook) -> None:
    hook.status("undelivered", error="30005")

    message = messages(hook.rt)[0]
    assert message["state"] == "failed" and "30005" in message["error"]
    [event] = [e for e in events(hook.rt) if e["type"] == "sms.failed"]
    assert event["properties"] == {"status": "undelivered", "error_code": 30005}
    assert suppressed(hook.rt, PHONE) is not None
    tick(hook.rt, NOW + timedelta(days=1, minutes=1))
    assert messages(hook.rt)[1]["skip_reason"] == "suppressed"


def test_failed_as_opted_out_withdraws_sms_consent(hook: Hook) -> None:
    hook.status("failed", error="21610")
    assert messages(hook.rt)[0]["state"] == "failed"
    [withdrawal] = sms_withdrawals(hook)
    assert withdrawal["purpose"] == "*" and withdrawal["source"] == "twilio"


def test_progress_statuses_store_nothing(hook: Hook) -> None:
    before = count(hook.rt, db.event_t)
    assert hook.status("sent").status_code == 204
    assert count(hook.rt, db.event_t) == before
    assert messages(hook.rt)[0]["state"] == "sent"


def test_a_callback_without_our_id_is_matched_by_message_sid(hook: Hook) -> None:
    hook.status("delivered", with_id=False)
    assert messages(hook.rt)[0]["state"] == "delivered"


def test_a_status_replay_is_harmless(hook: Hook) -> None:
    hook.status("failed", error="21610")
    hook.status("failed", error="21610")
    assert len(sms_withdrawals(hook)) == 1
    assert len([e for e in events(hook.rt) if e["type"] == "sms.failed"]) == 1


def test_a_late_delivered_never_undoes_a_failure(hook: Hook) -> None:
    hook.status("failed", error="30003")
    hook.status("delivered")
    assert messages(hook.rt)[0]["state"] == "failed"


# ---- security -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webhooks/twilio/sms", "/webhooks/twilio/status"])
def test_a_wrong_signature_is_refused_and_nothing_stored(hook: Hook, path: str) -> None:
    before = count(hook.rt, db.event_t)
    params = inbound("STOP", OptOutType="STOP")
    params.update(MessageStatus="failed", ErrorCode="21610")
    assert hook.post(path, params, token="another-token").status_code == 403
    assert hook.post(path, params, signed_url=f"http://nurture.test{path}").status_code == 403
    unsigned = hook.client.post(path, data=params)
    assert unsigned.status_code == 403
    assert count(hook.rt, db.event_t) == before
    assert sms_withdrawals(hook) == []


def test_a_field_changed_after_signing_is_refused(hook: Hook) -> None:
    params = inbound("Bonjour")
    signature = RequestValidator(TOKEN).compute_signature(f"{BASE}/webhooks/twilio/sms", params)
    params["Body"] = "STOP"
    response = hook.client.post("/webhooks/twilio/sms", data=params,
                                headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403 and replies(hook) == []


def test_the_public_url_behind_a_trusted_proxy_is_honoured(hook: Hook) -> None:
    """Forwarded headers count from a proxy in `trusted_proxies` only (tests/test_web_limits.py
    has the spoofing side)."""
    settings = hook.rt.settings.model_copy(update={"trusted_proxies": [ip_network("10.0.0.0/8")]})
    hook.client = TestClient(create_app(replace(hook.rt, settings=settings), lambda: NOW),
                             client=("10.0.0.2", 50000))
    response = hook.post("/webhooks/twilio/sms", inbound("Bonjour"),
                         signed_url="https://sms.acme.example/webhooks/twilio/sms",
                         headers={"X-Forwarded-Proto": "https",
                                  "X-Forwarded-Host": "sms.acme.example"})
    assert response.status_code == 200 and len(replies(hook)) == 1


def test_a_signed_but_malformed_post_is_400(hook: Hook) -> None:
    before = count(hook.rt, db.event_t)
    assert hook.post("/webhooks/twilio/sms", {"Body": "hi"}).status_code == 400
    assert hook.post("/webhooks/twilio/status", {"MessageSid": SID}).status_code == 400
    assert count(hook.rt, db.event_t) == before


def test_without_a_configured_token_nothing_is_accepted(hook: Hook,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    assert hook.sms("STOP", OptOutType="STOP").status_code == 503
    assert sms_withdrawals(hook) == []
