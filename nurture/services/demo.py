"""`nurture demo`: the real engine on sample contacts over simulated weeks.

Everything is real — SQLite file, journeys, templates, consent gates, the outbox
provider writing .eml/JSON files — except the clock, which jumps an hour per tick so
three weeks pass in seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
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


def run_demo(directory: Path, days: int, console: Console, start: datetime) -> None:
    config = _prepare(directory)
    settings = load_settings(config)
    runtime = build_runtime(settings)
    clock = _monday_morning(start)
    # the daemon runs applied versions only: the demo's journeys are applied first
    journeys.apply_project(runtime, config, clock)
    ids = _seed(runtime, clock)
    console.print(f"[bold]nurture demo[/] in {directory}: {len(ids)} contacts, "
                  f"{len(runtime.journeys)} journeys, {days} simulated days from "
                  f"{clock:%a %d %b %Y}")
    total = TickReport()
    for hour in range(days * 24):
        now = clock + timedelta(hours=hour)
        _play_script(runtime, ids, hour, now, console)
        report = tick(runtime, now)
        _accumulate(total, report)
    _summary(console, runtime, directory, total)


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
                 console: Console) -> None:
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
                    console.print(f"  {now:%a %d %H:%M}  {person.email} withdraws consent")
                    continue
                ingest(conn, runtime, IncomingEvent(kind, "demo", now, contact.id,
                                                    properties=props), now)
            console.print(f"  {now:%a %d %H:%M}  {person.email}: {kind} {props or ''}")


def _accumulate(total: TickReport, report: TickReport) -> None:
    total.entered += report.entered
    total.processed += report.processed
    total.sent += report.sent
    total.deferred += report.deferred
    total.failed += report.failed
    total.skipped.update(report.skipped)


def _summary(console: Console, runtime: Any, directory: Path, total: TickReport) -> None:
    with runtime.db.begin() as conn:
        people = conn.execute(select(db.contact.c.id, db.contact.c.email, db.contact.c.stage,
                                     db.contact.c.temperature, db.contact.c.score)).all()
        sent = dict(conn.execute(select(db.message.c.contact_id, func.count())
                                 .where(db.message.c.state == "sent")
                                 .group_by(db.message.c.contact_id)).all())
        skipped = dict(conn.execute(select(db.message.c.contact_id, func.count())
                                    .where(db.message.c.state == "skipped")
                                    .group_by(db.message.c.contact_id)).all())
    table = Table(title="Contacts after the simulation", title_justify="left")
    for column in ("contact", "stage", "temperature", "score", "sent", "skipped"):
        table.add_column(column)
    for cid, email, stage, temperature, score in people:
        table.add_row(email, stage, temperature, f"{score:.0f}", str(sent.get(cid, 0)),
                      str(skipped.get(cid, 0)))
    console.print(table)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(total.skipped.items())) or "none"
    files = sorted(runtime.settings.outbox_path.rglob("*.*"))
    console.print(f"enrollments entered {total.entered}, messages sent {total.sent}, "
                  f"deferred to a send window {total.deferred}, skipped ({reasons})")
    console.print(f"{len(files)} files in {runtime.settings.outbox_path}; e.g. "
                  f"{files[0] if files else '-'}")
    console.print(f"Explain a contact: nurture --config {directory}/config.toml contact show "
                  f"{PEOPLE[0].email}")
