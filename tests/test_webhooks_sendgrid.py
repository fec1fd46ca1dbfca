"""SendGrid Event Webhook (signed for real with a generated P-256 key) and Inbound Parse."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from nurture.engine.runtime import NoHook, Runtime
from nurture.engine.tick import tick
from nurture.store import database as db
from nurture.web.app import create_app
from tests.fakes import add_contact, consent_records, count, events, messages, suppressed

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
EMAIL = "camille@example.com"
INBOUND_SECRET = "inbound-secret-0123456789"
SERIES = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 1d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Hook:
    """A running app with one message sent to Camille, and a signer for SendGrid posts."""

    def __init__(self, rt: Runtime, key: ec.EllipticCurvePrivateKey) -> None:
        self.rt, self.key, self.clock = rt, key, Clock(NOW)
        self.client = TestClient(create_app(rt, self.clock))
        self.contact = add_contact(rt, NOW, EMAIL)
        tick(rt, NOW)
        self.message = messages(rt)[0]

    def post(self, items: Any, *, key: ec.EllipticCurvePrivateKey | None = None,
             timestamp: datetime | None = None, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> Any:
        raw = body if body is not None else json.dumps(items).encode()
        stamp = str(int((timestamp or self.clock.now).timestamp()))
        signature = (key or self.key).sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
        sent = {"Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp, **(headers or {})}
        return self.client.post("/webhooks/sendgrid/events", content=raw, headers=sent)

    def event(self, kind: str, n: int = 1, **fields: Any) -> dict[str, Any]:
        """A recorded-shape item for our message (SendGrid's documented field set)."""
        item = {
            "email": EMAIL, "timestamp": int(NOW.timestamp()) + 60, "event": kind,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "sg_event_id": f"sg-{kind}-{n}-{fields.get('type', '')}",
            "sg_message_id": f"{self.message['provider_message_id']}.filterdrecv-5bf6-1-0",
            "category": ["series", "hello"],
            "nurture_message_id": self.message["public_id"],
        }
        item.update(EXTRA.get(kind, {}))
        item.update(fields)
        return item


EXTRA: dict[str, dict[str, Any]] = {
    "processed": {"pool": {"name": "new_MY_test", "id": 210}},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "delivered": {"response": "250 OK", "ip": "168.1.1.1", "tls": 1},
    "deferred": {"response": "400 try again later", "attempt": "5"},
    "bounce": {"reason": "550 5.1.1 The email account that you tried to reach does not exist",
               "status": "5.1.1", "type": "bounce", "bounce_classification": "Invalid Address"},
    "open": {"useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)",
             "ip": "255.255.255.255", "sg_machine_open": False},
    "click": {"useragent": "Mozilla/4.0", "ip": "255.255.255.255",
              "url": "https://acme-planning.example/pricing",
              "url_offset": {"index": 0, "type": "html"}},
    "group_unsubscribe": {"useragent": "Mozilla/4.0", "ip": "255.255.255.255",
                          "url": "https://sendgrid.example/unsub", "asm_group_id": 10},
    "group_resubscribe": {"useragent": "Mozilla/4.0", "ip": "255.255.255.255",
                          "url": "https://sendgrid.example/resub", "asm_group_id": 10},
}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    monkeypatch.setenv("SENDGRID_INBOUND_SECRET", INBOUND_SECRET)
    return private


@pytest.fixture
def hook(make_runtime: Callable[..., Runtime], key: ec.EllipticCurvePrivateKey) -> Hook:
    rt = make_runtime("", {"series": SERIES})
    sender = rt.settings.sender.model_copy(update={"reply_domain": "reply.acme.test"})
    rt.settings = rt.settings.model_copy(update={"sender": sender})  # reply+<id>@ addresses
    return Hook(rt, key)


# (event, extra fields) → (type, message state, suppression reason, consent withdrawn, props)
CASES: list[tuple[str, dict[str, Any], str, str, str | None, bool, dict[str, Any]]] = [
    ("processed", {}, "email.processed", "sent", None, False, {}),
    ("dropped", {}, "email.dropped", "failed", "provider_rejected", False,
     {"reason": "Bounced Address", "status": "5.0.0"}),
    ("delivered", {}, "email.delivered", "delivered", None, False, {"response": "250 OK"}),
    ("deferred", {}, "email.deferred", "sent", None, False, {"attempt": "5"}),
    ("bounce", {}, "email.bounced", "bounced", "bounced", False,
     {"bounce_type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address"}),
    ("bounce", {"type": "blocked", "reason": "550 blocked by policy", "status": "5.7.1"},
     "email.bounced", "bounced", None, False, {"bounce_type": "blocked"}),
    ("open", {}, "email.opened", "sent", None, False, {}),
    ("click", {}, "email.clicked", "sent", None, False,
     {"url": "https://acme-planning.example/pricing"}),
    ("spamreport", {}, "email.complained", "sent", "complained", False, {}),
    ("unsubscribe", {}, "email.unsubscribed", "sent", None, True, {}),
    ("group_unsubscribe", {}, "email.unsubscribed", "sent", None, True, {"asm_group_id": 10}),
    ("group_resubscribe", {}, "email.resubscribed", "sent", None, False, {"asm_group_id": 10}),
]


@pytest.mark.parametrize(("kind", "fields", "event_type", "state", "suppression", "withdrawn",
                          "properties"), CASES, ids=[c[0] + str(c[1].get("type", ""))
                                                     for c in CASES])
def test_every_event_type_is_normalized_and_applied(
        hook: Hook, kind: str, fields: dict[str, Any], event_type: str, state: str,
        suppression: str | None, withdrawn: bool, properties: dict[str, Any]) -> None:
    item = hook.event(kind, **fields)

    response = hook.post([item])

    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 1, "replayed": 0, "rejected": 0}
    [stored] = [e for e in events(hook.rt) if e["source"] == "sendgrid"]
    assert stored["type"] == event_type
    assert stored["source_event_id"] == item["sg_event_id"]
    assert stored["contact_id"] == hook.contact
    assert stored["message_id"] == hook.message["id"]
    assert stored["occurred_at"] == NOW + timedelta(seconds=60)
    assert stored["raw"] == item  # the provider's payload, kept whole
    assert properties.items() <= stored["properties"].items()
    assert messages(hook.rt)[0]["state"] == state
    entry = suppressed(hook.rt, EMAIL)
    assert (entry["reason"] if entry else None) == suppression
    last = consent_records(hook.rt, hook.contact)[-1]
    assert (last["action"] == "withdrawn") is withdrawn
    if withdrawn:
        assert (last["channel"], last["purpose"], last["source"]) == (
            "email", "newsletter", "sendgrid")
        assert last["evidence"]["source_event_id"] == item["sg_event_id"]
        assert last["evidence"]["raw"] == item


def test_a_batch_of_every_type_is_stored_whole(hook: Hook) -> None:
    batch = [hook.event(kind, **fields) for kind, fields, *_ in CASES]
    response = hook.post(batch)
    assert response.json() == {"stored": len(CASES), "replayed": 0, "rejected": 0}
    assert count(hook.rt, db.event_t) >= len(CASES)


def test_hard_bounce_suppresses_and_the_next_email_step_is_skipped(hook: Hook) -> None:
    assert hook.post([hook.event("bounce")]).status_code == 200

    tick(hook.rt, NOW + timedelta(days=1, minutes=1))

    first, second = messages(hook.rt)
    assert first["state"] == "bounced" and "550 5.1.1" in first["error"]
    assert (second["step_id"], second["state"], second["skip_reason"]) == (
        "article", "skipped", "suppressed")


def test_blocked_bounce_does_not_suppress(hook: Hook) -> None:
    hook.post([hook.event("bounce", type="blocked", reason="550 blocked")])
    tick(hook.rt, NOW + timedelta(days=1, minutes=1))
    assert messages(hook.rt)[1]["state"] == "sent"


def test_unsubscribe_withdraws_the_purpose_and_the_next_step_is_skipped(hook: Hook) -> None:
    hook.post([hook.event("unsubscribe")])
    tick(hook.rt, NOW + timedelta(days=1, minutes=1))
    assert messages(hook.rt)[1]["skip_reason"] == "no_consent"


def test_message_found_by_sg_message_id_without_custom_arg(hook: Hook) -> None:
    item = hook.event("delivered")
    del item["nurture_message_id"]
    hook.post([item])
    [stored] = [e for e in events(hook.rt) if e["source"] == "sendgrid"]
    assert stored["message_id"] == hook.message["id"]
    assert messages(hook.rt)[0]["state"] == "delivered"


def test_unknown_and_malformed_items_do_not_lose_the_others(hook: Hook) -> None:
    batch = [hook.event("open"), hook.event("machine_learning_magic"), "not an event",
             hook.event("click", timestamp="yesterday"), hook.event("delivered")]

    response = hook.post(batch)

    assert response.status_code == 200
    assert response.json() == {"stored": 3, "replayed": 0, "rejected": 2}
    stored = [e for e in events(hook.rt) if e["source"] == "sendgrid"]
    assert [e["type"] for e in stored] == ["email.opened", "unknown", "email.delivered"]
    assert stored[1]["raw"]["event"] == "machine_learning_magic"
    assert messages(hook.rt)[0]["state"] == "delivered"


def test_dropped_for_a_globally_unsubscribed_address_withdraws_email(hook: Hook) -> None:
    hook.post([hook.event("dropped", reason="Unsubscribed Address")])
    last = consent_records(hook.rt, hook.contact)[-1]
    assert (last["channel"], last["purpose"], last["action"]) == ("email", "*", "withdrawn")
    assert messages(hook.rt)[0]["state"] == "failed"
    assert suppressed(hook.rt, EMAIL) is None


def test_an_item_that_fails_while_applied_is_rolled_back_alone(hook: Hook) -> None:
    class Explode(NoHook):
        def on_run(self, conn: Any, rt: Runtime, run: Any, now: datetime) -> dict[int, Any]:
            if any(e.properties.get("url") == "https://boom.example/" for _, e in run):
                raise RuntimeError("a hook failed on this item")
            return {}

    hook.rt.event_hooks.append(Explode())
    batch = [hook.event("open"), hook.event("click", url="https://boom.example/"),
             hook.event("delivered")]

    response = hook.post(batch)

    assert response.json() == {"stored": 2, "replayed": 0, "rejected": 1}
    stored = [e["type"] for e in events(hook.rt) if e["source"] == "sendgrid"]
    assert stored == ["email.opened", "email.delivered"]
    assert messages(hook.rt)[0]["state"] == "delivered"


def test_replay_is_harmless(hook: Hook) -> None:
    batch = [hook.event("unsubscribe"), hook.event("bounce"), hook.event("delivered")]
    assert hook.post(batch).json()["stored"] == 3
    consents, total = len(consent_records(hook.rt, hook.contact)), count(hook.rt, db.event_t)

    again = hook.post(batch)

    assert again.json() == {"stored": 0, "replayed": 3, "rejected": 0}
    assert len(consent_records(hook.rt, hook.contact)) == consents
    assert count(hook.rt, db.event_t) == total
    assert count(hook.rt, db.suppression) == 1


# ---- security -------------------------------------------------------------------------


def test_a_signature_from_another_key_is_refused_and_nothing_stored(hook: Hook) -> None:
    before = count(hook.rt, db.event_t)
    other = ec.generate_private_key(ec.SECP256R1())
    response = hook.post([hook.event("unsubscribe")], key=other)
    assert response.status_code == 403
    assert count(hook.rt, db.event_t) == before
    assert consent_records(hook.rt, hook.contact)[-1]["action"] == "granted"


def test_a_body_changed_after_signing_is_refused(hook: Hook) -> None:
    body = json.dumps([hook.event("bounce")]).encode()
    stamp = str(int(NOW.timestamp()))
    signature = hook.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    tampered = body.replace(b"camille", b"camilla")
    response = hook.client.post("/webhooks/sendgrid/events", content=tampered, headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})
    assert response.status_code == 403
    assert suppressed(hook.rt, "camilla@example.com") is None


@pytest.mark.parametrize("headers", [
    {"X-Twilio-Email-Event-Webhook-Signature": ""},
    {"X-Twilio-Email-Event-Webhook-Timestamp": ""},
    {"X-Twilio-Email-Event-Webhook-Signature": "not base64 !!"},
    {"X-Twilio-Email-Event-Webhook-Timestamp": "soon"},
])
def test_missing_or_garbled_signature_headers_are_refused(hook: Hook,
                                                          headers: dict[str, str]) -> None:
    before = count(hook.rt, db.event_t)
    assert hook.post([hook.event("bounce")], headers=headers).status_code == 403
    assert count(hook.rt, db.event_t) == before


@pytest.mark.parametrize("skew", [timedelta(minutes=-11), timedelta(minutes=11)])
def test_stale_or_future_timestamps_are_refused(hook: Hook, skew: timedelta) -> None:
    before = count(hook.rt, db.event_t)
    response = hook.post([hook.event("bounce")], timestamp=NOW + skew)
    assert response.status_code == 403 and "stale" in response.json()["detail"]
    assert count(hook.rt, db.event_t) == before
    assert hook.post([hook.event("bounce")], timestamp=NOW - timedelta(minutes=9)).is_success


@pytest.mark.parametrize("body", [b"[{\"event\": \"open\"", b"{\"event\": \"open\"}", b"\xff"])
def test_a_signed_body_that_is_not_a_json_array_is_400(hook: Hook, body: bytes) -> None:
    expected = 403 if body == b"\xff" else 400  # not UTF-8: cannot be what SendGrid signed
    assert hook.post(None, body=body).status_code == expected


def test_without_a_configured_key_nothing_is_accepted(hook: Hook,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY")
    assert hook.post([hook.event("open")]).status_code == 503
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    assert hook.post([hook.event("open")]).status_code == 503


# ---- Inbound Parse --------------------------------------------------------------------

QUOTED = ("Oui, intéressée ! Rappelez-moi demain.\n\n"
          "Le lun. 7 déc. 2026 à 10:00, Acme Planning <hello@acme.test> a écrit :\n"
          "> Répondez STOP pour ne plus recevoir nos messages\n")


def inbound(hook: Hook, secret: str = INBOUND_SECRET, **fields: str) -> Any:
    form = {"headers": "Message-ID: <reply-1@mail.example.com>\nSubject: Re: Guide\n",
            "from": "Camille Martin <Camille@Example.com>", "subject": "Re: Guide",
            "to": f"Acme Planning <reply+{hook.message['public_id']}@reply.acme.test>",
            "text": QUOTED, "envelope": json.dumps({"to": ["x@reply.acme.test"],
                                                    "from": "camille@example.com"}),
            "spam_score": "0.1", "charsets": json.dumps({"text": "UTF-8"}), **fields}
    files = {"attachment1": ("notes.txt", b"attached", "text/plain")}
    return hook.client.post(f"/webhooks/sendgrid/inbound/{secret}", data=form, files=files)


def replies(hook: Hook) -> list[dict[str, Any]]:
    return [e for e in events(hook.rt) if e["type"] == "reply.received"]


def test_a_reply_is_matched_by_its_reply_to_and_stripped_of_history(hook: Hook) -> None:
    response = inbound(hook)

    assert response.json() == {"stored": True, "matched": True}
    [reply] = replies(hook)
    assert reply["contact_id"] == hook.contact and reply["message_id"] == hook.message["id"]
    assert reply["source_event_id"] == "inbound:<reply-1@mail.example.com>"
    properties = reply["properties"]
    assert properties["text"] == "Oui, intéressée ! Rappelez-moi demain."
    assert (properties["channel"], properties["subject"], properties["message_id"]) == (
        "email", "Re: Guide", hook.message["public_id"])
    assert "attachment1" not in reply["raw"] and reply["raw"]["spam_score"] == "0.1"


def test_a_reply_without_our_reply_to_is_matched_by_sender(hook: Hook) -> None:
    response = inbound(hook, to="Acme Planning <hello@acme.test>")
    assert response.json() == {"stored": True, "matched": True}
    [reply] = replies(hook)
    assert reply["contact_id"] == hook.contact and reply["message_id"] is None


def test_a_raw_mime_reply_is_read(hook: Hook) -> None:
    mime = (f"From: Camille <camille@example.com>\r\n"
            f"To: reply+{hook.message['public_id']}@reply.acme.test\r\n"
            "Subject: Re: Guide\r\nMessage-ID: <raw-1@mail.example.com>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Pas intéressé, merci.\r\n\r\nOn Mon, Dec 7, 2026 Acme wrote:\r\n> Hello\r\n")
    response = hook.client.post(f"/webhooks/sendgrid/inbound/{INBOUND_SECRET}",
                                data={"email": mime, "to": "", "from": ""},
                                files={"x": ("x", b"", "text/plain")})
    assert response.json() == {"stored": True, "matched": True}
    [reply] = replies(hook)
    assert reply["properties"]["text"] == "Pas intéressé, merci."
    assert reply["message_id"] == hook.message["id"]


def test_an_inbound_replay_is_stored_once(hook: Hook) -> None:
    inbound(hook)
    assert inbound(hook).json() == {"stored": False, "matched": True}
    assert len(replies(hook)) == 1


def test_an_unknown_sender_is_kept_unmatched(hook: Hook) -> None:
    response = inbound(hook, to="hello@acme.test", **{"from": "stranger@example.org"})
    assert response.json() == {"stored": True, "matched": False}


def test_a_wrong_inbound_secret_is_refused_and_nothing_stored(
        hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    before = count(hook.rt, db.event_t)
    assert inbound(hook, secret="guess").status_code == 403
    monkeypatch.delenv("SENDGRID_INBOUND_SECRET")
    assert inbound(hook).status_code == 503
    assert count(hook.rt, db.event_t) == before
