"""Read a journey around the parts its schema refused, so one bad step hides nothing else.

When a file fails the schema (a step of an unknown type, a duration written `3 days`),
the problems found there are already reported. What is left is read as the marketer
wrote it, with stand-ins for the refused parts, so that the conditions, templates,
targets and graph of the rest of the file are checked in the same run. A salvaged
journey is for checking only: it has problems, so it never runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from nurture.authoring import journey as graph
from nurture.authoring.journey import Entry, Journey

Loc = tuple[str | int, ...]

#: the event a stand-in waits for and the entry a refused `entry` becomes (valid, inert)
_INERT_EVENT = "x.unreadable"
#: values for required top-level keys the schema refused; checks of these keys are skipped
_FILLERS: dict[str, Any] = {"name": "", "purpose": "", "entry": {"event": _INERT_EVENT}}
_JOURNEY_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, *Journey.model_fields["id"].metadata])


class UnreadableStep(graph.WaitForStep):
    """Stands in for a step the schema refused (its problems are already reported).

    It is a pause, so it closes no loop, and it may lead to the next step or to any step
    its text names, so it makes no step look unreachable: the checks around it report
    only what is wrong elsewhere.
    """

    #: the step ids written anywhere in the refused step (targets it may have meant)
    names: tuple[str, ...] = ()


def salvage(data: dict[str, Any], refused: set[Loc], stem: str
            ) -> tuple[Journey, frozenset[Loc]] | None:
    """The journey without the refused top-level keys and steps, and what was replaced.

    `refused` holds the places the schema refused, each `(key,)` or `("steps", index)`.
    None when too little is left to check (no list of steps).
    """
    raw_steps = data.get("steps")
    if ("steps",) in refused or not isinstance(raw_steps, list) or not raw_steps:
        return None
    keys = {str(loc[0]) for loc in refused if loc[0] != "steps"}
    bad_steps = {loc[1] for loc in refused if loc[0] == "steps" and isinstance(loc[1], int)}
    top = {k: v for k, v in data.items() if k not in keys and k != "steps"}
    for key in keys & {*_FILLERS, "id"}:
        top[key] = _filler(key, data, stem)
    good = [step for index, step in enumerate(raw_steps) if index not in bad_steps]
    try:
        journey = Journey.model_validate(
            {**top, "steps": good or [{"id": "unreadable", "type": "exit"}]},
            by_alias=True, by_name=False)
    except ValidationError:
        return None  # refused for a reason not pinned to one key: nothing to build on
    kept = iter(journey.steps)
    steps = [_stand_in(index, raw) if index in bad_steps else next(kept)
             for index, raw in enumerate(raw_steps)]
    replaced = {(key,) for key in keys} | {("steps", index) for index in bad_steps}
    return journey.model_copy(update={"steps": steps}), frozenset(replaced)


def _filler(key: str, data: dict[str, Any], stem: str) -> Any:
    if key == "id":
        return stem if _valid_id(stem) else "unreadable"
    if key == "entry":
        entry = data.get("entry")
        if isinstance(entry, dict):  # keep the condition, if it is one, to check it
            kept = {k: v for k, v in entry.items() if k in ("when", "event") and isinstance(v, str)}
            try:
                return Entry.model_validate(kept).model_dump(exclude_none=True)
            except ValidationError:
                pass
    return _FILLERS[key]


def _valid_id(text: str) -> bool:
    try:
        _JOURNEY_ID.validate_python(text)
    except ValidationError:
        return False
    return True


def _stand_in(index: int, raw: Any) -> UnreadableStep:
    step_id = raw.get("id") if isinstance(raw, dict) else None
    names = tuple(dict.fromkeys(_strings(
        {k: v for k, v in raw.items() if k != "id"} if isinstance(raw, dict) else raw)))
    return UnreadableStep.model_construct(
        id=step_id if isinstance(step_id, str) else f"#{index + 1}", type="wait_for",
        event=_INERT_EVENT, timeout="1s", on_event=None, on_timeout=None, note="", names=names)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
