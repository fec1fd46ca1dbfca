"""What an edit changes in a journey, step by step: the pure half of `nurture plan`.

Two versions of a journey (the applied one and the file's) in, their differences out;
the counts of contacts each difference concerns come from the database (services).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nurture.authoring import journey as J

#: what decides who enters (a change here re-evaluates every contact)
ENTRY_KEYS = ("entry", "reentry", "priority", "exclusive")
#: what decides who leaves
EXIT_KEYS = ("exit_when", "goal")
#: the rest of the journey's settings (steps and migrate aside)
OTHER_KEYS = ("name", "description", "purpose", "send_window", "stop_on_reply")


@dataclass(frozen=True)
class Change:
    """One setting's value before and after (None: not set)."""

    key: str
    before: Any
    after: Any


@dataclass
class JourneyDiff:
    journey_id: str
    #: added, removed, changed or unchanged
    status: str
    steps_added: list[str] = field(default_factory=list)
    steps_removed: list[str] = field(default_factory=list)
    steps_changed: list[str] = field(default_factory=list)
    #: wait and wait_for steps kept under their id but with other settings
    waits_changed: list[str] = field(default_factory=list)
    entry: list[Change] = field(default_factory=list)
    exits: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)

    @property
    def entry_changed(self) -> bool:
        return self.status == "added" or bool(self.entry)


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _step(step: Any) -> dict[str, Any]:
    """A step's settings, without its note (free text for the marketer)."""
    data: dict[str, Any] = _dump(step)
    data.pop("note", None)
    return data


def _changes(before: J.Journey, after: J.Journey, keys: tuple[str, ...]) -> list[Change]:
    found = []
    for key in keys:
        old, new = _dump(getattr(before, key)), _dump(getattr(after, key))
        if old != new:
            found.append(Change(key, old, new))
    return found


def diff(journey_id: str, before: J.Journey | None, after: J.Journey | None) -> JourneyDiff:
    """How `after` (the file) differs from `before` (applied); None: absent."""
    if before is None and after is None:
        raise ValueError("nothing to compare")
    if before is None:
        assert after is not None
        return JourneyDiff(journey_id, "added", steps_added=[s.id for s in after.steps])
    if after is None:
        return JourneyDiff(journey_id, "removed", steps_removed=[s.id for s in before.steps])
    old, new = J.step_map(before), J.step_map(after)
    changed = [sid for sid in new if sid in old and _step(old[sid]) != _step(new[sid])]
    result = JourneyDiff(
        journey_id, "unchanged",
        steps_added=[sid for sid in new if sid not in old],
        steps_removed=[sid for sid in old if sid not in new],
        steps_changed=changed,
        waits_changed=[sid for sid in changed
                       if isinstance(old[sid], J.WaitStep | J.WaitForStep)],
        entry=_changes(before, after, ENTRY_KEYS),
        exits=_changes(before, after, EXIT_KEYS),
        other=_changes(before, after, (*OTHER_KEYS, "migrate")),
    )
    order_changed = [s.id for s in before.steps if s.id in new] != [
        s.id for s in after.steps if s.id in old]
    if order_changed:
        result.other.append(Change("step order", [s.id for s in before.steps],
                                   [s.id for s in after.steps]))
    if (result.steps_added or result.steps_removed or result.steps_changed or result.entry
            or result.exits or result.other):
        result.status = "changed"
    return result
