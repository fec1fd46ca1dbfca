"""Consent semantics, proved by what the engine then sends.

- A STOP speaks for its number: every contact holding it loses SMS (each with its own
  ledger entry), and a contact that later takes the number inherits the withdrawal.
- START counts only from the channel's own signed provider inbound (Twilio, for SMS);
  `POST /events` and email replies never grant consent.
- `*` is a withdrawal only: granting it is refused everywhere.

Real signed Twilio webhooks (the SDK's RequestValidator), SendGrid Inbound Parse with its
secret, the API with its key, the console script in-process, real ticks on a SQLite file
with the outbox provider (and the real Twilio SDK against a loopback fake for 21610).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from twilio.request_validator import RequestValidator

from nurture.cli.main import main
from nurture.config.settings import load_settings
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import ledger as consent_ledger
from nurture.providers.memory import MemoryProvider
from nurture.providers.twilio import TwilioProvider
from nurture.services import contacts
from nurture.web.app import create_app
from tests.conftest import applied_runtime, write_project
from tests.consent_support import (
    API_KEY,
    MONDAY,
    add,
    build,
    consent_snapshot,
    ledger,
    messages,
)
from tests.fakes import Answer, LoopbackTwilioHttpClient, events, project_settings, running

NOW = MONDAY  # 10:00 in Paris
PHONE = "+33612345678"
OTHER_PHONE = "+33611111111"
TOKEN = "test-auth-token-0123456789"
INBOUND_SECRET = "inbound-secret-0123456789"
BASE = "https://nurture.test"
STOP_SID = "SM" + "1" * 32
START_SID = "SM" + "2" * 32
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SMS_MARKETING = (("sms", "marketing"),)
TEXTS = """
id: texts
name: Offers by text
purpose: marketing
stop_on_reply: false
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: sms, template: hot/trial-reminder }
  - { id: wait1, type: wait, duration: 1d }
  - { id: second, type: send, channel: sms, template: hot/trial-reminder }
  - { id: wait2, type: wait, duration: 1d }
  - { id: third, type: send, channel: sms, template: hot/trial-reminder }
  - { id: wait3, type: wait, duration: 1d }
"""
MAILS = """
id: mails
name: Newsletter
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
  - { id: wait1, type: wait, duration: 1d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
  - { id: wait2, type: wait, duration: 1d }
  - { id: again, type: send, channel: email, template: cold/article-best-practices }
  - { id: wait3, type: wait, duration: 1d }
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class App:
    """The project behind `nurture serve`, reached the way providers and scripts reach it."""

    def __init__(self, rt: Runtime, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.rt, self.monkeypatch, self.capsys = rt, monkeypatch, capsys
        self.clock = Clock(NOW)
        self.client = TestClient(create_app(rt, self.clock))

    def sms(self, body: str, sid: str, sender: str = PHONE, **extra: str) -> Any:
        """An inbound SMS signed by Twilio for our public URL."""
        params = {"ToCountry": "FR", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
                  "SmsStatus": "received", "Body": body, "FromCountry": "FR",
                  "To": "+33700000001", "MessagingServiceSid": "MG" + "1" * 32,
                  "NumSegments": "1", "MessageSid": sid, "AccountSid": "AC" + "0" * 32,
                  "From": sender, "ApiVersion": "2010-04-01", **extra}
        return self.signed("/webhooks/twilio/sms", params)

    def status(self, message: dict[str, Any], status: str, error: str) -> Any:
        """A Twilio status callback for one of our messages."""
        sid = message["provider_message_id"]
        params = {"MessageSid": sid, "MessageStatus": status, "SmsSid": sid,
                  "SmsStatus": status, "AccountSid": "AC" + "0" * 32, "From": "+33700000001",
                  "To": message["to_address"], "ApiVersion": "2010-04-01", "ErrorCode": error}
        return self.signed(f"/webhooks/twilio/status?m={message['public_id']}", params)

    def signed(self, path: str, params: dict[str, str]) -> Any:
        signature = RequestValidator(TOKEN).compute_signature(f"{BASE}{path}", params)
        response = self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code in (200, 204), response.text
        return response

    def email(self, text: str, sender: str, message_id: str) -> Any:
        """A SendGrid Inbound Parse post (the sender is whatever the mail claims)."""
        form = {"headers": f"Message-ID: <{message_id}@mail.example.com>\nSubject: Re\n",
                "from": sender, "to": "Acme Planning <hello@acme.test>", "subject": "Re",
                "text": text, "envelope": json.dumps({"to": ["hello@acme.test"],
                                                      "from": sender}),
                "charsets": json.dumps({"text": "UTF-8"})}
        response = self.client.post(f"/webhooks/sendgrid/inbound/{INBOUND_SECRET}", data=form,
                                    files={"x": ("x.txt", b"", "text/plain")})
        assert response.json() == {"stored": True, "matched": True}
        return response

    def cli(self, *args: str) -> tuple[int, str, str]:
        """The console script, in-process, at the app's clock."""
        config = str(Path(self.rt.settings.root) / "config.toml")
        self.monkeypatch.setattr(sys, "argv", ["nurture", "--config", config, *args])
        code = 0
        with freeze_time(self.clock.now):
            try:
                main()
            except SystemExit as e:
                code = int(e.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def tick(self, at: datetime) -> None:
        self.clock.now = at
        tick(self.rt, at)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[App]:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("SENDGRID_INBOUND_SECRET", INBOUND_SECRET)
    rt = build(tmp_path / "project", journeys={"texts": TEXTS, "mails": MAILS},
               copy_journeys=False)
    yield App(rt, monkeypatch, capsys)


def steps(rt: Runtime, cid: int, channel: str = "sms") -> dict[str, tuple[str, str | None]]:
    """step → (state, skip reason) of the contact's messages on that channel."""
    return {m["step_id"]: (m["state"], m["skip_reason"]) for m in messages(rt, cid)
            if m["channel"] == channel}


def handed_over(rt: Runtime, channel: str = "sms") -> set[str]:
    """What the outbox provider was given: one file per message."""
    folder = rt.settings.outbox_path / channel
    return {p.stem for p in folder.glob("*")} if folder.exists() else set()


def channel_wide(rt: Runtime, cid: int, channel: str = "sms") -> list[dict[str, Any]]:
    return [r for r in ledger(rt, cid) if r["channel"] == channel and r["purpose"] == "*"]


def reply_event(rt: Runtime, sid: str) -> dict[str, Any]:
    [found] = [e for e in events(rt) if e["source_event_id"] == sid]
    return found


def contact_id(out: str) -> int:
    return int(out.split()[2].rstrip(":"))


SENT = ("sent", None)
NO_CONSENT = ("skipped", "no_consent")


# ---- one STOP speaks for its number ----------------------------------------------------


def test_one_signed_stop_silences_every_holder_of_the_number_and_later_ones(app: App) -> None:
    rt = app.rt
    ana = add(rt, "ana@example.com", NOW, SMS_MARKETING, phone=PHONE)
    ben = add(rt, "ben@example.com", NOW, SMS_MARKETING, phone=PHONE)
    app.tick(NOW)
    assert steps(rt, ana)["first"] == steps(rt, ben)["first"] == SENT

    app.clock.now = NOW + timedelta(hours=1)
    app.sms("STOP", STOP_SID, OptOutType="STOP")

    inbound = reply_event(rt, STOP_SID)
    for cid in (ana, ben):  # each its own entry, with the inbound's evidence
        [withdrawal] = channel_wide(rt, cid)
        assert (withdrawal["action"], withdrawal["address"]) == ("withdrawn", PHONE)
        assert withdrawal["evidence"]["event_id"] == inbound["id"]
        assert withdrawal["evidence"]["source_event_id"] == STOP_SID
        assert withdrawal["evidence"]["text"] == "STOP"

    # a third contact takes the number: it inherits the withdrawal
    app.clock.now = NOW + timedelta(hours=2)
    code, out, err = app.cli("contact", "add", "cleo@example.com", "--phone", PHONE)
    assert code == 0, err
    cleo = contact_id(out)
    [inherited] = ledger(rt, cleo)
    assert (inherited["channel"], inherited["purpose"], inherited["action"],
            inherited["source"]) == ("sms", "*", "withdrawn", "number-opt-out")
    assert inherited["evidence"]["inherits"] in {channel_wide(rt, ana)[0]["id"],
                                                 channel_wide(rt, ben)[0]["id"]}
    assert inherited["evidence"]["number"] == PHONE

    before = handed_over(rt)
    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == steps(rt, ben)["second"] == NO_CONSENT
    assert steps(rt, cleo)["first"] == NO_CONSENT
    assert handed_over(rt) == before

    # until the third one opts in again, with evidence: then it is texted, the others not
    app.clock.now = NOW + timedelta(days=1, hours=2)
    code, _, err = app.cli("consent", "grant", "cleo@example.com", "--channel", "sms",
                           "--purpose", "marketing", "--source", "phone-call",
                           "--evidence", "wording_version=v2")
    assert code == 0, err
    app.tick(NOW + timedelta(days=2, minutes=1))
    assert steps(rt, cleo)["second"] == SENT
    assert steps(rt, ana)["third"] == steps(rt, ben)["third"] == NO_CONSENT
    assert len(handed_over(rt) - before) == 1


def test_every_path_that_gives_a_contact_the_number_inherits_the_stop(app: App) -> None:
    rt = app.rt
    ana = add(rt, "ana@example.com", NOW, SMS_MARKETING, phone=PHONE)
    eve = add(rt, "eve@example.com", NOW, SMS_MARKETING, phone=OTHER_PHONE)
    app.tick(NOW)
    app.clock.now = NOW + timedelta(hours=1)
    app.sms("ARRÊT", STOP_SID)  # no OptOutType: the reply classifier alone

    app.clock.now = NOW + timedelta(hours=2)
    # the consent API, for email only: the number comes along, and its STOP with it
    dora = app.client.post("/consent", headers=AUTH, json={
        "email": "dora@example.com", "phone": PHONE, "channels": ["email"],
        "purposes": ["newsletter"], "wording": "Send me the newsletter"}).json()["contact_id"]
    # an existing contact moving to the number: its grant for the old one no longer counts
    code, _, err = app.cli("contact", "add", "eve@example.com", "--phone", PHONE)
    assert code == 0, err
    # the consent API with SMS consent and its evidence: an opt-in again, which counts
    form = app.client.post("/consent", headers=AUTH, json={
        "email": "finn@example.com", "phone": PHONE, "channels": ["sms"],
        "purposes": ["marketing"], "wording": "Text me offers", "wording_version": "v4"})
    assert form.status_code == 201 and form.json()["status"] == "granted"
    finn = form.json()["contact_id"]

    for cid in (dora, eve, finn):
        assert [(r["action"], r["source"]) for r in channel_wide(rt, cid)] == [
            ("withdrawn", "number-opt-out")]
    before = handed_over(rt)
    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == NO_CONSENT
    assert steps(rt, eve) == {"first": SENT, "second": NO_CONSENT}
    assert steps(rt, dora) == {"first": NO_CONSENT}
    assert steps(rt, finn) == {"first": SENT}
    assert len(handed_over(rt) - before) == 1


@pytest.mark.parametrize("how", ["advanced-opt-out", "status-21610"])
def test_twilio_opt_out_signals_cover_every_holder(app: App, how: str) -> None:
    rt = app.rt
    ana = add(rt, "ana@example.com", NOW, SMS_MARKETING, phone=PHONE)
    ben = add(rt, "ben@example.com", NOW, SMS_MARKETING, phone=PHONE)
    app.tick(NOW)
    app.clock.now = NOW + timedelta(hours=1)
    if how == "advanced-opt-out":  # a keyword only Twilio knows: OptOutType says it
        app.sms("BASTA", STOP_SID, OptOutType="STOP")
        expected = STOP_SID
    else:
        message = next(m for m in messages(rt, ana) if m["channel"] == "sms")
        app.status(message, "failed", "21610")
        expected = f"{message['provider_message_id']}:failed"

    for cid in (ana, ben):
        [withdrawal] = channel_wide(rt, cid)
        assert (withdrawal["action"], withdrawal["source"]) == ("withdrawn", "twilio")
        assert withdrawal["evidence"]["source_event_id"] == expected
        assert withdrawal["evidence"]["raw"]["AccountSid"] == "AC" + "0" * 32
    before = handed_over(rt)
    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == steps(rt, ben)["second"] == NO_CONSENT
    assert handed_over(rt) == before


NOW_JOURNEY = """
id: reminder
name: Reminder
purpose: marketing
entry: { when: "attributes.industry == 'now'" }
steps:
  - { id: text, type: send, channel: sms, template: hot/trial-reminder }
"""
LATER_JOURNEY = """
id: later
name: Later reminder
purpose: marketing
entry: { when: "attributes.industry == 'later'" }
steps:
  - { id: pause, type: wait, duration: 1d }
  - { id: text, type: send, channel: sms, template: hot/trial-reminder }
"""


def test_twilio_refusing_a_send_with_21610_withdraws_every_holder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    chosen = project_settings(tmp_path / "project", '[providers]\nsms = "twilio"\n',
                              {"reminder": NOW_JOURNEY, "later": LATER_JOURNEY})
    with running() as api:
        sender = TwilioProvider("AC" + "0" * 32, TOKEN, chosen,
                                LoopbackTwilioHttpClient(api.url), sleep=lambda s: None)
        rt = applied_runtime(chosen, providers={"email": MemoryProvider(), "sms": sender})
        ana = _holder(rt, "ana@example.com", "now")  # texted at once
        ben = _holder(rt, "ben@example.com", "later")  # texted a day later
        api.answer(Answer(400, {"code": 21610, "status": 400,
                                "message": "Attempt to send to unsubscribed recipient"}))
        tick(rt, NOW)
        tick(rt, NOW + timedelta(days=1, minutes=1))

        assert steps(rt, ana) == {"text": ("failed", None)}
        assert steps(rt, ben) == {"text": NO_CONSENT}
        for cid in (ana, ben):
            [withdrawal] = channel_wide(rt, cid)
            assert (withdrawal["action"], withdrawal["address"]) == ("withdrawn", PHONE)
            assert "21610" in withdrawal["evidence"]["provider_error"]
        assert len(api.requests) == 1


def _holder(rt: Runtime, email: str, industry: str) -> int:
    """A contact holding PHONE, with SMS marketing consent."""
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, NOW, email=email, phone=PHONE,
                                   attributes={"industry": industry})
        row = contacts.find_contact(conn, str(cid))
        consent_ledger.record_consent(conn, rt.settings, NOW, contact=row, channel="sms",
                                      purpose="marketing", action="granted", source="test")
    return cid


# ---- START: only the channel's signed provider inbound ---------------------------------


def test_start_counts_only_from_the_signed_twilio_inbound(app: App) -> None:
    rt = app.rt
    ana = add(rt, "ana@example.com", NOW, (("email", "newsletter"), ("sms", "marketing")),
              phone=PHONE)
    ben = add(rt, "ben@example.com", NOW, SMS_MARKETING, phone=PHONE)
    app.tick(NOW)
    assert steps(rt, ana, "email")["hello"] == SENT

    app.clock.now = NOW + timedelta(hours=1)
    app.email("STOP", "Ana <ana@example.com>", "stop-1")
    app.sms("STOP", STOP_SID, OptOutType="STOP")
    cleo = add(rt, "cleo@example.com", NOW + timedelta(hours=1), (), phone=PHONE)
    assert [r["action"] for r in channel_wide(rt, ana, "email")] == ["withdrawn"]
    snapshot = consent_snapshot(rt)

    # anyone with the tracking key, saying START on either channel, changes no consent
    app.clock.now = NOW + timedelta(hours=2)
    posted = app.client.post("/events", headers=AUTH, json=[
        {"type": "reply.received", "email": "ana@example.com", "id": f"start-{channel}",
         "properties": {"text": "START", "channel": channel}} for channel in ("email", "sms")
    ] + [{"type": "reply.received", "email": "ben@example.com", "id": "start-forged",
          "properties": {"text": "START", "channel": "sms", "opt_out_type": "START",
                         "source": "twilio"}}])
    assert posted.status_code == 200 and posted.json()["accepted"] == 3
    # and the event's source cannot be chosen by the caller
    forged = app.client.post("/events", headers=AUTH, json={
        "type": "reply.received", "email": "ana@example.com", "source": "twilio",
        "properties": {"text": "START", "channel": "sms"}})
    assert forged.status_code == 422
    # nor by an email that claims to come from the contact
    app.email("START", "Ana <ana@example.com>", "start-1")
    assert consent_snapshot(rt) == snapshot
    starts = [e for e in events(rt) if (e["properties"] or {}).get("text") == "START"]
    assert len(starts) == 4 and {e["properties"]["intent"] for e in starts} == {"opt_in"}

    before_sms, before_email = handed_over(rt), handed_over(rt, "email")
    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == steps(rt, ben)["second"] == NO_CONSENT
    assert steps(rt, ana, "email")["article"] == NO_CONSENT
    assert (handed_over(rt), handed_over(rt, "email")) == (before_sms, before_email)

    # START signed by Twilio, from the number: SMS back for its holders, with its evidence
    app.clock.now = NOW + timedelta(days=1, hours=1)
    app.sms("START", START_SID, OptOutType="START")
    inbound = reply_event(rt, START_SID)
    for cid in (ana, ben, cleo):
        lifted = channel_wide(rt, cid)[-1]
        assert (lifted["action"], lifted["address"]) == ("granted", PHONE)
        assert lifted["evidence"]["event_id"] == inbound["id"]
        assert lifted["evidence"]["source_event_id"] == START_SID
        assert lifted["evidence"]["text"] == "START"
    assert len(channel_wide(rt, ana)) == 2  # recorded once (reply hook and OptOutType)

    app.tick(NOW + timedelta(days=2, minutes=1))
    assert steps(rt, ana)["third"] == steps(rt, ben)["third"] == SENT
    assert steps(rt, cleo)["second"] == NO_CONSENT  # lifted, but it never opted in
    assert steps(rt, ana, "email")["again"] == NO_CONSENT  # SMS START is not email
    assert len(handed_over(rt) - before_sms) == 2
    assert handed_over(rt, "email") == before_email


def test_a_signed_start_without_a_stop_records_nothing(app: App) -> None:
    ana = add(app.rt, "ana@example.com", NOW, SMS_MARKETING, phone=PHONE)
    app.sms("START", START_SID, OptOutType="START")
    assert channel_wide(app.rt, ana) == []


# ---- '*' is a withdrawal only -----------------------------------------------------------


def test_granting_every_purpose_at_once_is_refused_and_withdrawing_them_still_works(
        app: App) -> None:
    rt = app.rt
    ana = add(rt, "ana@example.com", NOW, (), phone=PHONE)
    code, out, err = app.cli("consent", "grant", "ana@example.com", "--channel", "sms",
                             "--purpose", "*", "--evidence", "wording_version=v1")
    assert (code, out) == (1, "")
    assert err.startswith("error: purpose '*' cannot be granted") and err.count("\n") == 1
    assert "marketing" in err and "newsletter" in err
    refused = app.client.post("/consent", headers=AUTH, json={
        "email": "ana@example.com", "phone": PHONE, "channels": ["sms"], "purposes": ["*"],
        "wording": "Everything"})
    assert refused.status_code == 422 and "'*'" in refused.text
    assert ledger(rt, ana) == []

    app.tick(NOW)
    assert steps(rt, ana) == {"first": NO_CONSENT}

    app.clock.now = NOW + timedelta(hours=1)  # one purpose, with its evidence: counts
    code, _, err = app.cli("consent", "grant", "ana@example.com", "--channel", "sms",
                           "--purpose", "marketing", "--evidence", "wording_version=v1")
    assert code == 0, err
    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == SENT

    app.clock.now = NOW + timedelta(days=1, hours=1)  # '*' withdraws the whole channel
    code, out, err = app.cli("consent", "withdraw", "ana@example.com", "--channel", "sms",
                             "--purpose", "*", "--source", "phone-call")
    assert code == 0 and "withdrawn sms/*" in out, err
    app.tick(NOW + timedelta(days=2, minutes=1))
    assert steps(rt, ana)["third"] == NO_CONSENT
    assert [(r["purpose"], r["action"]) for r in ledger(rt, ana)] == [
        ("marketing", "granted"), ("*", "withdrawn")]


# ---- the same rules on PostgreSQL ------------------------------------------------------


@pytest.mark.postgres
def test_the_number_rules_hold_on_postgresql(tmp_path: Path, pg_url: str,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    config = write_project(tmp_path / "project", journeys={"texts": TEXTS})
    settings = load_settings(config, env={"NURTURE_DATABASE_URL": pg_url,
                                          "NURTURE_SECRET_KEY": "test-secret-key",
                                          "NURTURE_PUBLIC_BASE_URL": BASE})
    rt = applied_runtime(settings, providers={"email": MemoryProvider(),
                                              "sms": MemoryProvider()})
    app = App(rt, monkeypatch, capsys)
    ana = add(rt, "ana@example.com", NOW, SMS_MARKETING, phone=PHONE)
    ben = add(rt, "ben@example.com", NOW, SMS_MARKETING, phone=PHONE)
    app.tick(NOW)
    app.clock.now = NOW + timedelta(hours=1)
    app.sms("STOP", STOP_SID, OptOutType="STOP")
    finn = add(rt, "finn@example.com", NOW + timedelta(hours=2), SMS_MARKETING, phone=PHONE)
    cleo = add(rt, "cleo@example.com", NOW + timedelta(hours=2), (), phone=PHONE)

    app.tick(NOW + timedelta(days=1, minutes=1))
    assert steps(rt, ana)["second"] == steps(rt, ben)["second"] == NO_CONSENT
    assert steps(rt, cleo) == {"first": NO_CONSENT}
    assert steps(rt, finn) == {"first": SENT}  # its own grant, after the STOP it inherited
    app.clock.now = NOW + timedelta(days=1, hours=1)
    app.sms("START", START_SID, OptOutType="START")
    app.tick(NOW + timedelta(days=2, minutes=1))
    assert steps(rt, ana)["third"] == steps(rt, ben)["third"] == SENT
    assert steps(rt, cleo)["second"] == NO_CONSENT
    rt.db.dispose()
