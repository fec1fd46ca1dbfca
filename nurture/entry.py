"""Who enters which journey: pure decisions over a contact and its enrollments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from nurture.durations import parse_duration
from nurture.loader import LoadedJourney
from nurture.views import ContactView


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
