"""Who belongs in which journey: the one module that enters and leaves contacts.

The decisions are pure (`entries_for`, `leave_reason`); the functions that take a
connection fetch what they need in bulk and write the enrollments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.loader import LoadedJourney
from nurture.durations import parse_duration
from nurture.engine.runtime import Runtime
from nurture.store import queries as store
from nurture.views import ContactView
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import EnrollmentState


def entries_for(contact: ContactView, live: Iterable[Mapping[str, Any]],
                ended: Mapping[str, datetime], journeys: Iterable[LoadedJourney],
                now: datetime, event_type: str | None = None) -> list[LoadedJourney]:
    """Journeys the contact enters now, highest priority first.

    - event-triggered journeys are entered only on that event (plus their `when`);
    - a contact is in a journey at most once at a time;
    - re-entry follows the journey's policy (`never`, or a cool-down after the last exit);
    - at most one exclusive journey per purpose at a time.
    """
    live_journeys = {row["journey_id"] for row in live}
    busy_purposes = {row["purpose"] for row in live if row["exclusive"]}
    chosen: list[LoadedJourney] = []
    for loaded in sorted(journeys, key=lambda j: (-j.journey.priority, j.id)):
        journey = loaded.journey
        if loaded.id in live_journeys:
            continue
        if journey.exclusive and journey.purpose in busy_purposes:
            continue
        if not _matches(loaded, contact, event_type):
            continue
        if not _may_reenter(journey.reentry, ended.get(loaded.id), now):
            continue
        chosen.append(loaded)
        live_journeys.add(loaded.id)
        if journey.exclusive:
            busy_purposes.add(journey.purpose)
    return chosen


def _matches(loaded: LoadedJourney, contact: ContactView, event_type: str | None) -> bool:
    entry = loaded.journey.entry
    if entry.event is not None and entry.event != event_type:
        return False
    return entry.when is None or loaded.condition(entry.when).evaluate(contact)


def _may_reenter(policy: str, last_end: datetime | None, now: datetime) -> bool:
    if last_end is None:
        return True
    if policy == "never":
        return False
    return now >= last_end + parse_duration(policy)


def enrollment_row(loaded: LoadedJourney, contact_id: int, now: datetime) -> dict[str, Any]:
    journey = loaded.journey
    return {
        "contact_id": contact_id, "journey_id": journey.id, "journey_version": loaded.version,
        "purpose": journey.purpose, "exclusive": journey.exclusive,
        "step_id": journey.steps[0].id, "seq": 0, "state": "active", "next_run_at": now,
        "wait_event": None, "entered_at": now, "updated_at": now, "ended_at": None,
        "end_reason": "", "last_error": "", "claimed_by": None, "claimed_until": None,
    }


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
        for loaded in entries_for(contact, mine, last, journeys, now, event_type):
            rows.append(enrollment_row(loaded, cid, now))
    return store.insert_enrollments(conn, rows)




def attach_event_counts(conn: Connection, contacts: dict[int, ContactView],
                        journeys: list[LoadedJourney], now: datetime) -> None:
    wanted = {pair for j in journeys for c in j.conditions.values() for pair in c.event_windows()}
    if not wanted or not contacts:
        return
    counts = store.event_counts(conn, list(contacts), wanted, now)
    for cid, contact in contacts.items():
        contact.event_counts = {(t, w): counts.get((cid, t, w), 0) for t, w in wanted}



def move(conn: Connection, rt: Runtime, contact_id: int, targets: list[str],
         now: datetime) -> None:
    """`move_to`: enter the target journey now unless already in it."""
    live = {r["journey_id"] for r in store.live_enrollments(conn, [contact_id],
                                                            [s.value for s in _LIVE])}
    rows = [enrollment_row(rt.journeys[t], contact_id, now)
            for t in targets if t in rt.journeys and t not in live]
    store.insert_enrollments(conn, rows)


def apply_exits(conn: Connection, rt: Runtime, contact_id: int, now: datetime) -> int:
    """Leave every journey whose goal or exit condition now holds for this contact."""
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
