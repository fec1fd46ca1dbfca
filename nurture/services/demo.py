"""`nurture demo`: the real engine on sample contacts over simulated weeks.

Everything is real — SQLite file, journeys, templates, consent gates, the outbox
provider writing .eml/JSON files — except the clock, which jumps an hour per tick so
three weeks pass in seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.engine.tick import TickReport, tick
from nurture.errors import NurtureError
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.services import contacts, journeys
from nurture.store import database as db
from nurture.vocab import MessageKind, MessageState

MARKER = ".nurture-demo"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class Person:
    email: str
    locale: str
    attributes: dict[str, Any]
    phone: str | None = None
    timezone: str = "Europe/Paris"
    #: (channel, purpose) granted at sign-up
    consents: tuple[tuple[str, str], ...] = (("email", "newsletter"),)
    #: (day, hour, event type, properties) scripted behaviour
    script: tuple[tuple[int, int, str, dict[str, Any]], ...] = field(default=())


PEOPLE = (
    Person("camille.martin@boulangeries-martin.example", "fr",
           {"first_name": "Camille", "company": "Boulangeries Martin", "role": "Directrice des "
            "opérations", "company_size": 120, "industry": "retail"},
           phone="+33612345678",
           consents=(("email", "newsletter"), ("email", "marketing"), ("email", "sales"),
                     ("sms", "marketing"), ("sms", "sales")),
           script=((2, 10, "content.downloaded", {"content": "guide-planning"}),
                   (3, 14, "page.viewed", {"url": "/fonctionnalites", "seconds": 95}),
                   (5, 9, "email.opened", {}),
                   (6, 11, "page.viewed", {"url": "/tarifs", "seconds": 140}),
                   (8, 16, "demo.requested", {"form": "demo"}),
                   (12, 10, "reply.received", {"channel": "sms",
                                               "text": "Oui, rappelez-moi mardi"}))),
    Person("james.wilson@northwind.example", "en",
           {"first_name": "James", "company": "Northwind Logistics", "role": "COO",
            "company_size": 800, "industry": "logistics"},
           timezone="Europe/London",
           consents=(("email", "newsletter"), ("email", "marketing")),
           script=((1, 9, "email.opened", {}), (4, 15, "content.downloaded", {"content": "ebook"}),
                   (6, 10, "page.viewed", {"url": "/pricing", "seconds": 60}))),
    Person("lea.dubois@mairie-exemple.example", "fr",
           {"first_name": "Léa", "company": "Mairie d'Exemple", "role": "Chargée RH",
            "company_size": 45, "industry": "public"}),
    Person("sophie.bernard@cliniquevet.example", "fr",
           {"first_name": "Sophie", "company": "Clinique Vétérinaire", "role": "Gérante",
            "company_size": 12, "industry": "health"},
           script=((4, 12, "x.withdraw", {}),)),
    Person("no.consent@example.org", "en", {"first_name": "Pat"}, consents=()),
)


def _prepare(directory: Path) -> Path:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise NurtureError(f"{directory} exists and is not a demo folder; pick another")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    shutil.copytree(EXAMPLES / "journeys", directory / "journeys")
    shutil.copytree(EXAMPLES / "templates", directory / "templates")
    text = (EXAMPLES / "config.toml").read_text(encoding="utf-8")
    (directory / "config.toml").write_text(text.replace('mode = "dev"', 'mode = "demo"', 1))
    (directory / MARKER).write_text("created by `nurture demo`; safe to delete\n")
    return directory / "config.toml"


def _monday_morning(start: datetime) -> datetime:
    day = start.replace(hour=7, minute=0, second=0, microsecond=0)
    return day + timedelta(days=(7 - day.weekday()) % 7 or 7)


@dataclass
class DemoContact:
    """One sample contact after the run; `sent` counts the messages sent to it."""

    email: str
    timezone: str
    stage: str
    temperature: str
    score: float
    sent: int
    skipped: int


@dataclass
class DemoRun:
    """What `nurture demo` did, read back from the database and the outbox it wrote."""

    directory: Path
    config: Path
    days: int
    start: datetime
    journeys: int
    entered: int
    deferred: int
    contacts: list[DemoContact]
    #: sent messages by kind (journey, notification…): every message the run sent
    sent_by_kind: dict[str, int]
    skipped_by_reason: dict[str, int]
    outbox: Path
    files: list[Path]

    @property
    def sent(self) -> int:
        return sum(self.sent_by_kind.values())


Played = Callable[[datetime, str, str], None]


def run_demo(directory: Path, days: int, start: datetime,
             on_event: Played | None = None) -> DemoRun:
    """Prepare `directory`, run `days` of hourly ticks from the Monday after `start`;
    `on_event` hears each scripted behaviour as it is played."""
    config = _prepare(directory)
    settings = load_settings(config)
    runtime = build_runtime(settings)
    clock = _monday_morning(start)
    # the daemon runs applied versions only: the demo's journeys are applied first
    journeys.apply_project(runtime, config, clock)
    ids = _seed(runtime, clock)
    heard: Played = on_event or (lambda at, email, what: None)
    total = TickReport()
    for hour in range(days * 24):
        now = clock + timedelta(hours=hour)
        _play_script(runtime, ids, hour, now, heard)
        report = tick(runtime, now)
        total.entered += report.entered
        total.deferred += report.deferred
    try:
        return _summary(runtime, directory, config, days, clock, total)
    finally:
        runtime.db.dispose()


def _seed(runtime: Any, now: datetime) -> dict[str, int]:
    ids = {}
    with runtime.db.begin() as conn:
        for person in PEOPLE:
            cid = contacts.add_contact(conn, runtime.settings, now, email=person.email,
                                       phone=person.phone, locale=person.locale,
                                       timezone=person.timezone, attributes=person.attributes)
            contact = contacts.find_contact(conn, str(cid))
            for channel, purpose in person.consents:
                ledger.record_consent(
                    conn, runtime.settings, now, contact=contact, channel=channel,
                    purpose=purpose, action="granted", source="demo-signup-form",
                    evidence={"form": "newsletter-2026", "wording_version": "v3",
                              "ip": "203.0.113.7"})
            ids[person.email] = cid
    return ids


def _play_script(runtime: Any, ids: dict[str, int], hour: int, now: datetime,
                 heard: Played) -> None:
    for person in PEOPLE:
        for day, at, kind, props in person.script:
            if day * 24 + at - 7 != hour:  # the clock starts Monday 07:00 UTC
                continue
            with runtime.db.begin() as conn:
                contact = contacts.find_contact(conn, str(ids[person.email]))
                if kind == "x.withdraw":
                    ledger.record_consent(conn, runtime.settings, now, contact=contact,
                                            channel="email", purpose="newsletter",
                                            action="withdrawn", source="preference-page")
                    heard(now, person.email, "withdraws consent")
                    continue
                ingest(conn, runtime, IncomingEvent(kind, "demo", now, contact.id,
                                                    properties=props), now)
            heard(now, person.email, f"{kind} {props}" if props else kind)


def _summary(runtime: Any, directory: Path, config: Path, days: int, start: datetime,
             total: TickReport) -> DemoRun:
    """The counts come from the messages the database holds (the sales notification
    included), the files from the outbox: the same sends, two witnesses."""
    m = db.message
    with runtime.db.begin() as conn:
        people = conn.execute(select(db.contact.c.id, db.contact.c.email,
                                     db.contact.c.timezone, db.contact.c.stage,
                                     db.contact.c.temperature, db.contact.c.score)
                              .order_by(db.contact.c.id)).all()
        to_contacts = m.c.kind != MessageKind.NOTIFICATION
        was_sent = m.c.sent_at.is_not(None)  # sent, whatever happened to it since
        sent = dict(conn.execute(select(m.c.contact_id, func.count())
                                 .where(was_sent, to_contacts)
                                 .group_by(m.c.contact_id)).all())
        skipped = dict(conn.execute(select(m.c.contact_id, func.count())
                                    .where(m.c.state == MessageState.SKIPPED, to_contacts)
                                    .group_by(m.c.contact_id)).all())
        by_kind = dict(conn.execute(select(m.c.kind, func.count())
                                    .where(was_sent)
                                    .group_by(m.c.kind).order_by(m.c.kind)).all())
        reasons = dict(conn.execute(select(m.c.skip_reason, func.count())
                                    .where(m.c.state == MessageState.SKIPPED)
                                    .group_by(m.c.skip_reason)
                                    .order_by(m.c.skip_reason)).all())
    outbox = runtime.settings.outbox_path
    return DemoRun(
        directory=directory, config=config, days=days, start=start,
        journeys=len(runtime.journeys), entered=total.entered, deferred=total.deferred,
        contacts=[DemoContact(email, zone, stage, temperature, float(score),
                              int(sent.get(cid, 0)), int(skipped.get(cid, 0)))
                  for cid, email, zone, stage, temperature, score in people],
        sent_by_kind={str(k): int(v) for k, v in by_kind.items()},
        skipped_by_reason={str(k): int(v) for k, v in reasons.items()},
        outbox=outbox, files=sorted(p for p in outbox.rglob("*") if p.is_file()))
