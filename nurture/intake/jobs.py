"""The periodic maturity work of each tick: score decay, and recycling prospects that
sales did not accept in time.

Both take due rows through indexed queries (`decay_at`, `stage`), in batches, each batch
in its own transaction, so their cost follows the number due, not the number of contacts.
"""

from __future__ import annotations

import logging
from datetime import datetime

from nurture.durations import parse_duration
from nurture.engine.runtime import Runtime
from nurture.intake import maturity
from nurture.scoring import rules as scoring
from nurture.store import maturity as ms
from nurture.vocab import Stage

log = logging.getLogger("nurture.maturity")


def decay_due(rt: Runtime, now: datetime) -> int:
    """Decay the scores due at `now`; a hot lead can cool, and (when configured) a
    prospect can fall back to lead. Returns how many contacts were looked at.

    Points decay from the last decay (or the first points) to now, so a daemon that was
    stopped for a while catches up in one step.
    """
    config = rt.settings.scoring
    every = parse_duration(config.decay_every)
    total = 0
    while True:
        with rt.db.begin() as conn:
            due = ms.claim_decay(conn, now, rt.settings.batch_size)
            if not due:
                break
            contacts, decay_at = ms.lock_contacts(conn, due)
            writes = maturity.Writes(now)
            for cid, due_at in due.items():
                contact = contacts[cid]
                award = scoring.decay_award(contact.score, now - due_at + every, config)
                writes.add(contact, scoring.assess(contact, config, [award] if award else []))
            writes.flush(conn, rt.settings, decay_at, reschedule=True)
            maturity.leave_journeys(conn, rt, writes.moved, now)
        total += len(due)
    if total:
        log.debug("decay: %d contact(s)", total)
    return total


def recycle_unaccepted(rt: Runtime, now: datetime) -> int:
    """Prospects not accepted by sales within `accept_within` go back to nurture."""
    window = rt.settings.scoring.accept_within
    if not window:
        return 0
    before = now - parse_duration(window)
    total = 0
    while True:
        with rt.db.begin() as conn:
            ids = ms.stale_prospects(conn, before, rt.settings.batch_size)
            for cid in ids:
                maturity.set_stage(conn, rt, cid, Stage.RECYCLED,
                                   f"not accepted by sales within {window}", now,
                                   rule="accept_within")
        if not ids:
            break
        total += len(ids)
    if total:
        log.info("recycled %d prospect(s) not accepted within %s", total, window)
    return total
