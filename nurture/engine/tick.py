"""The tick: claim due enrollments, run their steps, record, then hand to providers.

At most once: a batch's messages are recorded (state `sending`) in the same transaction
that moves its enrollments past the send steps; only then are providers called. A crash
before that commit sends nothing and loses nothing (the claim lease expires and the
enrollments run again); a crash after it leaves messages `sending`, which are marked
`unknown` when their lease expires — never sent again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance import gates
from nurture.compliance.hygiene import address_hash
from nurture.engine import executor, membership
from nurture.engine.runtime import Runtime
from nurture.engine.send import Delivery, deliver, retry_due
from nurture.intake import handoffs, maturity
from nurture.intake import jobs as maturity_jobs
from nurture.store import queries as store
from nurture.store import work
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import PRESSURE_STATES, EnrollmentState, MessageState

log = logging.getLogger("nurture.engine")


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

    def add_delivery(self, done: Delivery) -> None:
        self.sent += done.sent
        self.unknown += done.unknown
        self.skipped.update(done.skip_reasons)

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
    report.entered = membership.enter_due_contacts(rt, now)
    retried = retry_due(rt, now)
    report.retried = retried.handled
    report.add_delivery(retried)
    while not should_stop():
        if not run_batch(rt, now, report):
            break
    return report


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
    report.add_delivery(deliver(rt, outgoing, now))
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
    membership.attach_event_counts(conn, contacts, journeys, now)
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
            membership.move(conn, rt, cid, outcome.moves, now)


