"""Read journey files into `Journey` data, with every problem reported as `path:line`."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nurture.authoring import condition_checks, salvage
from nurture.authoring import journey as graph
from nurture.authoring.conditions import Condition, parse
from nurture.authoring.journey import STEP_KINDS, Journey
from nurture.errors import ConditionError, Problem
from nurture.vocab import KNOWN_EVENT_TYPES, EventType, is_valid_event_type

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
    #: top-level keys and steps (`("steps", 2)`) the schema refused: the journey was read
    #: around them so that the rest of the file is checked too. Such a journey never runs.
    unreadable: frozenset[Loc] = frozenset()

    @property
    def id(self) -> str:
        return self.journey.id

    @property
    def complete(self) -> bool:
        """Read as written (nothing stood in for a part the schema refused)."""
        return not self.unreadable

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


def _duplicate_keys(node: yaml.Node) -> list[tuple[int, str]]:
    """Keys written twice in one mapping (YAML would keep the last one, silently)."""
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen and name != "<<":
                found.append((key.start_mark.line + 1, name))
            seen.add(name)
            found += _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _duplicate_keys(item)
    return found


_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": "put text that contains ': ' in quotes",
    "expected <block end>": "check the indentation of this line and the one before",
    "could not find expected ':'": "a key needs ':' after it; check quotes and indentation",
    "found unknown escape character": "in double quotes a backslash starts an escape: "
                                      "write \\\\ or use single quotes",
}


_YAML_WORDS = {"flow sequence": "the [...] list", "flow mapping": "the {...} mapping",
               "block mapping": "the keys", "block collection": "the list"}


def _yaml_problem(path: Path, error: yaml.YAMLError) -> Problem:
    """A YAML syntax error at the line to look at, with a hint when we have one."""
    problem = str(getattr(error, "problem", None) or error)
    mark = getattr(error, "problem_mark", None)
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if (context and "quoted scalar" in context and context_mark is not None
            and problem == "found unexpected end of stream"):
        # the problem mark is the end of the file: no help. Point at the opening quote.
        return Problem(str(path), context_mark.line + 1,
                       "YAML syntax error: a quote opened on this line is never closed")
    hint = next((h for text, h in _YAML_HINTS.items() if problem.startswith(text)), "")
    if not hint and context and context_mark is not None:
        what = next((w for jargon, w in _YAML_WORDS.items() if jargon in context), "a block")
        hint = f"in {what} that starts at line {context_mark.line + 1}"
    message = f"YAML syntax error: {problem}" + (f" ({hint})" if hint else "")
    return Problem(str(path), mark.line + 1 if mark else 1, message)


# ---- pydantic errors in words a marketer reads -----------------------------------------

_EXPECTED_PATTERNS = {
    r"^\d+(\.\d+)?[smhdw]$": "a duration such as 30m, 12h, 3d or 2w",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "an id of letters, digits, '_', '-' and '.' (no spaces)",
    r"^[a-z0-9][a-z0-9_-]*$": "an id of lowercase letters, digits, '_' and '-' (no spaces)",
    r"^([01]\d|2[0-3]):[0-5]\d$": "a time such as 09:30 (HH:MM)",
}


def _members(tp: Any) -> list[Any]:
    return [arg for arg in get_args(tp) if arg is not type(None)]


def _unwrap(tp: Any) -> Any:
    """Strip `Annotated[...]` and `X | None`."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType) and len(_members(tp)) == 1:
            tp = _members(tp)[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _child(tp: Any, part: str | int) -> Any:
    if get_origin(tp) is list:
        return get_args(tp)[0] if isinstance(part, int) else None
    if get_origin(tp) is dict:
        return get_args(tp)[1]
    if _is_model(tp):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    return None


def _tag_of(model: Any) -> Any:
    """The `type` a step model is selected by ("send"), else None."""
    if _is_model(model) and "type" in model.model_fields:
        return next(iter(get_args(model.model_fields["type"].annotation)), None)
    return None


def walk_model(root: type[BaseModel], loc: Loc) -> tuple[Loc, Any]:
    """`loc` without the union member names pydantic adds, and the type found at its end."""
    kept: list[str | int] = []
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if get_origin(tp) in (Union, UnionType):  # `part` names the member that was tried
            tp = next((m for m in _members(tp) if _tag_of(m) == part), None)
            continue
        kept.append(part)
        tp = _child(tp, part)
    return tuple(kept), _unwrap(tp)


def _show(value: Any) -> str:
    text = f"'{value}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(item: ErrorDetails) -> str | None:
    ctx = item.get("ctx") or {}
    if item["type"] == "literal_error":
        return str(ctx.get("expected"))
    if item["type"] == "string_pattern_mismatch":
        return _EXPECTED_PATTERNS.get(str(ctx.get("pattern")))
    if item["type"] in ("model_attributes_type", "model_type", "dict_type"):
        return "keys and values"
    return None


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    guess = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean '{guess[0]}'? " if guess else ""


def explain(root: type[BaseModel], items: list[ErrorDetails], skip: int = 0,
            hidden: frozenset[str] = frozenset()) -> str:
    """One sentence for what pydantic says about one place (several errors: a union).

    The first `skip` parts of the place are already named by the caller ("step 'x': ");
    `hidden` fields are not offered as known keys.
    """
    item = items[0]
    loc, _ = walk_model(root, tuple(item["loc"]))
    if "[key]" in loc:  # a dict key is wrong: name the dict, the key is the input shown
        loc = loc[: loc.index("[key]") - 1]
        subject = " ".join([".".join(str(p) for p in loc[skip:] if isinstance(p, str)), "key"])
        wanted = " or ".join(e for e in map(_expected, items) if e)
        detail = f"expected {wanted}" if wanted else str(item["msg"])
        return f"{subject.strip()} {_show(item['input'])} is not valid: {detail}"
    names = [p for p in loc[skip:] if isinstance(p, str)]
    subject = ".".join(names)
    if item["type"] == "extra_forbidden" and names:
        _, parent = walk_model(root, tuple(item["loc"])[:-1])
        known = [k for k in _keys(parent) if k not in hidden] if _is_model(parent) else []
        listed = f"known keys: {', '.join(known)}" if known else ""
        within = ".".join(names[:-1]) + ": " if names[:-1] else ""
        return f"{within}unknown key '{names[-1]}' ({_did_you_mean(names[-1], known)}{listed})"
    if item["type"] == "missing" and names:
        within = ".".join(names[:-1]) + ": " if names[:-1] else ""
        return f"{within}'{names[-1]}' is required"
    expected = [e for e in map(_expected, items) if e]
    if expected and len(expected) == len(items):
        shown = f"{subject} {_show(item['input'])}".strip()
        return f"{shown} is not valid: expected {' or '.join(expected)}"
    message = str(item["msg"]).removeprefix("Value error, ")
    return f"{subject}: {message}" if subject else message


def _model_problems(path: Path, lines: dict[Loc, int], data: dict[str, Any],
                    error: ValidationError) -> list[Problem]:
    grouped: dict[Loc, list[ErrorDetails]] = {}
    for item in error.errors():
        grouped.setdefault(walk_model(Journey, tuple(item["loc"]))[0], []).append(item)
    problems = []
    kinds = ", ".join(STEP_KINDS)
    for loc, items in grouped.items():
        raw = tuple(items[0]["loc"])
        owner = _owner(loc, data)
        if items[0]["type"] == "union_tag_invalid":
            tag = str((items[0].get("ctx") or {}).get("tag"))
            raw = (*raw, "type")
            message = f"unknown step type '{tag}' ({_did_you_mean(tag, STEP_KINDS)}known: {kinds})"
        elif items[0]["type"] == "union_tag_not_found":
            message = f"the step has no 'type' (one of: {kinds})"
        else:
            message = explain(Journey, items, skip=2 if owner else 0)
        problems.append(Problem(str(path), line_for(lines, raw), owner + message))
    return problems


def _owner(loc: Loc, data: dict[str, Any]) -> str:
    """`step 'welcome': ` for a problem inside a step, nothing otherwise."""
    if len(loc) < 2 or loc[0] != "steps" or not isinstance(loc[1], int):
        return ""
    steps = data.get("steps")
    step = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
    step_id = step.get("id") if isinstance(step, dict) else None
    return f"step '{step_id}': " if isinstance(step_id, str) else f"step #{loc[1] + 1}: "


def read_journey(path: Path, *, salvage: bool = False
                 ) -> tuple[LoadedJourney | None, list[Problem]]:
    """Parse one file. Problems here are syntax and shape; see `check_journey` for the rest.

    A file the schema refuses gives None, unless `salvage`: then the journey is read
    around the refused parts (`LoadedJourney.unreadable`), so the rest can be checked.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem(str(path), 1, "the file is not UTF-8 text: save it as UTF-8")]
    return parse_journey(path, text, salvage=salvage)


def parse_journey(path: Path, text: str, *, salvage: bool = False
                  ) -> tuple[LoadedJourney | None, list[Problem]]:
    """`read_journey` of a file's text (an applied version, kept in the database)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return None, [_yaml_problem(path, e)]
    if node is None or not isinstance(data, dict):
        return None, [Problem(str(path), 1, "a journey file must be a YAML mapping "
                                            "(id: ..., name: ..., steps: ...)")]
    lines = _line_map(node)
    problems = [Problem(str(path), line, f"key '{key}' is written twice (the last one would "
                                         "silently win)") for line, key in _duplicate_keys(node)]
    unreadable: frozenset[Loc] = frozenset()
    try:
        # by alias only: a branch says `if`/`else` in files, as in the published schema
        journey = Journey.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as e:
        problems += _model_problems(path, lines, data, e)
        salvaged = _salvaged(data, e, path.stem) if salvage else None
        if salvaged is None:
            return None, problems
        journey, unreadable = salvaged
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    conditions, found = _compile_conditions(path, lines, journey)
    problems += found
    loaded = LoadedJourney(journey, path, version, lines, conditions, unreadable)
    if path.stem != journey.id and ("id",) not in unreadable:
        problems.append(Problem(str(path), lines.get(("id",), 1),
                                f"journey id '{journey.id}' differs from the file name "
                                f"'{path.name}' (name the file {journey.id}.yaml)"))
    return loaded, problems


def _salvaged(data: dict[str, Any], error: ValidationError, stem: str
              ) -> tuple[Journey, frozenset[Loc]] | None:
    """What `salvage.salvage` makes of the file, given where the schema refused it."""
    refused: set[Loc] = set()
    for item in error.errors():
        loc, _ = walk_model(Journey, tuple(item["loc"]))
        if not loc:
            return None  # the document as a whole
        refused.add(loc[:2] if loc[0] == "steps" and len(loc) > 1 else loc[:1])
    return salvage.salvage(data, refused, stem)


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
            continue
        for event_type in sorted({t for t, _ in compiled[source].event_windows()}):
            if not is_valid_event_type(event_type):  # it would count 0, always
                problems.append(Problem(str(path), line_for(lines, loc),
                                        f"condition: {_unknown_event(event_type)}"))
    return compiled, problems


def _unknown_event(event_type: str) -> str:
    known = sorted(KNOWN_EVENT_TYPES - {EventType.UNKNOWN})
    return (f"unknown event type '{event_type}' ({_did_you_mean(event_type, known)}"
            f"custom events start with 'x.'; known: {', '.join(known)})")


def check_journey(loaded: LoadedJourney, known_journeys: set[str],
                  purposes: set[str] | None) -> list[Problem]:
    """Graph and cross-reference rules for one journey (`purposes` None: not checked)."""
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
        for key, target in graph.named_targets(step):
            if target not in seen:
                report(("steps", index, *key), f"step '{step.id}' goes to '{target}', which is "
                       f"not a step of this journey ({_did_you_mean(target, seen)}steps: "
                       f"{', '.join(seen)})")
        if isinstance(step, graph.MoveToStep) and step.journey not in known_journeys:
            hint = _did_you_mean(step.journey, known_journeys)
            report(("steps", index, "journey"), f"step '{step.id}' moves contacts to journey "
                   f"'{step.journey}', which does not exist ({hint}journeys: "
                   f"{', '.join(sorted(known_journeys))})")
        if (isinstance(step, graph.SendStep) and step.purpose and purposes is not None
                and step.purpose not in purposes):
            report(("steps", index, "purpose"), _purpose_message(step.purpose, purposes))
        if isinstance(step, graph.WaitForStep) and not is_valid_event_type(step.event):
            report(("steps", index, "event"), _unknown_event(step.event))
    if len(seen) == len(journey.steps):  # with a duplicate id the graph is ambiguous
        for loc, message in _graph_problems(journey):
            report(loc, message)
    if purposes is not None and journey.purpose not in purposes and (
            ("purpose",) not in loaded.unreadable):
        report(("purpose",), _purpose_message(journey.purpose, purposes))
    if journey.entry.event and not is_valid_event_type(journey.entry.event):
        report(("entry", "event"), _unknown_event(journey.entry.event))
    for old, new in journey.migrate.items():
        if new not in seen:
            report(("migrate", old), f"migrate sends contacts of removed step '{old}' to "
                   f"'{new}', which is not a step of this journey ({_did_you_mean(new, seen)}"
                   f"steps: {', '.join(seen)})")
        if old in seen:
            report(("migrate", old), f"migrate lists '{old}', but '{old}' is still a step: "
                   "migrate is only for removed steps")
    return problems


def _graph_problems(journey: Journey) -> list[tuple[Loc, str]]:
    """Steps that never run and loops a contact would spin in."""
    found: list[tuple[Loc, str]] = []
    reachable = _reachable(journey)
    for index, step in enumerate(journey.steps):
        if step.id not in reachable and not isinstance(step, salvage.UnreadableStep):
            found.append((("steps", index, "id"), f"step '{step.id}' can never run: no step "
                          "leads to it (the step before it ends the journey or jumps elsewhere)"))
    ids = [s.id for s in journey.steps]
    for cycle in graph.loops_without_wait(journey):
        found.append((("steps", ids.index(cycle[0])), f"loop with no wait: "
                      f"{' -> '.join([*cycle, cycle[0]])}; a contact would go round it without "
                      "pause: add a wait or wait_for step to it"))
    return found


def _reachable(journey: Journey) -> set[str]:
    """`graph.reachable`, where a step standing in for a refused one may lead to any step
    its text names: the steps it meant to jump to are not reported as never running."""
    steps = graph.step_map(journey)
    seen: set[str] = set()
    todo = [journey.steps[0].id]
    while todo:
        current = todo.pop()
        if current in seen or current not in steps:
            continue
        seen.add(current)
        step = steps[current]
        todo += graph.successors(journey, step)
        if isinstance(step, salvage.UnreadableStep):
            todo += [name for name in step.names if name in steps]
    return seen


def check_conditions(loaded: LoadedJourney,
                     attributes: Mapping[str, str] | None) -> list[Problem]:
    """Conditions that parse but cannot hold as meant: an unknown stage or temperature, an
    attribute nobody declared, text compared with a number (see `condition_checks`)."""
    problems = []
    for loc, source in condition_sources(loaded.journey):
        condition = loaded.conditions.get(source)
        if condition is None:  # it does not parse: already reported
            continue
        for message in condition_checks.check(condition, attributes):
            problems.append(Problem(str(loaded.path), loaded.line_of(*loc),
                                    f"condition: {message}"))
    return problems


def known_attributes(declared: Mapping[str, str],
                     journeys: Iterable[LoadedJourney]) -> dict[str, str]:
    """Attribute → type: those config.toml declares, and those a `set` step writes (typed
    by the value it sets): conditions may read both."""
    written = [(step.attribute, step.value) for loaded in journeys
               for step in loaded.journey.steps
               if isinstance(step, graph.SetStep) and step.attribute]
    return condition_checks.attribute_types(declared, written)


def _purpose_message(purpose: str, purposes: set[str]) -> str:
    declared, hint = ", ".join(sorted(purposes)), _did_you_mean(purpose, purposes)
    return (f"purpose '{purpose}' is not declared in config.toml ({hint}declared: {declared}; "
            f"add [purposes.{purpose}] to declare it)")


def load_journeys(directory: Path, purposes: set[str] | None, *,
                  attributes: Mapping[str, str] | None = None,
                  partial: bool = False) -> tuple[list[LoadedJourney], list[Problem]]:
    """Every `*.yaml`/`*.yml` in `directory`, with all problems found.

    `purposes` and `attributes` (name → `[attributes]` type) are what config.toml
    declares; None leaves them unchecked. A file the schema refuses is still checked
    around the refused parts; with `partial`, such journeys are returned too (marked
    `complete=False`), for checks of their templates. They never run.
    """
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    loaded: list[LoadedJourney] = []
    problems: list[Problem] = []
    for path in paths:
        item, found = read_journey(path, salvage=True)
        problems.extend(found)
        if item is not None:
            loaded.append(item)
    ids: dict[str, LoadedJourney] = {}
    for item in loaded:
        if ("id",) in item.unreadable:
            continue
        if item.id in ids:
            other = ids[item.id].path
            problems.append(Problem(str(item.path), item.line_of("id"),
                                    f"duplicate journey id '{item.id}' (also in {other})"))
        ids.setdefault(item.id, item)
    # a file with its own problems still exists: `move_to` it is not a second error
    known = set(ids) | {path.stem for path in paths}
    if attributes is not None:
        attributes = known_attributes(attributes, loaded)
    for item in loaded:
        problems.extend(check_journey(item, known, purposes))
        problems.extend(check_conditions(item, attributes))
    return [item for item in loaded if partial or item.complete], problems
