"""`POST /consent` and double opt-in: API key, evidence, hygiene, suppressed addresses, and
no send before confirmation."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.services import contacts, gdpr
from nurture.store import database as db
from nurture.web.app import create_app
from tests.consent_support import (
    API_KEY,
    MONDAY,
    add,
    consent_snapshot,
    eml,
    ledger,
    messages,
    rows,
    sent_email,
)
from tests.consent_support import build as build_project

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CONFIRM_LINK = r"https://nurture\.test/consent/confirm/[\w.-]+"
FORM = {
    "email": "Camille.Martin@Example.com",
    "locale": "fr",
    "attributes": {"first_name": "Camille"},
    "channels": ["email"],
    "purposes": ["newsletter"],
    "source": "website",
    "form_id": "newsletter-footer",
    "wording": "Je souhaite recevoir les guides et la lettre d'information d'Acme Planning.",
    "wording_version": "v3",
}


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return build_project(tmp_path / "project")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def client_for(rt: Runtime, clock: Clock) -> TestClient:
    return TestClient(create_app(rt, clock=clock), headers={"User-Agent": "FormRelay/2.0"})


def test_api_key_is_required(rt):
    with client_for(rt, Clock(MONDAY)) as client:
        assert client.post("/consent", json=FORM).status_code == 401
        wrong = client.post("/consent", json=FORM, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert client.post("/consent", json={}, headers={"X-API-Key": "x"}).status_code == 401
    assert rows(rt, db.contact) == []


def test_single_opt_in_records_the_evidence(rt):
    with client_for(rt, Clock(MONDAY)) as client:
        response = client.post("/consent", headers=AUTH,
                               json={**FORM, "ip": "203.0.113.7", "user_agent": "Firefox/130"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "granted" and body["confirmation_message"] is None
    [record] = ledger(rt, body["contact_id"])
    assert (record["channel"], record["purpose"], record["action"], record["source"],
            record["address"]) == ("email", "newsletter", "granted", "website",
                                   "camille.martin@example.com")
    evidence = record["evidence"]
    assert evidence["wording"] == FORM["wording"] and evidence["wording_version"] == "v3"
    assert evidence["form_id"] == "newsletter-footer" and evidence["controller"]
    assert evidence["ip"] == "203.0.113.7" and evidence["user_agent"] == "Firefox/130"
    assert evidence["received_from"] == "testclient"
    assert evidence["purposes"] == ["newsletter"] and evidence["channels"] == ["email"]


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"email": "not-an-address"}, 422, "refused (syntax)"),
    ({"email": "someone@mailinator.com"}, 422, "disposable"),
    ({"purposes": ["spam"]}, 422, "unknown purpose"),
    ({"channels": ["sms"]}, 422, "needs a phone"),
    ({"channels": ["fax"]}, 422, ""),
    ({"wording": ""}, 422, ""),
    ({"surprise": True}, 422, ""),
    ({"double_opt_in": True, "channels": ["email", "sms"], "phone": "+33612345678"}, 422,
     "double opt-in"),
])
def test_bad_requests_are_refused_and_change_nothing(rt, change, status, message):
    with client_for(rt, Clock(MONDAY)) as client:
        response = client.post("/consent", headers=AUTH, json={**FORM, **change})
    assert response.status_code == status
    assert message in str(response.json()["detail"])
    assert rows(rt, db.contact) == [] and consent_snapshot(rt) == ([], [])


def test_double_opt_in_sends_nothing_before_confirmation(rt):
    clock = Clock(MONDAY)
    with client_for(rt, clock) as client:
        response = client.post("/consent", headers=AUTH, json={**FORM, "double_opt_in": True})
        assert response.status_code == 201, response.text
        body = response.json()
        cid = body["contact_id"]
        assert body["status"] == "pending"
        confirmation = eml(rt, body["confirmation_message"])
        assert confirmation["To"] == "camille.martin@example.com"
        assert "List-Unsubscribe" not in confirmation  # transactional
        text = confirmation.get_body(("plain",)).get_content()
        link = re.search(CONFIRM_LINK, text).group(0)

        tick(rt, MONDAY + timedelta(minutes=1))  # the series starts: it waits for the answer
        assert [(m["template"], m["state"]) for m in messages(rt, cid)] == [
            ("consent/confirm", "sent")]

        before = consent_snapshot(rt)
        page = client.get(link)
        assert page.status_code == 200 and "Confirmez votre inscription" in page.text
        assert consent_snapshot(rt) == before  # GET shows a button, changes nothing

        clock.now = MONDAY + timedelta(hours=2)
        done = client.post(link, headers={"User-Agent": "Thunderbird/128"})
        assert done.status_code == 200 and "confirmée" in done.text
        again = client.post(link)
        assert again.status_code == 200 and "Rien à confirmer" in again.text

    pending, confirmed = ledger(rt, cid)
    assert (pending["action"], confirmed["action"]) == ("pending", "confirmed")
    assert pending["evidence"]["wording"] == FORM["wording"]
    assert pending["evidence"]["user_agent"] == "FormRelay/2.0"
    assert confirmed["evidence"]["confirms"] == pending["id"]
    assert confirmed["evidence"]["request"] == pending["evidence"]["request"]
    assert confirmed["evidence"]["user_agent"] == "Thunderbird/128"
    assert confirmed["recorded_at"] == MONDAY + timedelta(hours=2)

    tick(rt, MONDAY + timedelta(hours=2))  # confirmed: the waiting welcome goes out
    assert [(m["template"], m["state"]) for m in messages(rt, cid)][-1] == (
        "cold/welcome-guide", "sent")
    tick(rt, MONDAY + timedelta(days=3, hours=2))  # and the series goes on
    assert sent_email(rt, cid, "article")["To"] == "camille.martin@example.com"


def test_confirmation_links_are_signed_and_expire(rt):
    with client_for(rt, Clock(MONDAY)) as client:
        body = client.post("/consent", headers=AUTH,
                           json={**FORM, "double_opt_in": True}).json()
        text = eml(rt, body["confirmation_message"]).get_body(("plain",)).get_content()
        link = re.search(CONFIRM_LINK, text).group(0)
        before = consent_snapshot(rt)
        # a changed character well inside the signature (the last base64 character may only
        # carry padding bits, so changing it can leave the signature the same)
        swapped = "A" if link[-5] != "A" else "B"
        for bad in (link[:-3], link[:-5] + swapped + link[-4:]):
            assert client.post(bad).status_code == 400
            assert client.get(bad).status_code == 400
        with freeze_time(datetime.now() + timedelta(days=15)):
            expired = client.post(link)
        assert expired.status_code == 400 and "has expired" in expired.text
    assert consent_snapshot(rt) == before


def _forget(rt: Runtime, email: str) -> None:
    with rt.db.begin() as conn:
        gdpr.forget_contact(conn, contacts.find_contact(conn, email), MONDAY)


def test_a_forgotten_address_is_refused(rt):
    cid = add(rt, "camille.martin@example.com", MONDAY, phone="+33612345678",
              consents=(("email", "newsletter"), ("sms", "marketing")))
    assert ledger(rt, cid)
    _forget(rt, "camille.martin@example.com")
    with client_for(rt, Clock(MONDAY)) as client:
        for change in ({}, {"double_opt_in": True},
                       {"email": None, "phone": "06 12 34 56 78", "channels": ["sms"]}):
            response = client.post("/consent", headers=AUTH, json={**FORM, **change})
            assert response.status_code == 409, change
            assert "suppression list" in response.json()["detail"]
    assert rows(rt, db.contact) == [] and consent_snapshot(rt) == ([], [])
    assert not list((rt.settings.outbox_path / "email").glob("*.eml"))


def test_server_without_api_key_refuses(tmp_path: Path):
    rt = build_project(tmp_path / "p")
    settings: Any = rt.settings.model_copy(update={"api_key": ""})
    rt.settings = settings
    with client_for(rt, Clock(MONDAY)) as client:
        assert client.post("/consent", headers=AUTH, json=FORM).status_code == 503


def test_double_opt_in_never_suspends_consent_already_given(rt):
    cid = add(rt, "camille.martin@example.com", MONDAY)  # newsletter granted at sign-up
    with client_for(rt, Clock(MONDAY)) as client:
        body = client.post("/consent", headers=AUTH, json={
            **FORM, "double_opt_in": True, "purposes": ["newsletter", "marketing"]}).json()
        assert body["status"] == "pending" and len(body["records"]) == 1
        again = client.post("/consent", headers=AUTH, json={**FORM, "double_opt_in": True})
        assert again.json() == {"contact_id": cid, "status": "granted", "records": [],
                                "confirmation_message": None}
    states = {(r["purpose"], r["action"]) for r in rows(rt, db.consent_state, contact_id=cid)}
    assert states == {("newsletter", "granted"), ("marketing", "pending")}
    assert len([m for m in messages(rt, cid) if m["template"] == "consent/confirm"]) == 1


def test_an_erased_person_s_old_link_never_confirms_someone_else(rt):
    with client_for(rt, Clock(MONDAY)) as client:
        first = client.post("/consent", headers=AUTH, json={**FORM, "double_opt_in": True}).json()
        text = eml(rt, first["confirmation_message"]).get_body(("plain",)).get_content()
        old_link = re.search(CONFIRM_LINK, text).group(0)
        _forget(rt, "camille.martin@example.com")
        other = client.post("/consent", headers=AUTH, json={
            **FORM, "email": "sam@example.com", "double_opt_in": True}).json()
        assert other["records"] == first["records"]  # SQLite reuses the erased ids
        assert client.get(old_link).status_code == 410
        assert client.post(old_link).status_code == 410
    assert [r["action"] for r in ledger(rt, other["contact_id"])] == ["pending"]
