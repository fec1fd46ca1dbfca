"""Batched ingest: what `events.ingest` does for one event, for many in a few statements.

`POST /events` batches (and the benchmark) come through here. The effects and their order
are those of `events.ingest`: store once per (source, source_event_id), resume waiting
enrollments, run the event hooks (a hook with a `many` attribute is called once for the
batch, others once per event; a batched hook may return the contacts as it left them,
to spare a reload), leave journeys whose exit/goal now holds, enter
event-triggered journeys, flag the contacts for re-evaluation.

One difference, on purpose: one by one, a contact may enter a journey at one event and
leave it at the next, before any of its steps ran; in a batch it enters only the
journeys that match where the whole batch leaves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from nurture import entry, events, store
from nurture import maturity_store as ms
from nurture.errors import ContactError
from nurture.events import IncomingEvent
from nurture.loader import LoadedJourney
from nurture.views import ContactView
from nurture.vocab import EnrollmentState, is_valid_event_type

if TYPE_CHECKING:
    from nurture.engine import Runtime


def check(event: IncomingEvent) -> None:
    """The checks of `events.ingest`: ContactError when the event cannot be stored."""
    if not is_valid_event_type(event.type):
        raise ContactError(f"unknown event type {event.type!r} (custom types start with 'x.')")
    if event.occurred_at.tzinfo is None:
        raise ContactError("event time must carry a time zone")


def ingest_many(conn: Connection, rt: Runtime, batch: Sequence[IncomingEvent],
                now: datetime) -> list[int | None]:
    """Record and apply events, in order. Each one's id, or None when it was a replay."""
    for event in batch:
        check(event)
    ids = ms.insert_events(conn, [{
        "contact_id": e.contact_id, "type": e.type, "source": e.source,
        "source_event_id": e.source_event_id, "occurred_at": e.occurred_at,
        "received_at": now, "message_id": e.message_id, "properties": dict(e.properties),
        "raw": dict(e.raw)} for e in batch])
    fresh = [(eid, e) for eid, e in zip(ids, batch, strict=True)
             if eid is not None and e.contact_id is not None]
    if not fresh:
        return ids
    resume_waiting(conn, rt, fresh, now)
    #: contacts as the last hooks left them (a batched hook may return them)
    known: dict[int, ContactView] = {}
    for hook in rt.event_hooks:
        many = getattr(hook, "many", None)
        if many is not None:
            known.update(many(conn, rt, fresh, now) or {})
        else:
            for event_id, event in fresh:
                hook(conn, rt, event_id, event, now)
            known.clear()  # it may have changed contacts
    triggered: dict[int, set[str]] = defaultdict(set)
    for _, event in fresh:
        triggered[event.contact_id or 0].add(event.type)
    follow_journeys(conn, rt, triggered, now, known)
    ms.mark_for_evaluation(conn, triggered, now)
    return ids


def resume_waiting(conn: Connection, rt: Runtime, fresh: Sequence[tuple[int, IncomingEvent]],
                   now: datetime) -> None:
    """One query finds who waits for these events; `events.resume_waiting` moves them."""
    pairs = {(e.contact_id, e.type) for _, e in fresh}
    waiting = ms.waiting_for_many(conn, {cid for cid, _ in pairs if cid is not None},
                                  {t for _, t in pairs})
    for cid, event_type in sorted({(r["contact_id"], r["wait_event"]) for r in waiting}):
        if (cid, event_type) in pairs:
            events.resume_waiting(conn, rt, cid, event_type, now)


def follow_journeys(conn: Connection, rt: Runtime, triggered: dict[int, set[str]],
                    now: datetime, known: dict[int, ContactView] | None = None) -> None:
    """`events.apply_exits`, then `engine.enroll` for each event type, for many contacts:
    contacts (unless `known`), live enrollments and event counts fetched once for both."""
    known = known or {}
    contacts = {cid: known[cid] for cid in triggered if cid in known}
    if len(contacts) < len(triggered):
        contacts.update(ms.contact_views(conn, set(triggered) - set(contacts))[0])
    journeys = list(rt.journeys.values())
    _count_events(conn, contacts, journeys, now)
    live: dict[int, list[dict[str, Any]]] = defaultdict(list)
    leaving = []
    for row in ms.live_enrollments(conn, contacts):
        loaded = rt.journeys.get(row["journey_id"])
        reason = events.leave_reason(loaded, contacts[row["contact_id"]]) if loaded else None
        if reason:
            leaving.append({"id": row["id"], "state": EnrollmentState.EXITED,
                            "next_run_at": None, "ended_at": now, "end_reason": reason,
                            "wait_event": None, "updated_at": now})
        else:
            live[row["contact_id"]].append(row)
    ms.update_enrollments(conn, leaving)
    triggers = {j.journey.entry.event for j in journeys if j.journey.entry.event}
    kinds = {cid: [*sorted(triggered[cid] & triggers), None] for cid in contacts}
    # the re-entry history matters only to contacts some journey would take
    hopeful = [cid for cid, contact in contacts.items() if any(
        entry.entries_for(contact, live[cid], {}, journeys, now, kind) for kind in kinds[cid])]
    ended: dict[int, dict[str, datetime]] = defaultdict(dict)
    for (cid, journey_id), at in store.last_ended(conn, hopeful).items():
        if at is not None:
            ended[cid][journey_id] = at
    rows: list[dict[str, Any]] = []
    for cid in hopeful:
        mine = live[cid]
        for kind in kinds[cid]:
            for loaded in entry.entries_for(contacts[cid], mine, ended[cid], journeys, now, kind):
                mine.append(entry.enrollment_row(loaded, cid, now))
                rows.append(mine[-1])
    ms.insert_enrollments(conn, rows)


def _count_events(conn: Connection, contacts: dict[int, ContactView],
                  journeys: list[LoadedJourney], now: datetime) -> None:
    """The event counts that entry, exit and goal conditions read (not branches')."""
    wanted = {pair for j in journeys
              for source in (j.journey.entry.when, j.journey.exit_when, j.journey.goal) if source
              for pair in j.condition(source).event_windows()}
    if not wanted or not contacts:
        return
    counts = store.event_counts(conn, list(contacts), wanted, now)
    for cid, contact in contacts.items():
        contact.event_counts = {(t, w): counts.get((cid, t, w), 0) for t, w in wanted}


def ingest_for(conn: Connection, rt: Runtime,
               items: Sequence[tuple[str | None, int | None, IncomingEvent]],
               now: datetime) -> list[int | None | str]:
    """Events naming their contact by email or id (the HTTP API): each one's event id,
    None for a replay, or why it was refused. Events of unknown contacts are refused, not
    stored: tracking must not create contacts (no consent, no list hygiene)."""
    by_email = ms.contact_ids_by_email(conn, [e for e, _, _ in items if e])
    known = ms.existing_contact_ids(conn, [i for _, i, _ in items if i is not None])
    outcome: list[int | None | str] = []
    accepted: list[tuple[int, IncomingEvent]] = []
    for index, (email, contact_id, event) in enumerate(items):
        found = by_email.get(email.lower()) if email else contact_id
        if email and contact_id is not None and found != contact_id:
            outcome.append(f"email {email!r} and contact_id {contact_id} are not the same contact")
        elif found is None or (not email and found not in known):
            outcome.append(f"no contact {email or contact_id!r}: events are recorded for "
                           "known contacts only")
        else:
            outcome.append(None)
            accepted.append((index, replace(event, contact_id=found)))
    ids = ingest_many(conn, rt, [event for _, event in accepted], now)
    for (index, _), event_id in zip(accepted, ids, strict=True):
        outcome[index] = event_id
    return outcome
