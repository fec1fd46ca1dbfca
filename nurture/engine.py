"""The tick: claim due enrollments, run their steps, record, then hand to providers.

At most once: a batch's messages are recorded (state `sending`) in the same transaction
that moves its enrollments past the send steps; only then are providers called. A crash
before that commit sends nothing and loses nothing (the claim lease expires and the
enrollments run again); a crash after it leaves messages `sending`, which are marked
`unknown` when their lease expires — never sent again.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from nurture import entry, executor, gates, handoffs, maturity, maturity_jobs, store, work
from nurture.config import Settings
from nurture.db import Database
from nurture.delivery import deliver, retry_due
from nurture.hygiene import address_hash
from nurture.loader import LoadedJourney
from nurture.providers.base import Provider
from nurture.rendering import TemplateCatalog
from nurture.tokens import Links
from nurture.views import ContactView
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import PRESSURE_STATES, EnrollmentState, MessageState

log = logging.getLogger("nurture.engine")


@dataclass
class Runtime:
    """What the engine works with, built once by an entry point."""

    settings: Settings
    db: Database
    journeys: dict[str, LoadedJourney]
    catalog: TemplateCatalog
    providers: Mapping[str, Provider]
    links: Links
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    #: hooks run for each newly stored event: (conn, runtime, event id, event, now)
    event_hooks: list[Callable[..., None]] = field(default_factory=list)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)


@dataclass
class TickReport:
    entered: int = 0
    processed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    retried: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def merge_messages(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["state"] == MessageState.SKIPPED:
                self.skipped[str(row["skip_reason"])] += 1


def tick(rt: Runtime, now: datetime, should_stop: Callable[[], bool] = lambda: False) -> TickReport:
    """One pass over everything due at `now`."""
    report = TickReport()
    maturity_jobs.decay_due(rt, now)
    maturity_jobs.recycle_unaccepted(rt, now)
    handoffs.deliver_due(rt, now)
    with rt.db.begin() as conn:
        report.unknown = store.expire_sending(conn, now)
    report.entered = enter_due_contacts(rt, now)
    report.retried = retry_due(rt, now)
    while not should_stop():
        if not run_batch(rt, now, report):
            break
    return report


def enter_due_contacts(rt: Runtime, now: datetime) -> int:
    """Contacts flagged for (re)evaluation enter the journeys whose entry now matches."""
    total = 0
    while True:
        with rt.db.begin() as conn:
            ids = store.contacts_to_evaluate(conn, now, rt.settings.batch_size)
            if not ids:
                return total
            total += enroll(conn, rt, ids, now)
            store.mark_evaluated(conn, ids)


def enroll(conn: Connection, rt: Runtime, contact_ids: list[int], now: datetime,
           event_type: str | None = None) -> int:
    """Enter matching journeys for these contacts (condition entries, or an event trigger)."""
    journeys = list(rt.journeys.values())
    if event_type is None:
        journeys = [j for j in journeys if j.journey.entry.event is None]
    contacts = store.load_contacts(conn, contact_ids)
    attach_event_counts(conn, contacts, journeys, now)
    live = store.live_enrollments(conn, contact_ids, [s.value for s in _LIVE])
    ended = store.last_ended(conn, contact_ids)
    # grouped once per contact: filtering the whole batch per contact was quadratic
    live_of: dict[int, list[dict[str, Any]]] = {}
    for row in live:
        live_of.setdefault(row["contact_id"], []).append(row)
    ended_of: dict[int, dict[str, datetime]] = {}
    for (c, jid), at in ended.items():
        if at is not None:
            ended_of.setdefault(c, {})[jid] = at
    rows = []
    for cid, contact in contacts.items():
        mine, last = live_of.get(cid, []), ended_of.get(cid, {})
        for loaded in entry.entries_for(contact, mine, last, journeys, now, event_type):
            rows.append(entry.enrollment_row(loaded, cid, now))
    return store.insert_enrollments(conn, rows)




def attach_event_counts(conn: Connection, contacts: dict[int, ContactView],
                        journeys: list[LoadedJourney], now: datetime) -> None:
    wanted = {pair for j in journeys for c in j.conditions.values() for pair in c.event_windows()}
    if not wanted or not contacts:
        return
    counts = store.event_counts(conn, list(contacts), wanted, now)
    for cid, contact in contacts.items():
        contact.event_counts = {(t, w): counts.get((cid, t, w), 0) for t, w in wanted}


def run_batch(rt: Runtime, now: datetime, report: TickReport) -> int:
    """Claim, execute and record one batch, then deliver it. Returns how many ran."""
    lease_until = now + rt.lease
    with rt.db.begin() as conn:
        claimed = work.claim_due(conn, now, rt.settings.batch_size, rt.worker, lease_until)
    if not claimed:
        return 0
    with rt.db.begin() as conn:
        batch = prefetch(conn, rt, claimed, now)
        outcomes = [executor.run(row, batch, lease_until) for row in claimed]
        record(conn, rt, outcomes, batch, now)
    outgoing = [m for o in outcomes for m in o.outgoing]
    report.sent += deliver(rt, outgoing, now)
    report.processed += len(claimed)
    for outcome in outcomes:
        report.merge_messages(outcome.messages)
        state = outcome.enrollment["state"]
        report.failed += state == EnrollmentState.FAILED
        report.deferred += outcome.deferred
    return len(claimed)


def prefetch(conn: Connection, rt: Runtime, claimed: list[dict[str, Any]],
             now: datetime) -> executor.Batch:
    ids = sorted({row["contact_id"] for row in claimed})
    contacts = store.load_contacts(conn, ids)
    journeys = [rt.journeys[j] for j in {row["journey_id"] for row in claimed} if j in rt.journeys]
    attach_event_counts(conn, contacts, journeys, now)
    for contact in contacts.values():
        contact.address_hashes = {channel: address_hash(address) for channel, address
                                  in (("email", contact.email), ("sms", contact.phone))
                                  if address}
    hashes = {h for c in contacts.values() for h in c.address_hashes.values()}
    state = gates.GateState(store.consent_statuses(conn, ids), store.suppressed_among(conn, hashes))
    for index, cap in enumerate(rt.settings.frequency_caps):
        counts = store.pressure_counts(conn, ids, now - cap.window, PRESSURE_STATES)
        for (cid, channel), count in counts.items():
            if cap.channel in ("any", channel):
                state.cap_counts[(cid, index)] += count
    return executor.Batch(rt.settings, rt.journeys, rt.catalog, rt.links, contacts, state, now)


def record(conn: Connection, rt: Runtime, outcomes: list[executor.Outcome],
           batch: executor.Batch, now: datetime) -> None:
    """Write a batch's outcomes: messages first, then positions, then contact changes."""
    work.insert_messages(conn, [m for o in outcomes for m in o.messages])
    work.write_enrollments(conn, rt.worker, [o.enrollment for o in outcomes])
    # a contact leaving a journey may now enter another one
    store.flag_for_evaluation(conn, [o.enrollment["contact_id"] for o in outcomes
                                     if o.enrollment["state"] not in _LIVE], now)
    for outcome in outcomes:
        cid = outcome.enrollment["contact_id"]
        if outcome.attributes or outcome.score:
            maturity.apply_set_steps(conn, rt, cid, outcome.attributes, outcome.score, now)
        for reason in outcome.handoffs:
            store.insert_handoff(conn, cid, reason, outcome.enrollment["journey_id"], now)
        if outcome.moves:
            move(conn, rt, cid, outcome.moves, now)


def move(conn: Connection, rt: Runtime, contact_id: int, targets: list[str],
         now: datetime) -> None:
    """`move_to`: enter the target journey now unless already in it."""
    live = {r["journey_id"] for r in store.live_enrollments(conn, [contact_id],
                                                            [s.value for s in _LIVE])}
    rows = [entry.enrollment_row(rt.journeys[t], contact_id, now)
            for t in targets if t in rt.journeys and t not in live]
    store.insert_enrollments(conn, rows)
