"""Legal presets through the engine: French commercial SMS hours (08:00-20:00 Monday to
Saturday, never on French public holidays), US TCPA hours, the STOP mention and the
sender's identity in every message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nurture.compliance.windows import next_opening
from nurture.config.settings import LEGAL_PRESETS
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import ledger
from nurture.services import contacts
from nurture.store import database as db
from tests.consent_support import rows

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

PRESETS = """
[send_windows.sms.countries]
FR = "fr_sms"
US = "us_tcpa"
"""

PROMO = """
id: promo
name: Promo SMS
purpose: marketing
entry: { when: "stage == 'lead'" }
steps:
  - { id: text, type: send, channel: sms, template: TEMPLATE }
"""

TEMPLATES = {
    # names the advertiser: no prefix needed
    "sms/test/named.fr.txt": "Bonjour, votre essai Acme Planning vous attend.",
    "sms/test/named.en.txt": "Hi, your Acme Planning trial is waiting.",
    # does not: the company name is prefixed
    "sms/test/anonymous.fr.txt": "Bonjour, -20 % cette semaine sur nos plannings.",
    "sms/test/anonymous.en.txt": "Hi, 20% off schedules this week.",
}


def runtime(make_runtime: Any, template: str = "hot/trial-reminder",
            purpose: str = "marketing") -> Runtime:
    rt: Runtime = make_runtime(PRESETS, {"promo": PROMO.replace("TEMPLATE", template)
                                         .replace("marketing", purpose)})
    for name, text in TEMPLATES.items():
        path = rt.settings.templates_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return rt


def add(rt: Runtime, phone: str, now: datetime, purpose: str = "marketing",
        **fields: Any) -> int:
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, now, email=None, phone=phone, **fields)
        contact = contacts.find_contact(conn, str(cid))
        ledger.record_consent(conn, rt.settings, now, contact=contact, channel="sms",
                                purpose=purpose, action="granted", source="test")
    return cid


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def next_run(rt: Runtime, cid: int) -> datetime:
    [row] = rows(rt, db.enrollment, contact_id=cid)
    return row["next_run_at"]


@pytest.mark.parametrize(("due", "opens"), [
    # Sunday 10:00 → Monday 08:00
    (local(PARIS, 2026, 12, 6, 10, 0), local(PARIS, 2026, 12, 7, 8, 0)),
    # Saturday 20:30 (after hours) → Monday 08:00
    (local(PARIS, 2026, 12, 5, 20, 30), local(PARIS, 2026, 12, 7, 8, 0)),
    # Monday 07:15 → 08:00 the same day
    (local(PARIS, 2026, 12, 7, 7, 15), local(PARIS, 2026, 12, 7, 8, 0)),
    # Bastille Day (Tuesday 14 July) → Wednesday 08:00
    (local(PARIS, 2026, 7, 14, 10, 0), local(PARIS, 2026, 7, 15, 8, 0)),
    # Easter Sunday, then Easter Monday (a holiday) → Tuesday 08:00
    (local(PARIS, 2026, 4, 5, 11, 0), local(PARIS, 2026, 4, 7, 8, 0)),
])
def test_french_sms_waits_for_the_next_open_day(make_runtime, due, opens):
    rt = runtime(make_runtime)
    cid = add(rt, "+33612345678", due, locale="fr")  # country FR from the number
    report = tick(rt, due)
    assert report.deferred == 1 and rt.providers["sms"].sent == []  # type: ignore[attr-defined]
    assert next_run(rt, cid) == opens
    tick(rt, opens - timedelta(minutes=1))
    assert rt.providers["sms"].sent == []  # type: ignore[attr-defined]
    tick(rt, opens)
    [sms] = rt.providers["sms"].sent  # type: ignore[attr-defined]
    assert sms.to == "+33612345678"
    assert [m["created_at"] for m in rows(rt, db.message, contact_id=cid)] == [opens]


def test_the_french_preset_matches_cnil_practice():
    rule = LEGAL_PRESETS["fr_sms"]
    assert (rule.days, rule.start, rule.end, rule.skip_holidays) == (
        ["mon", "tue", "wed", "thu", "fri", "sat"], "08:00", "20:00", True)
    # Armistice Day 2026 is a Wednesday; All Saints' Day a Sunday
    assert next_opening([rule], "Europe/Paris", "FR", local(PARIS, 2026, 11, 11, 9, 0)) == \
        local(PARIS, 2026, 11, 12, 8, 0)
    # another country's holidays do not close the French window
    assert next_opening([rule], "Europe/Paris", "DE", local(PARIS, 2026, 7, 14, 9, 0)) == \
        local(PARIS, 2026, 7, 14, 9, 0)


@pytest.mark.parametrize(("due", "opens"), [
    (local(NEW_YORK, 2026, 12, 7, 7, 30), local(NEW_YORK, 2026, 12, 7, 8, 0)),
    (local(NEW_YORK, 2026, 12, 7, 21, 0), local(NEW_YORK, 2026, 12, 8, 8, 0)),
    # TCPA hours apply every day, Sunday included
    (local(NEW_YORK, 2026, 12, 6, 12, 0), local(NEW_YORK, 2026, 12, 6, 12, 0)),
])
def test_us_sms_follows_tcpa_hours_in_the_recipient_time_zone(make_runtime, due, opens):
    rt = runtime(make_runtime)
    cid = add(rt, "+12125550123", due, timezone="America/New_York", locale="en")
    tick(rt, due)
    if opens > due:
        assert next_run(rt, cid) == opens
        tick(rt, opens)
    [message] = rows(rt, db.message, contact_id=cid)
    assert message["state"] == "sent" and message["created_at"] == opens


MONDAY_NOON = local(PARIS, 2026, 12, 7, 12, 0)


@pytest.mark.parametrize(("locale", "template", "purpose", "starts", "ends"), [
    ("fr", "test/anonymous", "marketing", "Acme Planning SAS: Bonjour", "STOP au 36111"),
    ("en", "test/anonymous", "marketing", "Acme Planning SAS: Hi", "Reply STOP to opt out"),
    ("fr", "test/named", "marketing", "Bonjour, votre essai Acme Planning", "STOP au 36111"),
    # not marketing: no STOP mention, but the sender is still named
    ("fr", "test/anonymous", "transactional", "Acme Planning SAS: Bonjour", "plannings."),
])
def test_every_sms_names_the_sender_and_marketing_ones_offer_stop(
        make_runtime, locale, template, purpose, starts, ends):
    rt = runtime(make_runtime, template, purpose)
    cid = add(rt, "+33612345678", MONDAY_NOON, purpose=purpose, locale=locale)
    tick(rt, MONDAY_NOON)
    [sms] = rt.providers["sms"].sent  # type: ignore[attr-defined]
    assert sms.text.startswith(starts) and sms.text.endswith(ends)
    assert sms.text.count("Acme Planning") == 1
    [message] = rows(rt, db.message, contact_id=cid)
    assert message["body_text"] == sms.text and message["segments"] == 1


def test_every_email_names_the_sender_in_its_footer(make_runtime, tmp_path: Path):
    rt = make_runtime("", copy_journeys=True)
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, MONDAY_NOON, email="a@example.com",
                                   locale="fr")
        contact = contacts.find_contact(conn, str(cid))
        ledger.record_consent(conn, rt.settings, MONDAY_NOON, contact=contact,
                                channel="email", purpose="newsletter", action="granted",
                                source="test")
    tick(rt, MONDAY_NOON)
    [email] = rt.providers["email"].sent  # type: ignore[attr-defined]
    sender = rt.settings.sender
    assert sender.company in email.html and sender.postal_address in email.html.replace(
        "&#39;", "'")
    assert sender.company in email.text and email.sender == sender.email_from
