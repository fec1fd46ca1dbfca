"""`/u/{token}` end to end: a real email in the outbox, its List-Unsubscribe URL, one-click
in both body encodings, the preference form, bad tokens, and GET never changing a thing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.services import contacts, gdpr
from nurture.store import database as db
from nurture.web.app import create_app
from tests.consent_support import (
    MONDAY,
    PURPOSES,
    add,
    build,
    consent_snapshot,
    csrf_of,
    ledger,
    messages,
    one_click_url,
    rows,
    sent_email,
)

ONE_CLICK_BODIES: dict[str, Callable[[TestClient, str], Any]] = {
    "multipart": lambda client, url: client.post(
        url, files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False),
    "urlencoded": lambda client, url: client.post(
        url, content=b"List-Unsubscribe=One-Click", follow_redirects=False,
        headers={"Content-Type": "application/x-www-form-urlencoded"}),
}


def client_for(rt: Runtime, now: datetime) -> TestClient:
    return TestClient(create_app(rt, clock=lambda: now), headers={"User-Agent": "MailClient/1.0"})


@pytest.fixture
def sent(tmp_path: Path) -> tuple[Runtime, int, str]:
    """A consenting contact who got the cold series' welcome email: (runtime, id, URL)."""
    rt = build(tmp_path / "project")
    cid = add(rt, "camille@example.com", MONDAY, attributes={"first_name": "Camille"})
    report = tick(rt, MONDAY)
    assert report.sent == 1
    return rt, cid, one_click_url(sent_email(rt, cid, "welcome"))


def test_sent_email_carries_one_click_headers_and_a_visible_link(sent):
    rt, cid, url = sent
    mail = sent_email(rt, cid)
    assert url.startswith("https://nurture.test/u/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = mail.get_body(("html",))
    assert html is not None and url in html.get_content()  # the visible link in the body


@pytest.mark.parametrize("encoding", sorted(ONE_CLICK_BODIES))
def test_one_click_withdraws_at_once_and_the_next_tick_sends_nothing(sent, encoding):
    rt, cid, url = sent
    public_id = messages(rt, cid)[0]["public_id"]
    with client_for(rt, MONDAY + timedelta(hours=1)) as client:
        response = ONE_CLICK_BODIES[encoding](client, url)
        assert response.status_code == 200
        assert "set-cookie" not in response.headers and "location" not in response.headers
        assert "unsubscribed" in response.text
        before = ledger(rt, cid)
        again = ONE_CLICK_BODIES[encoding](client, url)  # mail clients repeat it
        assert again.status_code == 200 and ledger(rt, cid) == before
    withdrawal = before[-1]
    assert (withdrawal["channel"], withdrawal["purpose"], withdrawal["action"],
            withdrawal["source"]) == ("email", "newsletter", "withdrawn", "one-click")
    evidence = withdrawal["evidence"]
    assert evidence["message"] == public_id
    assert evidence["ip"] == "testclient" and evidence["user_agent"] == "MailClient/1.0"
    assert "One-Click" in evidence["body"] and evidence["content_type"].startswith(
        "multipart/form-data" if encoding == "multipart" else "application/x-www-form-urlencoded")
    unsubscribed = rows(rt, db.event_t, contact_id=cid, type="email.unsubscribed")
    assert len(unsubscribed) == 1 and unsubscribed[0]["message_id"] == messages(rt, cid)[0]["id"]

    tick(rt, MONDAY + timedelta(days=3, minutes=1))  # the series' second email is due
    later = messages(rt, cid)[1:]
    assert [(m["step_id"], m["state"], m["skip_reason"]) for m in later] == [
        ("article", "skipped", "no_consent")]
    assert len(list((rt.settings.outbox_path / "email").glob("*.eml"))) == 1


def _bad_tokens(url: str) -> dict[str, str]:
    base, token = url.rsplit("/", 1)
    public_id, _, signature = token.partition(".")
    # change a character inside the signature: the last base64 character may carry only
    # padding bits, so changing it could leave the decoded signature the same
    flipped = signature[:-5] + ("A" if signature[-5] != "A" else "B") + signature[-4:]
    return {
        "tampered signature": f"{base}/{public_id}.{flipped}",
        "truncated": f"{base}/{token[:-4]}",
        "no signature": f"{base}/{public_id}",
        "other id": f"{base}/{'0' * len(public_id)}.{signature}",
    }


def test_tampered_or_truncated_tokens_get_4xx_and_change_nothing(sent):
    rt, _cid, url = sent
    before = consent_snapshot(rt)
    with client_for(rt, MONDAY) as client:
        for name, bad in _bad_tokens(url).items():
            for response in (client.get(bad), ONE_CLICK_BODIES["multipart"](client, bad),
                             ONE_CLICK_BODIES["urlencoded"](client, bad)):
                assert response.status_code == 400, name
                assert "This link does not work" in response.text
    assert consent_snapshot(rt) == before


def test_get_shows_the_preferences_and_never_changes_state(sent):
    rt, cid, url = sent
    before = consent_snapshot(rt), rows(rt, db.event_t)
    with client_for(rt, MONDAY) as client:
        for _ in range(3):
            page = client.get(url)
            assert page.status_code == 200
    assert (consent_snapshot(rt), rows(rt, db.event_t)) == before
    html = page.text
    assert '<html lang="en">' in html and "c••••••@example.com" in html
    assert 'value="email:newsletter"' in html and "checked" in html.split(
        'value="email:newsletter"')[1].split(">")[0]
    assert "Newsletter and educational content" in html  # the purpose's description
    assert '<label for="c-email-newsletter">' in html
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "set-cookie" not in page.headers


def test_the_page_speaks_the_contact_language(tmp_path):
    rt = build(tmp_path / "p", config_extra=PURPOSES)
    cid = add(rt, "lea@example.fr", MONDAY, locale="fr")
    tick(rt, MONDAY)
    with client_for(rt, MONDAY) as client:
        page = client.get(one_click_url(sent_email(rt, cid)))
    assert '<html lang="fr">' in page.text and "Vos préférences" in page.text
    assert "Guides et lettre d&#39;information" in page.text


def test_preference_form_needs_its_csrf_token(sent):
    rt, _cid, url = sent
    before = consent_snapshot(rt)
    with client_for(rt, MONDAY) as client:
        for form in ({"action": "unsubscribe-all"},
                     {"action": "unsubscribe-all", "csrf": "forged"},
                     {"consent": "email:marketing", "csrf": ""}):
            response = client.post(url, data=form)
            assert response.status_code == 400 and "nothing was changed" in response.text
    assert consent_snapshot(rt) == before


def test_preference_form_unticks_and_ticks_purposes_with_evidence(sent):
    rt, cid, url = sent
    with client_for(rt, MONDAY) as client:
        csrf = csrf_of(client.get(url).text)
        # confirmations are not something one subscribes to: that tick is ignored
        response = client.post(url, data={"csrf": csrf, "action": "save",
                                           "consent": ["email:marketing", "email:transactional"]})
    assert response.status_code == 200 and "Your choices are saved." in response.text
    assert len(ledger(rt, cid)) == 3
    newsletter, marketing = ledger(rt, cid)[-2:]
    assert (newsletter["purpose"], newsletter["action"], newsletter["source"]) == (
        "newsletter", "withdrawn", "preference-page")
    assert (marketing["purpose"], marketing["action"], marketing["source"]) == (
        "marketing", "granted", "preference-page")
    assert marketing["evidence"]["wording"] == "Offers, webinars, case studies"
    for record in (newsletter, marketing):
        assert record["evidence"]["message"] == messages(rt, cid)[0]["public_id"]
        assert record["evidence"]["user_agent"] == "MailClient/1.0"
        assert record["evidence"]["form"] == {
            "consent": ["email:marketing", "email:transactional"], "action": "save"}


def test_unsubscribe_from_everything_covers_every_channel(tmp_path):
    rt = build(tmp_path / "p")
    cid = add(rt, "sam@example.com", MONDAY, phone="+33612345678",
              consents=(("email", "newsletter"), ("sms", "marketing")))
    tick(rt, MONDAY)
    url = one_click_url(sent_email(rt, cid))
    with client_for(rt, MONDAY) as client:
        page = client.get(url).text
        assert 'value="sms:marketing"' in page
        # a line of another channel that is not granted cannot be ticked from an email link
        assert "disabled" in page.split('value="sms:newsletter"')[1].split(">")[0]
        client.post(url, data={"csrf": csrf_of(page), "consent": ["sms:newsletter"],
                               "action": "save"})
        assert [r["purpose"] for r in ledger(rt, cid) if r["source"] == "preference-page"] == [
            "newsletter", "marketing"]  # unticked ones withdrawn; sms:newsletter not granted
        response = client.post(url, data={"csrf": csrf_of(page), "action": "unsubscribe-all"})
    assert response.status_code == 200
    wide = {(r["channel"], r["purpose"]) for r in ledger(rt, cid) if r["purpose"] == "*"}
    assert wide == {("email", "*"), ("sms", "*")}
    assert "unsubscribed" in response.text


def test_links_of_an_erased_contact_answer_gracefully(sent):
    rt, cid, url = sent
    with rt.db.begin() as conn:
        gdpr.forget_contact(conn, contacts.find_contact(conn, str(cid)), MONDAY)
    with client_for(rt, MONDAY) as client:
        page = client.get(url)
        assert page.status_code == 410 and "Nothing left to manage" in page.text
        one_click = ONE_CLICK_BODIES["urlencoded"](client, url)
        assert one_click.status_code == 200  # the address is suppressed: nothing will be sent
    assert rows(rt, db.consent_record) == []

