"""A project with a history to report on, made by the real engine: contacts and consent,
ticks over ten days with the outbox provider, provider feedback tied to messages (the
webhook path: delivered, opened, clicked, bounced, unsubscribed, a reply), a download
that reaches a journey's goal, qualifications and a customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import feedback, maturity
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.base import ProviderEvent
from nurture.store import database as db
from tests.consent_support import MONDAY, add, build, messages, rows

JOURNEYS = {
    "welcome": """
        id: welcome
        name: Welcome series
        purpose: newsletter
        entry: { when: "stage == 'lead'" }
        exit_when: "stage != 'lead'"
        goal: "events.content.downloaded.count >= 1"
        steps:
          - { id: hello, type: send, channel: email, template: cold/welcome-guide }
          - { id: pause, type: wait, duration: 1d }
          - { id: article, type: send, channel: email, template: cold/article-best-practices }
          - { id: pause-2, type: wait, duration: 1d }
          - { id: digest, type: send, channel: email, template: cold/newsletter-digest }
    """,
    "offers": """
        id: offers
        name: Offers by email and SMS
        purpose: marketing
        priority: 1
        entry: { when: "stage == 'lead'" }
        steps:
          - { id: webinar, type: send, channel: email, template: warm/webinar-invite }
          - { id: pause, type: wait, duration: 1d }
          - { id: text, type: send, channel: sms, template: prospect/call-me }
    """,
}
#: one email a day: the second email of the first day is skipped
CONFIG = """
[[frequency_caps]]
channel = "email"
max = 1
per = "1d"
"""
PHONE = "+33612345678"


@dataclass
class Story:
    rt: Runtime
    ids: dict[str, int]


def _message(rt: Runtime, cid: int, step_id: str) -> dict[str, Any]:
    [found] = [m for m in messages(rt, cid) if m["step_id"] == step_id]
    return found


def _feedback(rt: Runtime, who: int, step_id: str, kind: str, hours: float,
              **extra: Any) -> None:
    message = _message(rt, who, step_id)
    at = MONDAY + timedelta(hours=hours)
    source = "twilio" if message["channel"] == "sms" else "sendgrid"
    event = ProviderEvent(type=kind, source=source, occurred_at=at,
                          source_event_id=f"{kind}-{message['public_id']}-{hours}",
                          channel=message["channel"], public_id=message["public_id"],
                          address=message["to_address"], **extra)
    with rt.db.begin() as conn:
        feedback.record(conn, rt, event, at)


def _event(rt: Runtime, who: int, kind: str, hours: float) -> None:
    at = MONDAY + timedelta(hours=hours)
    with rt.db.begin() as conn:
        ingest(conn, rt, IncomingEvent(kind, "api", at, who, source_event_id=f"{kind}-{who}"), at)


def make_story(root: Path, *, database_url: str | None = None) -> Story:
    url = f'database_url = "{database_url}"\n' if database_url else ""
    rt = build(root, config_extra=url + CONFIG, journeys=JOURNEYS, copy_journeys=False)
    both = (("email", "newsletter"), ("email", "marketing"), ("sms", "marketing"))
    ids = {
        "alice": add(rt, "alice@example.com", MONDAY, consents=both, phone=PHONE),
        "bob": add(rt, "bob@example.com", MONDAY),
        "carol": add(rt, "carol@example.com", MONDAY, consents=both[:2]),
        "dave": add(rt, "dave@example.com", MONDAY, consents=()),
        "erin": add(rt, "erin@example.com", MONDAY),
        "info": add(rt, "info@example.com", MONDAY),
    }
    tick(rt, MONDAY)                        # welcome/hello and offers/webinar are due
    a, b, c, e = ids["alice"], ids["bob"], ids["carol"], ids["erin"]
    for who, step in ((b, "hello"), (e, "hello"), (c, "webinar")):
        _feedback(rt, who, step, "email.delivered", 0.5, message_state="delivered")
    for who, hours in ((b, 1), (b, 2), (e, 1)):  # bob opens twice: one opened message
        _feedback(rt, who, "hello", "email.opened", hours)
    _feedback(rt, b, "hello", "email.clicked", 2.5, properties={"url": "https://acme.test/g"})
    _feedback(rt, a, "webinar", "email.bounced", 0.5, message_state="bounced",
              consequence="suppress", properties={"bounce_type": "bounce"})
    tick(rt, MONDAY + timedelta(days=1, hours=1))   # offers/text (SMS), welcome/article
    _feedback(rt, a, "text", "sms.delivered", 25.5, message_state="delivered")
    _feedback(rt, e, "article", "email.unsubscribed", 26, consequence="unsubscribe")
    _feedback(rt, c, "article", "reply.received", 27, properties={"text": "Yes, call me"})
    _event(rt, b, "content.downloaded", 28)          # bob reaches the welcome goal
    tick(rt, MONDAY + timedelta(days=2, hours=2))   # welcome/digest: erin unsubscribed
    _event(rt, a, "demo.requested", 24 * 8)  # qualifies in the second week
    with rt.db.begin() as conn:
        maturity.set_stage(conn, rt, c, "customer", "signed", MONDAY + timedelta(days=9))
    tick(rt, MONDAY + timedelta(days=9))
    return Story(rt, ids)


def table(rt: Runtime, name: str) -> list[dict[str, Any]]:
    return rows(rt, getattr(db, name))
