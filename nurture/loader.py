"""Read journey files into `Journey` data, with every problem reported as `path:line`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nurture import journey as graph
from nurture.conditions import Condition, parse
from nurture.errors import ConditionError, Problem
from nurture.journey import STEP_KINDS, Journey
from nurture.vocab import is_valid_event_type

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedJourney:
    """A journey with where it came from and its conditions compiled once."""

    journey: Journey
    path: Path
    #: content hash: changes whenever the file changes
    version: str
    lines: dict[Loc, int] = field(repr=False, default_factory=dict)
    conditions: dict[str, Condition] = field(repr=False, default_factory=dict)

    @property
    def id(self) -> str:
        return self.journey.id

    @cached_property
    def steps(self) -> dict[str, Any]:
        """Step id → step (computed once: the tick looks steps up constantly)."""
        return graph.step_map(self.journey)

    @cached_property
    def following(self) -> dict[str, str | None]:
        """Step id → the id of the step after it in file order."""
        ids = [s.id for s in self.journey.steps]
        return {sid: (ids[i + 1] if i + 1 < len(ids) else None) for i, sid in enumerate(ids)}

    def line_of(self, *loc: str | int) -> int:
        return line_for(self.lines, loc)

    def condition(self, source: str) -> Condition:
        return self.conditions[source]


def _line_map(node: yaml.Node, loc: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map every key path of a YAML document to its 1-based line."""
    out = {} if out is None else out
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*loc, index), out)
    return out


def line_for(lines: dict[Loc, int], loc: Iterable[str | int]) -> int:
    """The line of the deepest known prefix of `loc` (pydantic adds union tags: skip them)."""
    best: Loc = ()
    for part in loc:
        candidate = (*best, part)
        if candidate in lines:
            best = candidate
    return lines.get(best, 1)


def _model_problems(path: Path, lines: dict[Loc, int], error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = ".".join(str(p) for p in loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            parent = ".".join(str(p) for p in loc[:-1]) or "journey"
            message = f"unknown key '{loc[-1]}' in {parent}"
        elif kind == "union_tag_invalid":
            tag = item.get("ctx", {}).get("tag")
            message = f"{where}: unknown step type '{tag}' (known: {', '.join(STEP_KINDS)})"
        elif kind == "union_tag_not_found":
            message = f"{where}: step has no 'type' (one of: {', '.join(STEP_KINDS)})"
        elif kind == "missing":
            message = f"{where}: required key is missing"
        else:
            message = f"{where}: {item['msg']}"
        problems.append(Problem(str(path), line_for(lines, loc), message))
    return problems


def read_journey(path: Path) -> tuple[LoadedJourney | None, list[Problem]]:
    """Parse one file. Problems here are syntax and shape; see `check_journeys` for the rest."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return None, [Problem(str(path), line, f"YAML syntax error: {getattr(e, 'problem', e)}")]
    if node is None or not isinstance(data, dict):
        return None, [Problem(str(path), 1, "a journey file must be a YAML mapping")]
    lines = _line_map(node)
    try:
        journey = Journey.model_validate(data)
    except ValidationError as e:
        return None, _model_problems(path, lines, e)
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    conditions, problems = _compile_conditions(path, lines, journey)
    loaded = LoadedJourney(journey, path, version, lines, conditions)
    if path.stem != journey.id:
        problems.append(Problem(str(path), lines.get(("id",), 1),
                                f"journey id '{journey.id}' differs from file name '{path.stem}'"))
    return loaded, problems


def condition_sources(journey: Journey) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    if journey.entry.when:
        found.append((("entry", "when"), journey.entry.when))
    for key in ("exit_when", "goal"):
        if getattr(journey, key):
            found.append(((key,), getattr(journey, key)))
    for index, step in enumerate(journey.steps):
        if isinstance(step, graph.BranchStep):
            for case_index, case in enumerate(step.cases):
                found.append((("steps", index, "cases", case_index, "if"), case.when))
    return found


def _compile_conditions(path: Path, lines: dict[Loc, int],
                        journey: Journey) -> tuple[dict[str, Condition], list[Problem]]:
    compiled: dict[str, Condition] = {}
    problems = []
    for loc, source in condition_sources(journey):
        try:
            compiled[source] = parse(source)
        except ConditionError as e:
            problems.append(Problem(str(path), line_for(lines, loc), f"condition: {e}"))
    return compiled, problems


def check_journey(loaded: LoadedJourney, known_journeys: set[str],
                  purposes: set[str]) -> list[Problem]:
    """Graph and cross-reference rules for one journey."""
    journey, where = loaded.journey, str(loaded.path)
    problems: list[Problem] = []

    def report(loc: Loc, message: str) -> None:
        problems.append(Problem(where, loaded.line_of(*loc), message))

    seen: dict[str, int] = {}
    for index, step in enumerate(journey.steps):
        if step.id in seen:
            report(("steps", index, "id"), f"duplicate step id '{step.id}' "
                   f"(first at line {loaded.line_of('steps', seen[step.id], 'id')})")
        seen.setdefault(step.id, index)
    for index, step in enumerate(journey.steps):
        for target in graph.jump_targets(step):
            if target not in seen:
                report(("steps", index), f"step '{step.id}' goes to unknown step '{target}'")
        if isinstance(step, graph.MoveToStep) and step.journey not in known_journeys:
            report(("steps", index, "journey"), f"move_to unknown journey '{step.journey}'")
        if isinstance(step, graph.SendStep) and step.purpose and step.purpose not in purposes:
            report(("steps", index, "purpose"), _purpose_message(step.purpose, purposes))
        if isinstance(step, graph.WaitForStep) and not is_valid_event_type(step.event):
            report(("steps", index, "event"), f"unknown event type '{step.event}'")
    reachable = graph.reachable(journey)
    for index, step in enumerate(journey.steps):
        if step.id not in reachable:
            report(("steps", index, "id"), f"step '{step.id}' is unreachable")
    for cycle in graph.loops_without_wait(journey):
        first = [s.id for s in journey.steps].index(cycle[0])
        report(("steps", first), f"loop with no wait: {' -> '.join([*cycle, cycle[0]])}")
    if journey.purpose not in purposes:
        report(("purpose",), _purpose_message(journey.purpose, purposes))
    if journey.entry.event and not is_valid_event_type(journey.entry.event):
        report(("entry", "event"), f"unknown event type '{journey.entry.event}'")
    for old, new in journey.migrate.items():
        if new not in seen:
            report(("migrate", old), f"migrate target '{new}' is not a step")
        if old in seen:
            report(("migrate", old), f"migrate source '{old}' is still a step")
    return problems


def _purpose_message(purpose: str, purposes: set[str]) -> str:
    declared = ", ".join(sorted(purposes))
    return f"purpose '{purpose}' is not declared in config (declared: {declared})"


def load_journeys(directory: Path, purposes: set[str]) -> tuple[list[LoadedJourney], list[Problem]]:
    """Every `*.yaml`/`*.yml` in `directory`, with all problems found."""
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    loaded: list[LoadedJourney] = []
    problems: list[Problem] = []
    for path in paths:
        item, found = read_journey(path)
        problems.extend(found)
        if item is not None:
            loaded.append(item)
    ids: dict[str, LoadedJourney] = {}
    for item in loaded:
        if item.id in ids:
            other = ids[item.id].path
            problems.append(Problem(str(item.path), item.line_of("id"),
                                    f"duplicate journey id '{item.id}' (also in {other})"))
        ids.setdefault(item.id, item)
    for item in loaded:
        problems.extend(check_journey(item, set(ids), purposes))
    return loaded, problems
