"""The tick over simulated days: timing, waits, windows, caps, consent, isolation of failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ProviderError
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.base import OutgoingMessage, SendResult
from nurture.services import contacts
from nurture.store import queries as store
from tests.fakes import messages

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # 10:00 in Paris

ONBOARDING = """
id: onboarding
name: Onboarding
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 2d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
  - { id: pause-2, type: wait, duration: 4d }
  - { id: reminder, type: send, channel: sms, template: hot/trial-reminder }
"""

WINDOWS = """
[send_windows.email.default]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"
[send_windows.sms.countries]
FR = "fr_sms"
"""


def add(rt: Runtime, email: str, now: datetime, consents: tuple[tuple[str, str], ...] | None = None,
        **fields: Any) -> int:
    """A contact with consent for the newsletter by email (and SMS when it has a phone)."""
    if consents is None:
        consents = (("email", "newsletter"),) + ((("sms", "newsletter"),) if "phone" in fields
                                                 else ())
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, now, email=email, **fields)
        contact = contacts.find_contact(conn, str(cid))
        for channel, purpose in consents:
            ledger.record_consent(conn, rt.settings, now, contact=contact, channel=channel,
                                    purpose=purpose, action="granted", source="test")
    return cid


def enrollments(rt: Runtime, cid: int) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return store.contact_enrollments(conn, cid)


def run_hours(rt: Runtime, start: datetime, hours: int) -> None:
    for hour in range(hours + 1):
        now = start + timedelta(hours=hour)
        with freeze_time(now):
            tick(rt, now)


def test_contact_walks_the_journey_at_the_right_times(make_runtime):
    rt = make_runtime(WINDOWS, {"onboarding": ONBOARDING})
    cid = add(rt, "camille@example.com", MONDAY, phone="+33612345678", locale="fr")
    run_hours(rt, MONDAY, 24 * 7)
    sent = [(m["step_id"], m["created_at"]) for m in messages(rt, cid)]
    assert sent == [
        ("welcome", MONDAY),
        ("article", MONDAY + timedelta(days=2)),
        # due Sunday 10:00 Paris: French SMS preset defers it to Monday 08:00 Paris
        ("reminder", datetime(2026, 12, 14, 7, 0, tzinfo=UTC)),
    ]
    assert all(m["state"] == "sent" for m in messages(rt, cid))
    email, sms = rt.providers["email"].sent, rt.providers["sms"].sent  # type: ignore[attr-defined]
    assert [m.to for m in email] == ["camille@example.com"] * 2
    assert "Camille" not in email[0].subject or email[0].subject  # rendered, localized
    assert email[0].headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email[0].headers["List-Unsubscribe"].startswith("<https://nurture.test/u/")
    assert sms[0].to == "+33612345678" and "STOP" in sms[0].text
    assert enrollments(rt, cid)[0]["state"] == "completed"


def test_send_window_follows_the_contact_time_zone(make_runtime):
    rt = make_runtime(WINDOWS, {"onboarding": ONBOARDING})
    # 09:00 UTC is 04:00 in New York: the welcome email waits for 09:00 there.
    cid = add(rt, "jo@example.com", MONDAY, timezone="America/New_York")
    tick(rt, MONDAY)
    assert messages(rt, cid) == []
    assert enrollments(rt, cid)[0]["next_run_at"] == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    tick(rt, datetime(2026, 12, 7, 14, 0, tzinfo=UTC))
    assert [m["step_id"] for m in messages(rt, cid)] == ["welcome"]


CAPS = """
[[frequency_caps]]
channel = "email"
max = 2
per = "7d"
[[frequency_caps]]
channel = "any"
max = 3
per = "7d"
"""

BURST = """
id: burst
name: Burst
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: e1, type: send, channel: email, template: cold/welcome-guide }
  - { id: e2, type: send, channel: email, template: cold/article-best-practices }
  - { id: e3, type: send, channel: email, template: cold/guide-reminder }
  - { id: s1, type: send, channel: sms, template: hot/trial-reminder }
  - { id: s2, type: send, channel: sms, template: prospect/call-me }
  - { id: w, type: wait, duration: 8d }
  - { id: e4, type: send, channel: email, template: cold/newsletter-digest }
"""


def test_frequency_cap_is_one_budget_across_channels(make_runtime):
    rt = make_runtime(CAPS, {"burst": BURST})
    cid = add(rt, "kim@example.com", MONDAY, phone="+33612345679")
    tick(rt, MONDAY)
    got = [(m["step_id"], m["state"], m["skip_reason"]) for m in messages(rt, cid)]
    assert got == [
        ("e1", "sent", None), ("e2", "sent", None),
        ("e3", "skipped", "frequency_cap"),        # email cap: 2 a week
        ("s1", "sent", None),
        ("s2", "skipped", "frequency_cap"),        # any channel: 3 a week in all
    ]
    tick(rt, MONDAY + timedelta(days=8))           # the window has rolled on
    assert messages(rt, cid)[-1]["step_id"] == "e4"
    assert messages(rt, cid)[-1]["state"] == "sent"


def test_no_consent_means_a_recorded_skip_and_nothing_sent(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    cid = add(rt, "nobody@example.com", MONDAY, consents=(("email", "marketing"),))
    tick(rt, MONDAY)
    [message] = messages(rt, cid)
    assert (message["state"], message["skip_reason"]) == ("skipped", "no_consent")
    assert "newsletter" in message["error"]
    assert rt.providers["email"].sent == []  # type: ignore[attr-defined]


def test_withdrawal_between_steps_stops_later_sends(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    cid = add(rt, "ana@example.com", MONDAY)
    tick(rt, MONDAY)
    with rt.db.begin() as conn:
        contact = contacts.find_contact(conn, "ana@example.com")
        ledger.record_consent(conn, rt.settings, MONDAY + timedelta(days=1), contact=contact,
                                channel="email", purpose="newsletter", action="withdrawn",
                                source="preference-page")
    tick(rt, MONDAY + timedelta(days=2))
    states = [(m["step_id"], m["state"], m["skip_reason"]) for m in messages(rt, cid)]
    assert states == [("welcome", "sent", None), ("article", "skipped", "no_consent")]
    assert len(rt.providers["email"].sent) == 1  # type: ignore[attr-defined]


def newsletter_consent(rt: Runtime, cid: int, action: str, at: datetime) -> None:
    with rt.db.begin() as conn:
        ledger.record_consent(conn, rt.settings, at, contact=contacts.find_contact(
            conn, str(cid)), channel="email", purpose="newsletter", action=action,
            source="double-opt-in form")


def test_pending_double_opt_in_waits_for_the_confirmation(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    cid = add(rt, "p@example.com", MONDAY, consents=())
    newsletter_consent(rt, cid, "pending", MONDAY)
    tick(rt, MONDAY)
    assert messages(rt, cid) == []                       # not sent, not lost: deferred
    assert enrollments(rt, cid)[0]["next_run_at"] == MONDAY + timedelta(hours=1)
    confirmed = MONDAY + timedelta(minutes=30)
    newsletter_consent(rt, cid, "confirmed", confirmed)
    tick(rt, MONDAY + timedelta(hours=1))
    assert [(m["step_id"], m["state"]) for m in messages(rt, cid)] == [("welcome", "sent")]


def test_unconfirmed_double_opt_in_is_skipped_after_the_wait(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    cid = add(rt, "p@example.com", MONDAY, consents=())
    newsletter_consent(rt, cid, "pending", MONDAY)
    tick(rt, MONDAY)
    tick(rt, MONDAY + timedelta(days=15))
    assert messages(rt, cid)[0]["skip_reason"] == "no_consent"


BAD_TEMPLATE_JOURNEY = """
id: sizing
name: Sizing
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: ratio, type: send, channel: email, template: bad/ratio }
  - { id: after, type: send, channel: email, template: cold/welcome-guide }
"""


def test_a_template_error_for_one_contact_does_not_stop_the_others(make_runtime, tmp_path):
    rt = make_runtime("", {"sizing": BAD_TEMPLATE_JOURNEY})
    folder = rt.settings.templates_path / "email" / "bad"
    folder.mkdir()
    (folder / "ratio.en.subject").write_text("{{ 100 // contact.company_size }} per team")
    (folder / "ratio.en.html").write_text(
        '{% extends "layouts/email.en.html" %}{% block content %}x{% endblock %}')
    broken = add(rt, "zero@example.com", MONDAY, attributes={"company_size": 0})
    fine = add(rt, "ten@example.com", MONDAY, attributes={"company_size": 10})
    tick(rt, MONDAY)
    [blocked] = enrollments(rt, broken)
    assert (blocked["state"], blocked["step_id"]) == ("blocked", "ratio")
    assert "ZeroDivisionError" in blocked["last_error"]
    assert messages(rt, broken)[0]["skip_reason"] == "render_error"
    assert [m["state"] for m in messages(rt, fine)] == ["sent", "sent"]


def test_an_enrollment_on_a_removed_step_is_blocked_alone(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    lost = add(rt, "lost@example.com", MONDAY)
    ok = add(rt, "ok@example.com", MONDAY)
    tick(rt, MONDAY)
    with rt.db.begin() as conn:
        [row] = store.contact_enrollments(conn, lost)
        store.update_enrollment(conn, row["id"], {"step_id": "gone"})
    tick(rt, MONDAY + timedelta(days=2))
    assert enrollments(rt, lost)[0]["state"] == "blocked"
    assert "'gone' no longer exists" in enrollments(rt, lost)[0]["last_error"]
    assert [m["step_id"] for m in messages(rt, ok)] == ["welcome", "article"]


FLOW = """
id: flow
name: Flow
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: ask, type: wait_for, event: content.downloaded, timeout: 3d, on_event: thanks,
      on_timeout: nudge }
  - { id: nudge, type: send, channel: email, template: cold/guide-reminder }
  - { id: tag, type: set, attribute: nudged, value: true }
  - { id: route, type: branch, cases: [{ if: "attributes.nudged == true", goto: leave }] }
  - { id: thanks, type: send, channel: email, template: cold/newsletter-digest }
  - { id: leave, type: move_to, journey: after }
"""

AFTER = """
id: after
name: After
purpose: marketing
entry: { event: x.never }
steps:
  - { id: only, type: exit, reason: done }
"""


def test_wait_for_event_resumes_at_once(make_runtime):
    rt = make_runtime("", {"flow": FLOW, "after": AFTER})
    cid = add(rt, "fast@example.com", MONDAY)
    tick(rt, MONDAY)
    assert enrollments(rt, cid)[0]["state"] == "waiting"
    later = MONDAY + timedelta(hours=5)
    with rt.db.begin() as conn:
        ingest(conn, rt, IncomingEvent("content.downloaded", "test", later, cid), later)
    tick(rt, later)
    assert [m["step_id"] for m in messages(rt, cid)] == ["thanks"]
    flow, after = enrollments(rt, cid)
    assert (flow["state"], flow["end_reason"]) == ("exited", "moved to after")
    assert after["journey_id"] == "after"


def test_wait_for_timeout_takes_the_other_path(make_runtime):
    rt = make_runtime("", {"flow": FLOW, "after": AFTER})
    cid = add(rt, "slow@example.com", MONDAY)
    tick(rt, MONDAY)
    tick(rt, MONDAY + timedelta(days=3))
    assert [m["step_id"] for m in messages(rt, cid)] == ["nudge"]
    with rt.db.begin() as conn:
        contact = contacts.find_contact(conn, str(cid))
        changes = store.contact_changes(conn, cid)
    assert contact.attributes["nudged"] is True
    assert changes[0]["field"] == "attributes.nudged"
    assert enrollments(rt, cid)[0]["end_reason"] == "moved to after"


def test_reentry_never_and_one_exclusive_journey_per_purpose(make_runtime):
    second = ONBOARDING.replace("id: onboarding", "id: second").replace(
        "name: Onboarding", "name: Second")
    rt = make_runtime("", {"onboarding": ONBOARDING, "second": second})
    cid = add(rt, "once@example.com", MONDAY)
    tick(rt, MONDAY)
    assert [e["journey_id"] for e in enrollments(rt, cid)] == ["onboarding"]
    run_hours(rt, MONDAY, 24 * 8)
    # after onboarding completed, the other newsletter journey may start; onboarding never again
    assert [e["journey_id"] for e in enrollments(rt, cid)] == ["onboarding", "second"]


class FlakyProvider:
    name = "flaky"

    def __init__(self, failures: list[ProviderError]) -> None:
        self.failures = failures
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return SendResult(self.name, "p-1")


def test_retryable_errors_are_retried_then_sent_once(make_runtime):
    provider = FlakyProvider([ProviderError("429", retryable=True, code="429"),
                              ProviderError("503", retryable=True, code="503")])
    rt = make_runtime("", {"onboarding": ONBOARDING}, providers={"email": provider,
                                                                 "sms": provider})
    cid = add(rt, "retry@example.com", MONDAY)
    tick(rt, MONDAY)
    [first] = messages(rt, cid)
    assert first["state"] == "retrying" and first["attempts"] == 1
    tick(rt, first["next_attempt_at"])
    tick(rt, messages(rt, cid)[0]["next_attempt_at"])
    [done] = messages(rt, cid)
    assert (done["state"], done["attempts"], done["provider_message_id"]) == ("sent", 3, "p-1")
    assert len(provider.sent) == 1


def test_permanent_errors_are_recorded_not_retried(make_runtime):
    provider = FlakyProvider([ProviderError("invalid address", retryable=False, code="400",
                                            consequence="suppress")])
    rt = make_runtime("", {"onboarding": ONBOARDING}, providers={"email": provider,
                                                                 "sms": provider})
    cid = add(rt, "bad@example.com", MONDAY)
    tick(rt, MONDAY)
    tick(rt, MONDAY + timedelta(days=2))
    first, second = messages(rt, cid)
    assert (first["state"], first["attempts"]) == ("failed", 1)
    assert (second["state"], second["skip_reason"]) == ("skipped", "suppressed")
    assert provider.sent == []


class CrashingProvider:
    """Dies in the middle of a batch, like a process killed during a provider call."""

    name = "crash"

    def __init__(self, after: int) -> None:
        self.after = after
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        if len(self.sent) == self.after:
            raise KeyboardInterrupt("simulated crash")
        self.sent.append(message)
        return SendResult(self.name, f"c-{len(self.sent)}")


def test_crash_during_delivery_marks_unknown_and_never_resends(make_runtime):
    provider = CrashingProvider(after=2)
    rt = make_runtime("lease_seconds = 60\n", {"onboarding": ONBOARDING},
                      providers={"email": provider, "sms": provider})
    ids = [add(rt, f"c{i}@example.com", MONDAY) for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        tick(rt, MONDAY)
    assert {m["state"] for m in messages(rt)} == {"sending"}
    provider.after = 10**6
    report = tick(rt, MONDAY + timedelta(minutes=2))    # the lease has expired
    assert report.unknown == 5
    assert [m["state"] for m in messages(rt)] == ["unknown"] * 5
    assert len(provider.sent) == 2                        # nothing resent
    tick(rt, MONDAY + timedelta(days=2))
    for cid in ids:                                       # every enrollment went on
        assert [m["step_id"] for m in messages(rt, cid)] == ["welcome", "article"]


def test_idle_tick_does_nothing(make_runtime):
    rt = make_runtime("", {"onboarding": ONBOARDING})
    report = tick(rt, MONDAY)
    assert (report.processed, report.sent, report.entered) == (0, 0, 0)


def test_a_provider_timeout_leaves_the_message_unknown_and_never_resent(make_runtime):
    provider = FlakyProvider([ProviderError("no answer", retryable=False, code="timeout")])
    rt = make_runtime("", {"onboarding": ONBOARDING}, providers={"email": provider,
                                                                 "sms": provider})
    cid = add(rt, "late@example.com", MONDAY)
    tick(rt, MONDAY)
    tick(rt, MONDAY + timedelta(hours=1))
    [message] = messages(rt, cid)
    assert (message["state"], message["next_attempt_at"]) == ("unknown", None)
    assert provider.sent == []
