"""SMS limits at send time: the segment budget of the rendered text, legal hours in the
zones a number may be in, and a sender the recipient's carriers accept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.compliance.windows import next_opening_everywhere, phone_zones
from nurture.config.settings import LEGAL_PRESETS, load_settings
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.providers.memory import MemoryProvider
from tests.conftest import applied_runtime, write_project
from tests.fakes import add_contact, messages

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
TEXTS = """
id: texts
name: Texts
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: sms, template: hot/trial-reminder }
"""
SMS_CONSENT = (("sms", "newsletter"),)


def texted(make_runtime: Callable[..., Runtime], config: str) -> Runtime:
    return make_runtime(config, {"texts": TEXTS})


def with_sender(tmp_path: Path, sender: str, countries: str = "") -> Runtime:
    """A project whose [sender] sms_from is `sender` (and [sender.sms_from_countries])."""
    config = write_project(tmp_path / "project", "", {"texts": TEXTS})
    text = config.read_text().replace('sms_from = "+33700000001"', f'sms_from = "{sender}"')
    config.write_text(text + (f"[sender.sms_from_countries]\n{countries}\n" if countries else ""))
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
    return applied_runtime(settings, providers={"email": MemoryProvider(), "sms": MemoryProvider()})


def with_first_name(rt: Runtime, cid: int, name: str) -> None:
    from nurture.store import queries as store

    with rt.db.begin() as conn:
        store.update_contact(conn, cid, {"attributes": {"first_name": name}})


#: one segment in GSM-7 for Camille, three in UCS-2 for Jérôme (ô is not GSM-7)
LONG_FR = ("Bonjour{% if contact.first_name %} {{ contact.first_name }}{% endif %}, votre essai "
           "Acme Planning vous attend : créez votre premier planning en 10 min sur "
           "acme-planning.example/essai")


def test_a_rendered_sms_over_the_segment_budget_is_skipped_too_long(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime("[sms]\nmax_segments = 2\n", {"texts": TEXTS.replace(
        "hot/trial-reminder", "test/long")})
    for locale in ("fr", "en"):
        path = rt.settings.templates_path / "sms" / "test" / f"long.{locale}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LONG_FR)
    plain = add_contact(rt, NOW, "camille@example.com", phone="+33612345678", locale="fr",
                        consents=SMS_CONSENT)
    accented = add_contact(rt, NOW, "jerome@example.com", phone="+33612345679", locale="fr",
                           consents=SMS_CONSENT)
    with_first_name(rt, plain, "Camille")
    with_first_name(rt, accented, "Jérôme")  # ô is not GSM-7: the SMS switches to UCS-2

    tick(rt, NOW)

    [sent] = messages(rt, plain)
    [skipped] = messages(rt, accented)
    assert (sent["state"], sent["segments"]) == ("sent", 1)  # GSM-7: 160 a segment
    assert (skipped["state"], skipped["skip_reason"], skipped["segments"]) == (
        "skipped", "too_long", 3)
    assert "3 segments" in skipped["error"]
    assert [m.to for m in rt.providers["sms"].sent] == ["+33612345678"]  # type: ignore[attr-defined]


def test_a_us_number_without_a_zone_gets_legal_hours_in_its_own_zone(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = texted(make_runtime, '[send_windows.sms.countries]\nUS = "us_tcpa"\n'
                              '[sender.sms_from_countries]\nUS = "+14155550000"\n')
    cid = add_contact(rt, NOW, "dana@example.com", phone="+14155550123", consents=SMS_CONSENT)
    late = datetime(2026, 12, 8, 5, 5, tzinfo=UTC)  # 21:05 in California, 06:05 in Paris

    report = tick(rt, late)

    assert report.deferred == 1 and messages(rt, cid) == []
    morning = datetime(2026, 12, 8, 16, 0, tzinfo=UTC)  # 08:00 Pacific
    tick(rt, morning - timedelta(minutes=1))
    assert messages(rt, cid) == []
    tick(rt, morning)
    [sent] = messages(rt, cid)
    assert sent["state"] == "sent"


def test_the_window_must_hold_in_every_zone_a_number_may_be_in() -> None:
    zones = phone_zones("+18005550123")  # toll-free: anywhere the +1 plan reaches
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(zones)
    rules = [LEGAL_PRESETS["us_tcpa"]]
    opening = next_opening_everywhere(rules, ["America/New_York", "America/Los_Angeles"], "US",
                                      datetime(2026, 12, 8, 4, 0, tzinfo=UTC))
    # 08:00 in Los Angeles is 11:00 in New York: both open
    assert opening == datetime(2026, 12, 8, 16, 0, tzinfo=UTC)


def test_an_alphanumeric_sender_is_never_used_for_a_plus_one_number(tmp_path: Path) -> None:
    rt = with_sender(tmp_path, "AcmePlan")
    us = add_contact(rt, NOW, "dana@example.com", phone="+12125550123", consents=SMS_CONSENT)
    fr = add_contact(rt, NOW, "camille@example.com", phone="+33612345678", consents=SMS_CONSENT)

    tick(rt, datetime(2026, 12, 7, 15, 0, tzinfo=UTC))  # 10:00 in New York

    [refused] = messages(rt, us)
    [sent] = messages(rt, fr)
    assert (refused["state"], refused["skip_reason"]) == ("skipped", "no_sender")
    assert sent["state"] == "sent"
    sms: Any = rt.providers["sms"]
    assert [(m.to, m.sender) for m in sms.sent] == [("+33612345678", "AcmePlan")]


def test_a_per_country_sender_replaces_the_default(tmp_path: Path) -> None:
    rt = with_sender(tmp_path, "AcmePlan", 'US = "+12125550000"')
    add_contact(rt, NOW, "dana@example.com", phone="+12125550123", consents=SMS_CONSENT)

    tick(rt, datetime(2026, 12, 7, 15, 0, tzinfo=UTC))

    sms: Any = rt.providers["sms"]
    assert [(m.to, m.sender) for m in sms.sent] == [("+12125550123", "+12125550000")]


def test_a_us_number_gets_the_english_stop_mention_whatever_its_language(tmp_path: Path) -> None:
    rt = with_sender(tmp_path, "+33700000001", 'US = "+12125550000"')
    add_contact(rt, NOW, "dana@example.com", phone="+12125550123", locale="fr",
                consents=(("sms", "marketing"),))
    marketing = TEXTS.replace("purpose: newsletter", "purpose: marketing")
    (rt.settings.journeys_path / "texts.yaml").write_text(marketing)
    from tests.conftest import apply_journeys

    apply_journeys(rt)
    tick(rt, datetime(2026, 12, 7, 15, 0, tzinfo=UTC))  # 10:00 in New York

    sms: Any = rt.providers["sms"]
    [text] = [m.text for m in sms.sent]
    assert text.startswith("Bonjour") and rt.settings.sms.stop_mention["en"] in text
    assert rt.settings.sms.stop_mention["fr"] not in text
