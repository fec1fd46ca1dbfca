"""Who belongs in which journey: the one module that enters and leaves contacts.

It covers every contact, not only the ones something flagged:
- on changes (a contact, an event, consent, a score): `evaluate` the flagged contacts;
- when a journey version is applied: `sweep` every contact against its entry, in id
  order and in batches of plain rows (set-based: a few statements per batch), so a
  condition journey applied today reaches every contact it matches, as a broadcast would;
- when time alone can change the answer: each evaluation schedules the contact's next one
  (`contact.evaluate_at`) at the end of a re-entry cool-down, or when the oldest event a
  windowed count (`events.X.count_7d`) reads leaves its window;
- by hand: `enroll_by_hand`, `unenroll`, and a removed journey's `exit_journey`.

The decisions are pure (`entries_for`, `leave_reason`, `next_look`); the functions that
take a connection fetch what they need in bulk and write the enrollments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.loader import LoadedJourney
from nurture.durations import parse_duration
from nurture.engine import executor
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError
from nurture.scoring import rules as scoring
from nurture.store import journeys as jstore
from nurture.store import queries as store
from nurture.views import ContactView
from nurture.vocab import LIVE_ENROLLMENT_STATES as _LIVE
from nurture.vocab import EnrollmentState

#: contacts read per statement when every contact is evaluated against a new entry
SWEEP_BATCH = 5000
#: an event counted in a window stops counting just after `occurred_at + window`
_PAST = timedelta(seconds=1)
LIVE = [s.value for s in _LIVE]
Live = Mapping[int, Sequence[Mapping[str, Any]]]
Ended = Mapping[int, Mapping[str, datetime]]


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


def cooldown_end(policy: str, last_end: datetime | None) -> datetime | None:
    """When a contact that left at `last_end` may enter again (None: never, or no end)."""
    if last_end is None or policy == "never":
        return None
    return last_end + parse_duration(policy)


def _may_reenter(policy: str, last_end: datetime | None, now: datetime) -> bool:
    if last_end is None:
        return True
    end = cooldown_end(policy, last_end)
    return end is not None and now >= end


def next_look(journeys: Iterable[LoadedJourney], live: Iterable[str],
              ended: Mapping[str, datetime], window_ends: Iterable[datetime],
              now: datetime) -> datetime | None:
    """When time alone may change what `entries_for` says of a contact: a cool-down of a
    journey it is not in ends, or an event leaves a counted window. None: only a change
    can (and changes flag the contact)."""
    inside = set(live)
    times = [t for t in window_ends if t > now]
    for loaded in journeys:
        if loaded.id not in inside:
            end = cooldown_end(loaded.journey.reentry, ended.get(loaded.id))
            if end is not None and end > now:
                times.append(end)
    return min(times, default=None)


def enrollment_row(loaded: LoadedJourney, contact_id: int, now: datetime) -> dict[str, Any]:
    journey = loaded.journey
    return {
        "contact_id": contact_id, "journey_id": journey.id, "journey_version": loaded.version,
        "purpose": journey.purpose, "exclusive": journey.exclusive,
        "step_id": journey.steps[0].id, "seq": 0, "state": "active", "next_run_at": now,
        "wait_event": None, "wait_step": None, "entered_at": now, "updated_at": now,
        "ended_at": None, "end_reason": "", "last_error": "", "claimed_by": None,
        "claimed_until": None,
    }


def condition_journeys(rt: Runtime) -> list[LoadedJourney]:
    """Journeys entered on a condition (not on an event): what evaluations consider."""
    return [j for j in rt.journeys.values() if j.journey.entry.event is None]


# ---- contacts something flagged -----------------------------------------------------


def enter_due_contacts(rt: Runtime, now: datetime) -> int:
    """Contacts flagged for (re)evaluation: entries, exits, and their next evaluation."""
    total = 0
    while True:
        with rt.db.begin() as conn:
            ids = store.contacts_to_evaluate(conn, now, rt.settings.batch_size)
            if not ids:
                return total
            total += evaluate(conn, rt, ids, now)


def evaluate(conn: Connection, rt: Runtime, contact_ids: list[int], now: datetime) -> int:
    """Leave the journeys whose exit or goal holds, enter those whose entry matches, and
    schedule when to look again. Returns how many enrollments were added."""
    journeys = condition_journeys(rt)
    contacts = store.load_contacts(conn, contact_ids)
    live = store.live_enrollments(conn, contact_ids, LIVE)
    inside = [rt.journeys[j] for j in {r["journey_id"] for r in live} if j in rt.journeys]
    window_ends = _attach_windows(conn, contacts, [*journeys, *inside], now, ids=contact_ids)
    ended: dict[int, dict[str, datetime]] = defaultdict(dict)
    for (cid, jid), at in store.last_ended(conn, contact_ids).items():
        if at is not None:
            ended[cid][jid] = at
    staying: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in live:
        if _leave(conn, rt, row, contacts.get(row["contact_id"]), now):
            ended[row["contact_id"]][row["journey_id"]] = now
        else:
            staying[row["contact_id"]].append(row)
    rows, due = decide(contacts.values(), staying, ended, journeys, now, window_ends)
    added = store.insert_enrollments(conn, rows)
    jstore.set_evaluations(conn, [(cid, due.get(cid)) for cid in contact_ids])
    return added


def enroll(conn: Connection, rt: Runtime, contact_ids: list[int], now: datetime,
           event_type: str | None = None) -> int:
    """Enter the journeys these contacts match now (condition entries, or those an event
    of `event_type` triggers). Returns how many enrollments were added."""
    journeys = [j for j in rt.journeys.values()
                if event_type is not None or j.journey.entry.event is None]
    contacts = store.load_contacts(conn, contact_ids)
    attach_event_counts(conn, contacts, journeys, now)
    live: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in store.live_enrollments(conn, contact_ids, LIVE):
        live[row["contact_id"]].append(row)
    ended: dict[int, dict[str, datetime]] = defaultdict(dict)
    for (cid, jid), at in store.last_ended(conn, contact_ids).items():
        if at is not None:
            ended[cid][jid] = at
    rows = [enrollment_row(loaded, cid, now) for cid, contact in contacts.items()
            for loaded in entries_for(contact, live[cid], ended[cid], journeys, now,
                                      event_type)]
    return store.insert_enrollments(conn, rows)


def _leave(conn: Connection, rt: Runtime, row: Mapping[str, Any],
           contact: ContactView | None, now: datetime) -> bool:
    loaded = rt.journeys.get(row["journey_id"])
    reason = leave_reason(loaded, contact) if loaded and contact else None
    if not reason:
        return False
    store.update_enrollment(conn, row["id"], {
        "state": EnrollmentState.EXITED, "next_run_at": None, "ended_at": now,
        "end_reason": reason, "wait_event": None, "wait_step": None, "updated_at": now})
    jstore.insert_step_runs(conn, [executor.trace_row(row, "exit", reason, "", now)])
    return True


def decide(contacts: Iterable[ContactView], live: Live, ended: Ended,
           journeys: Sequence[LoadedJourney], now: datetime,
           window_ends: Mapping[int, list[datetime]],
           eligible: Callable[[int], Sequence[LoadedJourney]] | None = None,
           ) -> tuple[list[dict[str, Any]], dict[int, datetime]]:
    """The enrollments to add, and each contact's next evaluation (when time may change
    the answer). `eligible`: the journeys a contact is evaluated against (default all)."""
    rows: list[dict[str, Any]] = []
    due: dict[int, datetime] = {}
    # contacts with no history in these journeys get the answer of the first contact with
    # the same values for what the entries read (profiles repeat across thousands)
    inputs = scoring.Inputs(j.condition(j.journey.entry.when) for j in journeys
                            if j.journey.entry.when)
    known: dict[tuple[Any, ...], list[LoadedJourney]] = {}
    for contact in contacts:
        cid = contact.id
        candidates = journeys if eligible is None else eligible(cid)
        mine, last = live.get(cid, ()), ended.get(cid, {})
        key = None if mine or any(j.id in last for j in candidates) else inputs.key(contact)
        if key is None:
            chosen = entries_for(contact, mine, last, candidates, now)
        else:
            memo = (*key, *(j.id for j in candidates))
            found = known.get(memo)
            if found is None:
                found = known[memo] = entries_for(contact, mine, last, candidates, now)
            chosen = found
        for loaded in chosen:
            rows.append(enrollment_row(loaded, cid, now))
        ends = window_ends.get(cid)
        if key is not None and not ends:
            continue  # no cool-down running, no window to leave: only a change matters
        inside = [r["journey_id"] for r in mine] + [j.id for j in chosen]
        when = next_look(candidates, inside, last, ends or (), now)
        if when is not None:
            due[cid] = when
    return rows, due


def _windows(journeys: Iterable[LoadedJourney], entries_only: bool) -> set[tuple[str, Any]]:
    """The (event type, window) counts the journeys' entry (and exit, goal) conditions read."""
    found: set[tuple[str, Any]] = set()
    for loaded in journeys:
        journey = loaded.journey
        sources = [journey.entry.when] if entries_only else [
            journey.entry.when, journey.exit_when, journey.goal]
        for source in sources:
            if source:
                found |= loaded.condition(source).event_windows()
    return found


def _attach_windows(conn: Connection, contacts: Mapping[int, ContactView],
                    journeys: Iterable[LoadedJourney], now: datetime, *,
                    ids: Sequence[int] = (), between: tuple[int, int] | None = None,
                    entries_only: bool = False) -> dict[int, list[datetime]]:
    """Put the counts the conditions read on the contacts; return when each contact's
    oldest counted event leaves each window."""
    wanted = _windows(journeys, entries_only)
    if not wanted or not contacts:
        return {}
    counts, oldest = jstore.event_windows(conn, wanted, now, ids=ids, between=between)
    for cid, contact in contacts.items():
        contact.event_counts = {(t, w): counts.get((cid, t, w), 0) for t, w in wanted}
    ends: dict[int, list[datetime]] = defaultdict(list)
    for (cid, _, window), first in oldest.items():
        ends[cid].append(first + window + _PAST)
    return ends


# ---- every contact, when a version is applied ------------------------------------------


def sweep(rt: Runtime, now: datetime, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Evaluate every contact against the entry of each journey applied since its last
    sweep, a batch per transaction (a stop resumes at the next contact). Returns how many
    enrolled."""
    with rt.db.reader() as conn:  # most ticks: no sweep, and no write lock taken
        if not jstore.sweeping(conn):
            return 0
    entered = 0
    while not should_stop():
        with rt.db.begin() as conn:
            done, added = _sweep_batch(conn, rt, now)
        entered += added
        if done:
            break
    return entered


def _sweep_batch(conn: Connection, rt: Runtime, now: datetime) -> tuple[bool, int]:
    cursors = {row["journey_id"]: row["sweep_after"] for row in jstore.sweeping(conn)
               if row["journey_id"] in rt.journeys
               and rt.journeys[row["journey_id"]].version == row["version"]}
    if not cursors:
        return True, 0
    contacts = jstore.contacts_after(conn, min(cursors.values()), SWEEP_BATCH)
    journeys = [rt.journeys[jid] for jid in sorted(cursors)]
    rows, due = evaluate_batch(conn, journeys, cursors, contacts, now)
    added = store.insert_enrollments(conn, rows)
    jstore.schedule_evaluations(conn, due.items())
    done = len(contacts) < SWEEP_BATCH
    for jid, after in cursors.items():
        jstore.set_sweep(conn, jid, None if done else max(after, contacts[-1].id))
    return done, added


def evaluate_batch(conn: Connection, journeys: Sequence[LoadedJourney],
                   cursors: Mapping[str, int], contacts: list[ContactView],
                   now: datetime) -> tuple[list[dict[str, Any]], dict[int, datetime]]:
    """`decide` for a run of contacts in id order, against the journeys whose sweep has
    not passed them yet: live enrollments, re-entry history and event counts read for the
    id range, a statement each."""
    if not contacts:
        return [], {}
    low, high = contacts[0].id - 1, contacts[-1].id
    live: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in jstore.live_between(conn, low, high):
        live[row["contact_id"]].append(row)
    ended: dict[int, dict[str, datetime]] = defaultdict(dict)
    for (cid, jid), at in jstore.last_ended_between(conn, low, high,
                                                    [j.id for j in journeys]).items():
        ended[cid][jid] = at
    by_id = {c.id: c for c in contacts}
    window_ends = _attach_windows(conn, by_id, journeys, now, between=(low, high),
                                  entries_only=True)

    def eligible(cid: int) -> Sequence[LoadedJourney]:
        return [j for j in journeys if cid > cursors.get(j.id, 0)]

    behind = all(cursors.get(j.id, 0) <= low for j in journeys)  # every journey takes all
    return decide(contacts, live, ended, journeys, now, window_ends,
                  None if behind else eligible)


def count_newcomers(conn: Connection, journeys: Sequence[LoadedJourney],
                    now: datetime) -> dict[str, int]:
    """How many contacts a sweep of these journeys would enroll now (`nurture plan`)."""
    counts = {j.id: 0 for j in journeys}
    wanted = [j for j in journeys if j.journey.entry.event is None]
    after = 0
    while wanted:
        contacts = jstore.contacts_after(conn, after, SWEEP_BATCH)
        rows, _ = evaluate_batch(conn, wanted, {}, contacts, now)
        for row in rows:
            counts[row["journey_id"]] += 1
        if len(contacts) < SWEEP_BATCH:
            break
        after = contacts[-1].id
    return counts


# ---- the rest: moves, exits, operators ---------------------------------------------------


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
    live = {r["journey_id"] for r in store.live_enrollments(conn, [contact_id], LIVE)}
    rows = [enrollment_row(rt.journeys[t], contact_id, now)
            for t in targets if t in rt.journeys and t not in live]
    store.insert_enrollments(conn, rows)


def apply_exits(conn: Connection, rt: Runtime, contact_id: int, now: datetime) -> int:
    """Leave every journey whose goal or exit condition now holds for this contact."""
    live = store.live_enrollments(conn, [contact_id], LIVE)
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


def enroll_by_hand(conn: Connection, rt: Runtime, contact_id: int, journey_id: str,
                   reason: str, now: datetime) -> int:
    """An operator enrolls a contact: the entry condition and re-entry policy are theirs
    to overrule, not the one live enrollment per journey nor one exclusive journey per
    purpose (consent still gates every send). Returns the enrollment id."""
    loaded = rt.journeys.get(journey_id)
    if loaded is None:
        raise NurtureError(f"journey {journey_id!r} is not applied (known: "
                           f"{', '.join(sorted(rt.journeys)) or 'none'})")
    for row in store.live_enrollments(conn, [contact_id], LIVE):
        if row["journey_id"] == journey_id:
            raise NurtureError(f"contact {contact_id} is already in journey {journey_id!r} "
                               f"(at step {row['step_id']}, {row['state']})")
        if loaded.journey.exclusive and row["exclusive"] and (
                row["purpose"] == loaded.journey.purpose):
            raise NurtureError(f"contact {contact_id} is in journey {row['journey_id']!r}, "
                               f"exclusive for purpose {row['purpose']!r}: unenroll it first")
    store.insert_enrollments(conn, [enrollment_row(loaded, contact_id, now)])
    [row] = jstore.live_rows(conn, journey_id, contact_id=contact_id)
    jstore.insert_step_runs(conn, [executor.trace_row(row, "operator", "enrolled", reason, now,
                                                      step_id=None)])
    return int(row["id"])


def unenroll(conn: Connection, contact_id: int, journey_id: str, reason: str,
             now: datetime) -> dict[str, Any]:
    """An operator takes a contact out of a journey, with the reason; other journeys may
    take it at its next evaluation. Returns the enrollment as it stood."""
    rows = jstore.live_rows(conn, journey_id, contact_id=contact_id)
    if not rows:
        raise NurtureError(f"contact {contact_id} is not in journey {journey_id!r}")
    exit_rows(conn, rows, f"unenrolled: {reason}", now)
    return rows[0]


def exit_journey(conn: Connection, journey_id: str, reason: str, now: datetime) -> int:
    """Every live enrollment of a journey leaves it (the journey is removed)."""
    rows = jstore.live_rows(conn, journey_id)
    exit_rows(conn, rows, reason, now)
    return len(rows)


def exit_rows(conn: Connection, rows: Sequence[Mapping[str, Any]], reason: str,
              now: datetime) -> None:
    """These enrollments exit now, with `reason`; a daemon holding one drops its result."""
    jstore.update_enrollments(conn, [{
        "id": row["id"], "state": EnrollmentState.EXITED, "next_run_at": None,
        "ended_at": now, "end_reason": reason, "wait_event": None, "wait_step": None,
        "claimed_by": None, "claimed_until": None, "updated_at": now} for row in rows])
    jstore.insert_step_runs(conn, [executor.trace_row(row, "operator", "exited", reason, now)
                                   for row in rows])
    store.flag_for_evaluation(conn, [row["contact_id"] for row in rows], now)
