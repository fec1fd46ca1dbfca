"""`nurture event import FILE` and `nurture event --at`: past events, scored as of their time.

A file (CSV, XLSX, or JSON lines) names each event's contact (`email`, `phone` or
`contact_id`), `type`, `occurred_at` (ISO 8601 with a zone, or Unix seconds) and
optionally `id` (the source's event id) and properties (`prop.KEY` columns, a
`properties` JSON column, or the `properties` object of a JSON line).

Events are stored once per (source, id) — without an `id`, one is derived from the
contact, type, time and properties, so re-importing a file stores nothing twice — then
scored in time order, each at its own time: a contact's points decay between its events
as the daemon would have decayed them (`jobs.decay_due`'s rule, at each event), and up to
now at the end. History changes scores, temperatures and stages (with their reasons) and
flags the contacts for journey evaluation; it does not replay what belongs to the moment
an event arrives: waits are not resumed and event-triggered journeys are not entered
(a download from last spring does not send today's welcome series). Replies that read
as an opt-out (STOP) withdraw consent as they do live; nothing in a file grants it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from nurture.compliance.hygiene import check_phone
from nurture.durations import parse_duration
from nurture.engine.runtime import Runtime
from nurture.intake import maturity, reply_effects
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import check
from nurture.scoring import rules as scoring
from nurture.scoring.replies import Intent
from nurture.services.event_rows import (
    EventReason,
    EventRejection,
    ParsedEvent,
    parse_record,
    read_records,
    write_rejected,
)
from nurture.services.import_rows import ascii_address, unicode_address
from nurture.services.importing import NoProgress, Progress
from nurture.store import imports
from nurture.store import maturity as ms

#: events stored and scored per transaction
CHUNK = 5000


@dataclass(frozen=True)
class EventImportOptions:
    source: str = "import"
    dry_run: bool = False
    chunk: int = CHUNK
    encoding: str = "utf-8-sig"


@dataclass
class EventImportReport:
    file: str
    dry_run: bool
    rows: int = 0
    stored: int = 0
    #: already stored (same source and id): nothing changed
    replays: int = 0
    contacts: int = 0
    opt_outs: int = 0
    #: events older than their contact's last decay: their points count in full from it
    #: (history is meant to be loaded before live activity; nothing is rewound)
    late: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    rejected: list[EventRejection] = field(default_factory=list)
    rejected_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        by_reason = Counter(str(r.reason) for r in self.rejected)
        return {
            "file": self.file, "dry_run": self.dry_run, "rows": self.rows,
            "stored": self.stored, "replays": self.replays, "contacts": self.contacts,
            "by_type": dict(sorted(self.by_type.items())), "opt_outs": self.opt_outs,
            "late": self.late,
            "rejected": len(self.rejected), "rejected_by_reason": dict(sorted(by_reason.items())),
            "rejected_file": self.rejected_file,
            "rejected_rows": [{"row": r.row, "reason": str(r.reason), "detail": r.detail}
                              for r in self.rejected],
        }


class _DryRun(Exception):
    """Raised at the end of a dry run's chunk: its transaction rolls back."""


def import_events(rt: Runtime, path: Path, options: EventImportOptions, now: datetime,
                  progress: Progress | None = None) -> EventImportReport:
    """Load the file's events; see the module doc."""
    progress = progress or NoProgress()
    records, header = read_records(path, options.encoding)
    report = EventImportReport(str(path), options.dry_run, rows=len(records))
    parsed: list[ParsedEvent] = []
    for number, record in records:
        found = parse_record(number, record, now)
        if isinstance(found, EventRejection):
            report.rejected.append(found)
        else:
            parsed.append(found)
    with rt.db.begin() as conn:
        events = _resolve(conn, parsed, options.source, report)
    events.sort(key=lambda item: (item[1].occurred_at, item[0]))
    touched = record_history(rt, events, now, options, report, progress)
    report.rejected.sort(key=lambda r: r.row)
    if not options.dry_run:
        report.rejected_file = write_rejected(path, header, records, report.rejected)
    report.contacts = len(touched)
    return report


def record_history(rt: Runtime, events: Sequence[tuple[int, IncomingEvent]], now: datetime,
                   options: EventImportOptions, report: EventImportReport,
                   progress: Progress | None = None) -> set[int]:
    """Store and score `(row, event)`s sorted by time; decay the contacts they touched
    up to `now`. Returns those contacts."""
    progress = progress or NoProgress()
    progress.phase("scoring", len(events))
    touched: set[int] = set()
    for start in range(0, len(events), max(1, options.chunk)):
        part = events[start:start + options.chunk]
        try:
            with rt.db.begin() as conn:
                touched |= _store_and_score(conn, rt, [e for _, e in part], now, report)
                if options.dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        progress.advance(len(part))
    if not options.dry_run:
        ids = sorted(touched)
        for start in range(0, len(ids), rt.settings.batch_size):
            with rt.db.begin() as conn:
                moved = decay_until(conn, rt, ids[start:start + rt.settings.batch_size], now)[0]
                maturity.leave_journeys(conn, rt, moved, now)
    return touched


def _store_and_score(conn: Connection, rt: Runtime, batch: Sequence[IncomingEvent],
                     now: datetime, report: EventImportReport) -> set[int]:
    ids = ms.insert_events(conn, [{
        "contact_id": e.contact_id, "type": e.type, "source": e.source,
        "source_event_id": e.source_event_id, "occurred_at": e.occurred_at,
        "received_at": now, "message_id": None, "properties": dict(e.properties),
        "raw": dict(e.raw)} for e in batch])
    fresh = [(eid, e) for eid, e in zip(ids, batch, strict=True) if eid is not None]
    report.stored += len(fresh)
    report.replays += len(batch) - len(fresh)
    report.by_type.update(e.type for _, e in fresh)
    for at, items in groupby(fresh, key=lambda item: item[1].occurred_at):
        run = list(items)
        late = decay_until(conn, rt, {e.contact_id or 0 for _, e in run}, at)[1]
        report.late += sum(e.contact_id in late for _, e in run)
        maturity.on_events(conn, rt, run, at)
    for event_id, event in fresh:
        reply = reply_effects.classify(rt.settings, event.type, event.properties)
        if reply is not None and reply.intent == Intent.OPT_OUT:
            reply_effects.on_reply(conn, rt, event_id, event, now)
            report.opt_outs += 1
    return {e.contact_id for _, e in fresh if e.contact_id is not None}


def decay_until(conn: Connection, rt: Runtime, contact_ids: Iterable[int],
                at: datetime) -> tuple[set[int], set[int]]:
    """The decay the daemon would have applied by `at` to these contacts (`jobs.decay_due`
    for chosen contacts: from the last decay to `at`, rescheduled from `at`). Returns the
    contacts whose stage or temperature it moved, and those already decayed past `at`
    (an event at `at` is late for them: its points count in full from their last decay)."""
    config = rt.settings.scoring
    contacts, decay_at = ms.lock_contacts(conn, contact_ids)
    every = parse_duration(config.decay_every)
    late = {cid for cid, when in decay_at.items() if when is not None and when - every > at}
    due = {cid: when for cid, when in decay_at.items() if when is not None and when <= at}
    if not due:
        return set(), late
    writes = maturity.Writes(at)
    for cid, when in due.items():
        contact = contacts[cid]
        award = scoring.decay_award(contact.score, at - when + every, config)
        writes.add(contact, scoring.assess(contact, config, [award] if award else []))
    writes.flush(conn, rt.settings, {cid: decay_at[cid] for cid in due}, reschedule=True)
    return writes.moved, late


def _resolve(conn: Connection, parsed: Sequence[ParsedEvent], source: str,
             report: EventImportReport) -> list[tuple[int, IncomingEvent]]:
    """Each event with its contact (events of unknown contacts are refused)."""
    emails = {p.who[1]: ascii_address(p.who[1]) for p in parsed if p.who[0] == "email"}
    forms = {e for a in emails.values() for e in (a, unicode_address(a))}
    by_email = ms.contact_ids_by_email(conn, forms)
    phones = {p.who[1]: check_phone(p.who[1]).e164 for p in parsed if p.who[0] == "phone"}
    by_phone = imports.contact_ids_by_phone(conn, [e for e in phones.values() if e])
    ids = {p.who[1] for p in parsed if p.who[0] == "contact_id" and p.who[1].isdigit()}
    known = ms.existing_contact_ids(conn, [int(i) for i in ids])
    events = []
    for item in parsed:
        kind, value = item.who
        if kind == "email":
            cid = by_email.get(emails[value]) or by_email.get(unicode_address(emails[value]))
        elif kind == "phone":
            cid = by_phone.get(phones[value] or "")
        else:
            cid = int(value) if value.isdigit() and int(value) in known else None
        if cid is None:
            report.rejected.append(EventRejection(item.row, EventReason.UNKNOWN_CONTACT,
                                                  f"no contact {value!r}"))
            continue
        event = IncomingEvent(type=item.type, source=source, occurred_at=item.occurred_at,
                              contact_id=cid, source_event_id=item.source_id or
                              derived_id(cid, item), properties=item.properties)
        check(event)
        events.append((item.row, event))
    return events


def derived_id(contact_id: int, item: ParsedEvent) -> str:
    """An event id from what the event is, for files without ids: the same event
    imported twice is stored once."""
    text = json.dumps([contact_id, item.type, item.occurred_at.isoformat(), item.properties],
                      sort_keys=True, default=str)
    return "import:" + hashlib.sha256(text.encode()).hexdigest()[:32]


