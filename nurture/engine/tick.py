"""The tick: claim due enrollments, run their steps, record, then hand to providers.

At most once: a batch's messages are recorded (state `sending`) in the same transaction
that moves its enrollments past the send steps; only then are providers called. A crash
before that commit sends nothing and loses nothing (the claim lease expires and the
enrollments run again); a crash after it leaves messages `sending`, which are marked
`unknown` when their lease expires — never sent again.

Each tick first reloads what was applied since the last one (`engine.versions`): a new
version, a removal, a pause. Enrollments of a paused journey are not claimed.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.journey import SendStep
from nurture.compliance import gates
from nurture.compliance.hygiene import address_hash
from nurture.engine import executor, membership, versions
from nurture.engine.build import catalog_for
from nurture.engine.runtime import Runtime
from nurture.engine.send import Delivery, deliver, expire_and_reconcile, retry_due
from nurture.intake import handoffs, maturity
from nurture.intake import jobs as maturity_jobs
from nurture.providers.base import OutgoingMessage
from nurture.store import journeys as jstore
from nurture.store import queries as store
from nurture.store import work
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import PRESSURE_STATES, EnrollmentState, MessageKind, MessageState

log = logging.getLogger("nurture.engine")


@dataclass
class TickReport:
    entered: int = 0
    processed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    blocked: int = 0
    unknown: int = 0
    retried: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: messages by cause: failed for good, and to be retried later
    messages_failed: Counter[str] = field(default_factory=Counter)
    messages_retrying: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        counters = ("skipped", "messages_failed", "messages_retrying")
        return {**dataclasses.asdict(self),
                **{name: dict(sorted(getattr(self, name).items())) for name in counters}}

    def add_delivery(self, done: Delivery) -> None:
        self.sent += done.sent
        self.unknown += done.unknown
        self.skipped.update(done.skip_reasons)
        self.messages_failed.update(done.failures)
        self.messages_retrying.update(done.retries)

    def merge_messages(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["state"] == MessageState.SKIPPED:
                self.skipped[str(row["skip_reason"])] += 1


def tick(rt: Runtime, now: datetime, should_stop: Callable[[], bool] = lambda: False,
         clock: Callable[[], datetime] | None = None) -> TickReport:
    """One pass over everything due at `now`.

    A tick can outlast its start: thousands of due contacts, a paced provider. Each batch
    therefore reads `clock` (the daemon's; by default time stands at `now`) when it is
    claimed, so its lease runs from when it was really taken — a lease counted from the
    tick's start could have expired before the batch began, and another daemon would take
    its messages for lost — and its send windows are judged at the time it sends."""
    read_clock = clock or (lambda: now)
    report = TickReport()
    with rt.db.reader() as conn:
        if versions.refresh(rt, conn):
            rt.catalog = catalog_for(rt.settings)  # templates fixed since: read them again
        # what there is to do, read once: each part below would otherwise take the write
        # lock to find nothing (what a part makes due for a later one is passed on)
        pending = store.pending_work(conn, now)
    changed = maturity_jobs.decay_due(rt, now) + maturity_jobs.recycle_unaccepted(rt, now)
    handed = handoffs.deliver_due(rt, now)
    if pending.expired:
        report.unknown = expire_and_reconcile(rt, now)
    if pending.evaluations or changed:
        report.entered = membership.enter_due_contacts(rt, now)
    if pending.sweeps:
        report.entered += membership.sweep(rt, now, should_stop)
    if pending.retries or pending.expired or handed:  # reconciled: retried now
        retried = retry_due(rt, now)
        report.retried = retried.handled
        report.add_delivery(retried)
    if not (pending.due or report.entered):
        return report
    while not should_stop():
        with collector_paused():
            if not run_batch(rt, max(now, read_clock()), report):
                break
    return report


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection during a batch: what a batch allocates is freed by
    reference counting as it goes, and the collections its thousands of live rows would
    trigger meanwhile (each one traversing them all) cost more than the batch's SQL.
    Cycles, if any, are collected once the batch is done."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_batch(rt: Runtime, now: datetime, report: TickReport) -> int:
    """Claim, execute and record one batch, then deliver it. Returns how many ran.

    On SQLite (one writer at a time) the claim is the first read of the transaction that
    runs and records the batch: no one can take those rows before it commits, so they need
    no mark, and a crash before the commit leaves them due as they were. On PostgreSQL the
    claim is a transaction of its own (a lease, marked), shared out with SKIP LOCKED."""
    lease_until = now + rt.lease
    skip = sorted(rt.paused)
    if rt.db.is_sqlite:
        with rt.db.begin() as conn:
            claimed = work.claim_due(conn, now, rt.settings.batch_size, rt.worker, lease_until,
                                     skip_journeys=skip, mark=False)
            if not claimed:
                return 0
            outcomes, batch = execute(conn, rt, claimed, now, lease_until, worker=None)
    else:
        with rt.db.begin() as conn:
            claimed = work.claim_due(conn, now, rt.settings.batch_size, rt.worker,
                                     lease_until, skip_journeys=skip)
        if not claimed:
            return 0
        with rt.db.begin() as conn:
            outcomes, batch = execute(conn, rt, claimed, now, lease_until, worker=rt.worker)
    outgoing = [m for o in outcomes for m in o.outgoing]
    hashes = {address: hashed for contact in batch.contacts.values()
              for channel, hashed in contact.address_hashes.items()
              if (address := contact.address(channel))}
    delivered = deliver(rt, outgoing, now, hashes=hashes)
    report.add_delivery(delivered)
    if delivered.failed:
        report.blocked += block_refused(rt, outgoing, now)
    report.processed += len(claimed)
    for outcome in outcomes:
        report.merge_messages(outcome.messages)
        state = outcome.enrollment["state"]
        report.failed += state == EnrollmentState.FAILED
        report.blocked += state == EnrollmentState.BLOCKED
        report.deferred += outcome.deferred
    return len(claimed)


def execute(conn: Connection, rt: Runtime, claimed: list[dict[str, Any]], now: datetime,
            lease_until: datetime, worker: str | None
            ) -> tuple[list[executor.Outcome], executor.Batch]:
    """Run the claimed enrollments on prefetched data and record their outcomes."""
    batch = prefetch(conn, rt, claimed, now)
    outcomes = [executor.run(row, batch, lease_until) for row in claimed]
    record(conn, rt, outcomes, batch, now, claimed, worker)
    return outcomes, batch


def prefetch(conn: Connection, rt: Runtime, claimed: list[dict[str, Any]],
             now: datetime) -> executor.Batch:
    ids = sorted({row["contact_id"] for row in claimed})
    contacts = store.load_contacts(conn, ids)
    running = {key: versions.version_of(rt, conn, *key)
               for key in {(row["journey_id"], row["journey_version"]) for row in claimed}}
    current = [rt.journeys[j] for j in {jid for jid, _ in running} if j in rt.journeys]
    journeys = list({id(j): j for j in [*current, *running.values()] if j}.values())
    membership.attach_event_counts(conn, contacts, journeys, now)
    # the suppression list is read for the addresses the batch's send steps may use
    channels = {step.channel for j in journeys for step in j.steps.values()
                if isinstance(step, SendStep)}
    for contact in contacts.values():
        contact.address_hashes = {channel: address_hash(address) for channel, address
                                  in (("email", contact.email), ("sms", contact.phone))
                                  if address and channel in channels}
    hashes = {h for c in contacts.values() for h in c.address_hashes.values()}
    state = gates.GateState(store.consent_statuses(conn, ids), store.suppressed_among(conn, hashes))
    for index, cap in enumerate(rt.settings.frequency_caps):
        counts = store.pressure_counts(conn, ids, now - cap.window, PRESSURE_STATES)
        for (cid, channel), count in counts.items():
            if cap.channel in ("any", channel):
                state.cap_counts[(cid, index)] += count
    return executor.Batch(rt.settings, rt.journeys, rt.catalog, rt.links, contacts, state, now,
                          running)


def record(conn: Connection, rt: Runtime, outcomes: list[executor.Outcome],
           batch: executor.Batch, now: datetime, claimed: list[dict[str, Any]],
           worker: str | None) -> None:
    """Write a batch's outcomes: messages first, then positions, then contact changes.
    `claimed`: the enrollments as claimed (only what changed is written); `worker`: whose
    claim is released (None: the claim was not marked, see `run_batch`)."""
    work.insert_messages(conn, [m for o in outcomes for m in o.messages])
    work.write_enrollments(conn, worker, [o.enrollment for o in outcomes], claimed)
    jstore.insert_step_runs(conn, [row for o in outcomes for row in o.steps])
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


def block_refused(rt: Runtime, outgoing: list[OutgoingMessage], now: datetime) -> int:
    """A journey message the provider refused for good, for a reason a person can fix (a
    sender or account setting, not the address: those are suppressed or withdrawn, and
    the gates skip them from then on): its enrollment goes back to that send step,
    blocked with the provider's answer, to run it again once fixed (`nurture retry`)."""
    public_ids = [m.public_id for m in outgoing if m.kind == MessageKind.JOURNEY]
    with rt.db.begin() as conn:
        refused = jstore.failed_journey_messages(conn, public_ids)
        if not refused:
            return 0
        contacts = sorted({r["contact_id"] for r in refused})
        state = gates.GateState(store.consent_statuses(conn, contacts), store.suppressed_among(
            conn, {address_hash(r["to_address"]) for r in refused if r["to_address"]}))
        fixable = [r for r in refused if address_hash(r["to_address"]) not in state.suppressed
                   and gates.consent_verdict(state, rt.settings, r["contact_id"], r["channel"],
                                             r["purpose"]) is None]
        enrollments = jstore.enrollment_rows(conn, [r["enrollment_id"] for r in fixable])
        updates, traces = [], []
        for message in fixable:
            row = enrollments.get(message["enrollment_id"])
            if row is None or row["claimed_by"] is not None:
                continue
            reason = f"step '{message['step_id']}': the provider refused: {message['error']}"
            row.update(step_id=message["step_id"])
            updates.append({"id": row["id"], "state": EnrollmentState.BLOCKED,
                            "step_id": message["step_id"], "seq": row["seq"] + 1,
                            "next_run_at": None, "wait_event": None, "wait_step": None,
                            "ended_at": None, "end_reason": "", "last_error": reason,
                            "updated_at": now})
            traces.append(executor.trace_row(row, "send", "blocked", reason, now))
        jstore.update_enrollments(conn, updates)
        jstore.insert_step_runs(conn, traces)
    return len(updates)

