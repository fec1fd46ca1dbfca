"""Batched ingest: what `events.ingest` does for one event, for many in a few statements.

`POST /events` batches, the webhooks and the CLI (a batch of one) come through here. The
effects and their order are those of ingesting the events one by one: store once per
(source, source_event_id), resume waiting enrollments, run the event hooks, leave
journeys whose exit/goal now holds, enter event-triggered journeys, flag the contacts
for re-evaluation.

Event hooks: a hook with a `many` attribute is called once for a run of events (it may
return the contacts as it left them — written, and flagged for re-evaluation — to spare
a reload); others once per event, and only for the event types in their `types`
attribute when they have one. An event such a per-event hook acts on (a reply) is
applied on its own, after everything before it and before everything after it: what a
reply does (stop-on-reply, consent) depends on where the earlier events left the contact.

One difference, on purpose: one by one, a contact may enter a journey at one event and
leave it at the next, or resume a `wait_for` and leave, before any of its steps ran; in a
run it goes straight to where the whole run leaves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.loader import LoadedJourney
from nurture.engine import membership
from nurture.engine.runtime import Runtime
from nurture.errors import ContactError
from nurture.intake.events import IncomingEvent
from nurture.scoring import rules as scoring
from nurture.store import maturity as ms
from nurture.store import queries as store
from nurture.views import ContactView
from nurture.vocab import EnrollmentState, is_valid_event_type


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
    for run in _runs(rt, fresh):
        apply_run(conn, rt, run, now)
    return ids


_NONE: frozenset[str] = frozenset()


def _runs(rt: Runtime, fresh: list[tuple[int, IncomingEvent]]
          ) -> Iterator[list[tuple[int, IncomingEvent]]]:
    """The events in runs applied together; an event a per-event hook acts on is a run
    of its own."""
    single = frozenset().union(*(hook.single_types for hook in rt.event_hooks))
    run: list[tuple[int, IncomingEvent]] = []
    for item in fresh:
        if item[1].type in single:
            if run:
                yield run
            yield [item]
            run = []
        else:
            run.append(item)
    if run:
        yield run


def apply_run(conn: Connection, rt: Runtime, run: Sequence[tuple[int, IncomingEvent]],
              now: datetime) -> None:
    """What stored events change, for a run of them (see the module doc)."""
    resume_waiting(conn, rt, run, now)
    #: contacts as the last hooks left them (a batched hook may return them)
    known: dict[int, ContactView] = {}
    for hook in rt.event_hooks:
        known.update(hook.on_run(conn, rt, run, now))
        acted = [(eid, event) for eid, event in run if event.type in hook.single_types]
        for event_id, event in acted:
            hook.on_event(conn, rt, event_id, event, now)
        if acted:
            known.clear()  # it may have changed contacts
    triggers = {j.journey.entry.event for j in rt.journeys.values() if j.journey.entry.event}
    triggered: dict[int, frozenset[str]] = {}  # contact → the journey triggers among its events
    for _, event in run:
        cid = event.contact_id or 0
        found = triggered.get(cid, _NONE)
        triggered[cid] = found | {event.type} if event.type in triggers else found
    follow_journeys(conn, rt, triggered, now, known)
    # the contacts a batched hook returned are flagged already (written with evaluate_at)
    ms.mark_for_evaluation(conn, [cid for cid in triggered if cid not in known], now)


def resume_waiting(conn: Connection, rt: Runtime, fresh: Sequence[tuple[int, IncomingEvent]],
                   now: datetime) -> None:
    """One query finds who waits for these events; `resume_one` moves them."""
    pairs = {(e.contact_id, e.type) for _, e in fresh}
    waiting = ms.waiting_for_many(conn, {cid for cid, _ in pairs if cid is not None},
                                  {t for _, t in pairs})
    for cid, event_type in sorted({(r["contact_id"], r["wait_event"]) for r in waiting}):
        if (cid, event_type) in pairs:
            resume_one(conn, rt, cid, event_type, now)


def follow_journeys(conn: Connection, rt: Runtime, triggered: Mapping[int, AbstractSet[str]],
                    now: datetime, known: dict[int, ContactView] | None = None) -> None:
    """`events.apply_exits`, then `engine.enroll` for each event type, for many contacts:
    contacts (unless `known`), live enrollments and event counts fetched once for both."""
    known = known or {}
    contacts = {cid: known[cid] for cid in triggered if cid in known}
    if len(contacts) < len(triggered):
        contacts.update(ms.contact_views(conn, set(triggered) - set(contacts))[0])
    journeys = list(rt.journeys.values())
    enrolled = ms.live_enrollments(conn, contacts)
    _count_events(conn, contacts, journeys, enrolled, now)
    decisions = _Decisions(journeys, now)
    keys = {cid: decisions.inputs.key(contact) for cid, contact in contacts.items()}
    live: dict[int, list[dict[str, Any]]] = defaultdict(list)
    leaving = []
    for row in enrolled:
        loaded = rt.journeys.get(row["journey_id"])
        cid = row["contact_id"]
        reason = decisions.leave(loaded, contacts[cid], keys[cid]) if loaded else None
        if reason:
            leaving.append({"id": row["id"], "state": EnrollmentState.EXITED,
                            "next_run_at": None, "ended_at": now, "end_reason": reason,
                            "wait_event": None, "updated_at": now})
        else:
            live[cid].append(row)
    ms.update_enrollments(conn, leaving)
    _enter(conn, decisions, contacts, keys, live, triggered, now)


def _enter(conn: Connection, decisions: _Decisions, contacts: dict[int, ContactView],
           keys: dict[int, tuple[Any, ...] | None], live: dict[int, list[dict[str, Any]]],
           triggered: Mapping[int, AbstractSet[str]], now: datetime) -> None:
    """`engine.enroll` for each event type the contacts had (and none)."""
    journeys = decisions.journeys
    triggers = {j.journey.entry.event for j in journeys if j.journey.entry.event}
    kinds = {cid: (*sorted(triggered[cid] & triggers), None) for cid in contacts}
    # the re-entry history matters only to contacts some journey would take
    hopeful = [cid for cid, contact in contacts.items() if any(
        decisions.would_enter(contact, keys[cid], live[cid], kind) for kind in kinds[cid])]
    ended: dict[int, dict[str, datetime]] = defaultdict(dict)
    for (cid, journey_id), at in store.last_ended(conn, hopeful).items():
        if at is not None:
            ended[cid][journey_id] = at
    rows: list[dict[str, Any]] = []
    for cid in hopeful:
        mine = live[cid]
        for kind in kinds[cid]:
            for loaded in membership.entries_for(contacts[cid], mine, ended[cid], journeys,
                                                 now, kind):
                mine.append(membership.enrollment_row(loaded, cid, now))
                rows.append(mine[-1])
    store.insert_enrollments(conn, rows)


class _Decisions:
    """A batch's exit and entry decisions, remembered by what the journeys' conditions
    read of a contact (`scoring.Inputs`): thousands of contacts share a few stages and
    temperatures, so each decision is evaluated once per distinct case."""

    def __init__(self, journeys: list[LoadedJourney], now: datetime) -> None:
        self.journeys, self.now = journeys, now
        self.inputs = scoring.Inputs(j.condition(source) for j in journeys
                                     for source in _deciding(j) if source)
        self.known: dict[tuple[Any, ...], Any] = {}

    def leave(self, loaded: LoadedJourney, contact: ContactView,
              key: tuple[Any, ...] | None) -> str | None:
        """`events.leave_reason`."""
        if key is None:
            return membership.leave_reason(loaded, contact)
        memo = ("leave", loaded.id, key)
        if memo not in self.known:
            self.known[memo] = membership.leave_reason(loaded, contact)
        return self.known[memo]  # type: ignore[no-any-return]

    def would_enter(self, contact: ContactView, key: tuple[Any, ...] | None,
                    live: list[dict[str, Any]], kind: str | None) -> bool:
        """Whether `entry.entries_for` takes the contact anywhere, re-entry aside."""
        if key is None:
            return bool(membership.entries_for(contact, live, {}, self.journeys, self.now, kind))
        # what entries_for reads of the live enrollments: journeys and exclusive purposes
        busy = tuple(sorted((r["journey_id"], r["purpose"], bool(r["exclusive"]))
                            for r in live))
        memo = ("enter", key, busy, kind)
        if memo not in self.known:
            self.known[memo] = bool(membership.entries_for(contact, live, {}, self.journeys,
                                                      self.now, kind))
        return self.known[memo]  # type: ignore[no-any-return]


def _deciding(loaded: LoadedJourney) -> tuple[str | None, ...]:
    """The conditions of entries, exits and goals (branches are the steps' business)."""
    journey = loaded.journey
    return journey.entry.when, journey.exit_when, journey.goal


def _count_events(conn: Connection, contacts: dict[int, ContactView],
                  journeys: list[LoadedJourney], enrolled: list[dict[str, Any]],
                  now: datetime) -> None:
    """The event counts that the conditions evaluated next read: entries' for every
    contact, exits' and goals' for the contacts in those journeys (not branches')."""
    entering = {pair for j in journeys if j.journey.entry.when
                for pair in j.condition(j.journey.entry.when).event_windows()}
    leaving = {j.id: {pair for source in (j.journey.exit_when, j.journey.goal) if source
                      for pair in j.condition(source).event_windows()} for j in journeys}
    wanted: dict[tuple[str, Any], set[int]] = {pair: set(contacts) for pair in entering}
    for row in enrolled:
        for pair in leaving.get(row["journey_id"], ()):
            wanted.setdefault(pair, set()).add(row["contact_id"])
    for pair, ids in wanted.items():
        counts = store.event_counts(conn, sorted(ids), [pair], now)
        for cid in ids:
            contact = contacts[cid]
            contact.event_counts = {**contact.event_counts, pair: counts.get((cid, *pair), 0)}


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


def ingest(conn: Connection, rt: Runtime, event: IncomingEvent, now: datetime) -> int | None:
    """Record and apply an event. Returns its id, or None when it was a replay.

    A batch of one for `intake.ingest_many`: one set of effects for both paths, in a few
    statements (the contact is read once for scoring, exits and entries)."""
    return ingest_many(conn, rt, [event], now)[0]


def resume_one(conn: Connection, rt: Runtime, contact_id: int, event_type: str,
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
