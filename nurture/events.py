"""Ingest: one normalized event in, everything it changes out.

Stored once per (source, source_event_id); a replay changes nothing. Then, in order:
waiting enrollments resume, the runtime's event hooks run (scoring, replies, provider
consequences), journeys whose exit/goal now holds are left, and event-triggered journeys
are entered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from nurture import store
from nurture.loader import LoadedJourney
from nurture.views import ContactView
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import EnrollmentState

if TYPE_CHECKING:
    from nurture.engine import Runtime


@dataclass(frozen=True)
class IncomingEvent:
    type: str
    source: str
    occurred_at: datetime
    contact_id: int | None = None
    source_event_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    message_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


def ingest(conn: Connection, rt: Runtime, event: IncomingEvent, now: datetime) -> int | None:
    """Record and apply an event. Returns its id, or None when it was a replay.

    A batch of one for `intake.ingest_many`: one set of effects for both paths, in a few
    statements (the contact is read once for scoring, exits and entries)."""
    from nurture.intake import ingest_many

    return ingest_many(conn, rt, [event], now)[0]


def resume_waiting(conn: Connection, rt: Runtime, contact_id: int, event_type: str,
                   now: datetime) -> None:
    """Enrollments in a `wait_for` this event: continue at the `on_event` step now."""
    for row in store.waiting_for(conn, contact_id, event_type):
        loaded = rt.journeys.get(row["journey_id"])
        step = loaded.steps.get(row["step_id"]) if loaded else None
        if loaded is None or step is None:
            continue
        target = step.on_event or loaded.following[step.id]
        values: dict[str, Any] = {"wait_event": None, "updated_at": now}
        if target is None:
            values.update(state=EnrollmentState.COMPLETED, next_run_at=None, ended_at=now,
                          end_reason="completed", step_id=None)
        else:
            values.update(state=EnrollmentState.ACTIVE, step_id=target, next_run_at=now)
        store.update_enrollment(conn, row["id"], values)


def apply_exits(conn: Connection, rt: Runtime, contact_id: int, now: datetime) -> int:
    """Leave every journey whose goal or exit condition now holds for this contact."""
    from nurture.engine import attach_event_counts

    live = store.live_enrollments(conn, [contact_id], [s.value for s in _LIVE])
    if not live:
        return 0
    contacts = store.load_contacts(conn, [contact_id])
    journeys = [rt.journeys[r["journey_id"]] for r in live if r["journey_id"] in rt.journeys]
    attach_event_counts(conn, contacts, journeys, now)
    contact = contacts[contact_id]
    left = 0
    for row in live:
        loaded = rt.journeys.get(row["journey_id"])
        if loaded is None:
            continue
        reason = leave_reason(loaded, contact)
        if reason:
            store.update_enrollment(conn, row["id"], {
                "state": EnrollmentState.EXITED, "next_run_at": None, "ended_at": now,
                "end_reason": reason, "wait_event": None, "updated_at": now})
            left += 1
    return left



def leave_reason(loaded: LoadedJourney, contact: ContactView) -> str | None:
    journey = loaded.journey
    if journey.goal and loaded.condition(journey.goal).evaluate(contact):
        return "goal reached"
    if journey.exit_when and loaded.condition(journey.exit_when).evaluate(contact):
        return "exit condition"
    return None
