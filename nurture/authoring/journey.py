"""A journey is data: typed steps with ids, and pure graph helpers.

Steps run in file order unless a step says otherwise (`goto`, `branch`, `wait_for`
outcomes, `exit`, `move_to`). Running past the last step completes the enrollment.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from nurture.config.settings import WindowRule
from nurture.durations import parse_duration

StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
DurationText = Annotated[str, Field(pattern=r"^\d+(\.\d+)?[smhdw]$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Step(_Data):
    id: StepId
    #: free text for the marketer; ignored by the engine
    note: str = ""


class Variant(_Data):
    """One template of an A/B test, with its share of the contacts."""

    template: str = Field(min_length=1)
    #: relative share: 70 and 30 send the first to about 70 % of contacts
    weight: float = Field(allow_inf_nan=False, json_schema_extra={"exclusiveMinimum": 0})

    @field_validator("weight")
    @classmethod
    def _positive(cls, weight: float) -> float:
        if weight <= 0:
            raise ValueError(f"a variant's weight must be above 0, not {weight:g}")
        return weight


class SendStep(_Step):
    """Render a template and send it, if every gate lets it through.

    With `variants` instead of `template`, each contact gets one of them, chosen by
    weight and sticky (see `choose_variant`): the message records which one.
    """

    type: Literal["send"]
    channel: Literal["email", "sms"]
    template: str | None = Field(default=None, min_length=1)
    #: two or more templates with weights (instead of `template`): an A/B test
    variants: list[Variant] | None = None
    #: overrides the journey's purpose for this message
    purpose: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _template_or_variants(cls, data: Any,
                              handler: ModelWrapValidatorHandler[SendStep]) -> SendStep:
        """Neither key: `'template' is required`, said beside the step's other problems
        (as when `template` was the only way), not instead of them."""
        if not isinstance(data, dict) or "template" in data or "variants" in data:
            return handler(data)
        missing: InitErrorDetails = {"type": "missing", "loc": ("template",), "input": data}
        try:
            handler(data)
        except ValidationError as e:
            found = [InitErrorDetails(type=d["type"], loc=d["loc"], input=d["input"],
                                      ctx=d.get("ctx", {})) for d in e.errors()]
            raise ValidationError.from_exception_data(e.title, [*found, missing]) from None
        raise ValidationError.from_exception_data(cls.__name__, [missing])

    @model_validator(mode="after")
    def _one_of(self) -> SendStep:
        if self.template is not None and self.variants is not None:
            raise ValueError("a send step needs exactly one of 'template' or 'variants'")
        if self.variants is not None and len(self.variants) < 2:
            raise ValueError("'variants' needs two or more templates (for one, write "
                             "'template')")
        return self

    @property
    def templates(self) -> list[str]:
        """Every template the step may send, in file order."""
        return [v.template for v in self.variants] if self.variants else [self.template or ""]


def choose_variant(step: SendStep, contact_id: int, journey_id: str) -> Variant | None:
    """The contact's variant of `step` (None for a single template): a hash of contact,
    journey and step mapped onto the cumulative weights, so every run picks the same one
    (retries, re-runs, a second enrollment) without storing a choice beforehand."""
    if not step.variants:
        return None
    digest = hashlib.sha256(f"{contact_id}:{journey_id}:{step.id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in step.variants)
    for variant in step.variants:
        point -= variant.weight
        if point < 0:
            return variant
    return step.variants[-1]  # float rounding at the very top of the range


class WaitUntil(_Data):
    """Wait until the next local `time` on one of `days` (contact's time zone)."""

    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    #: at least one day: with none, the wait could never end
    days: list[Weekday] = Field(default=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                min_length=1)


class WaitStep(_Step):
    """Pause for a duration, or until a local day/time."""

    type: Literal["wait"]
    duration: DurationText | None = None
    until: WaitUntil | None = None

    @model_validator(mode="after")
    def _one_of(self) -> WaitStep:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait step needs exactly one of 'duration' or 'until'")
        return self


class WaitForStep(_Step):
    """Wait for an event; go on at `on_event` or, after `timeout`, at `on_timeout`."""

    type: Literal["wait_for"]
    event: str = Field(min_length=1)
    timeout: DurationText
    #: step to go to when the event arrives (default: the next step)
    on_event: StepId | None = None
    #: step to go to when the timeout passes (default: the next step)
    on_timeout: StepId | None = None


class BranchCase(_Data):
    when: str = Field(alias="if", min_length=1)
    goto: StepId


class BranchStep(_Step):
    """The first case whose condition holds wins; else `else` (default: next step)."""

    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    otherwise: StepId | None = Field(default=None, alias="else")


class SetStep(_Step):
    """Set a contact attribute, and/or add score points (with a reason)."""

    type: Literal["set"]
    attribute: str | None = None
    value: Any = None
    score: float | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _something(self) -> SetStep:
        if self.attribute is None and self.score is None:
            raise ValueError("a set step needs 'attribute' (with 'value') or 'score'")
        return self


class HandoffStep(_Step):
    """Hand the contact to sales: webhook and optional notification email."""

    type: Literal["handoff"]
    reason: str = ""
    notify: bool = True


class GotoStep(_Step):
    type: Literal["goto"]
    target: StepId


class MoveToStep(_Step):
    """Leave this journey and enter another one."""

    type: Literal["move_to"]
    journey: str = Field(min_length=1)


class ExitStep(_Step):
    type: Literal["exit"]
    reason: str = ""


Step = Annotated[
    SendStep | WaitStep | WaitForStep | BranchStep | SetStep | HandoffStep | GotoStep
    | MoveToStep | ExitStep,
    Field(discriminator="type"),
]
STEP_KINDS = ("send", "wait", "wait_for", "branch", "set", "handoff", "goto", "move_to", "exit")


class Entry(_Data):
    """Who enters: a condition on the contact, and/or an event trigger."""

    when: str | None = None
    event: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Entry:
        if self.when is None and self.event is None:
            raise ValueError("entry needs 'when' (a condition) and/or 'event'")
        return self


class Journey(_Data):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
    name: str
    description: str = ""
    #: consent purpose that this journey's messages need
    purpose: str
    entry: Entry
    #: `never`, or a cool-down duration after which a contact may enter again
    reentry: Literal["never"] | DurationText = "never"
    #: leave as soon as this holds (checked before every step)
    exit_when: str | None = None
    #: success condition: leave (counted as converted) as soon as it holds
    goal: str | None = None
    send_window: dict[Literal["email", "sms"], WindowRule] = {}
    #: pause the journey when the contact replies
    stop_on_reply: bool = True
    #: a contact is in at most one exclusive journey per purpose at a time
    exclusive: bool = True
    #: when several journeys match, the highest priority is entered first
    priority: int = 0
    #: removed step id → step id where contacts waiting on it continue
    migrate: dict[str, StepId] = {}
    steps: list[Step] = Field(min_length=1)


# ---- graph helpers (pure) -------------------------------------------------------------


def step_map(journey: Journey) -> dict[str, Any]:
    return {step.id: step for step in journey.steps}


def next_in_order(journey: Journey, step_id: str) -> str | None:
    """The step after `step_id` in file order, or None at the end."""
    ids = [s.id for s in journey.steps]
    position = ids.index(step_id)
    return ids[position + 1] if position + 1 < len(ids) else None


def successors(journey: Journey, step: Any) -> list[str]:
    """Step ids that can run right after `step` (None-ends dropped)."""
    follow = next_in_order(journey, step.id)
    targets: list[str | None]
    if isinstance(step, GotoStep):
        targets = [step.target]
    elif isinstance(step, BranchStep):
        targets = [*(case.goto for case in step.cases), step.otherwise or follow]
    elif isinstance(step, WaitForStep):
        targets = [step.on_event or follow, step.on_timeout or follow]
    elif isinstance(step, ExitStep | MoveToStep):
        targets = []
    else:
        targets = [follow]
    return [t for t in dict.fromkeys(targets) if t is not None]


def named_targets(step: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Step ids named explicitly by `step`, each with the key that names it (`("else",)`)."""
    if isinstance(step, GotoStep):
        return [(("target",), step.target)]
    if isinstance(step, BranchStep):
        found: list[tuple[tuple[str | int, ...], str]] = [
            (("cases", index, "goto"), case.goto) for index, case in enumerate(step.cases)
        ]
        return found + ([(("else",), step.otherwise)] if step.otherwise else [])
    if isinstance(step, WaitForStep):
        named = (("on_event",), step.on_event), (("on_timeout",), step.on_timeout)
        return [(key, target) for key, target in named if target]
    return []


def jump_targets(step: Any) -> list[str]:
    """Step ids named explicitly by `step` (to check they exist)."""
    return [target for _, target in named_targets(step)]


def reachable(journey: Journey) -> set[str]:
    """Step ids reachable from the first step."""
    steps = step_map(journey)
    seen: set[str] = set()
    todo = [journey.steps[0].id]
    while todo:
        current = todo.pop()
        if current in seen or current not in steps:
            continue
        seen.add(current)
        todo.extend(successors(journey, steps[current]))
    return seen


def _is_pause(step: Any) -> bool:
    """A step after which time passes. `wait: 0m` passes none, so it does not break a loop."""
    if isinstance(step, WaitStep):
        return step.until is not None or parse_duration(step.duration or "0s").total_seconds() > 0
    if isinstance(step, WaitForStep):
        return parse_duration(step.timeout).total_seconds() > 0
    return False


def loops_without_wait(journey: Journey) -> list[list[str]]:
    """Cycles in the step graph that contain no wait (they would spin forever)."""
    steps = step_map(journey)
    graph = {
        sid: [t for t in successors(journey, s) if t in steps and not _is_pause(steps[t])]
        for sid, s in steps.items()
        if not _is_pause(s)
    }
    cycles: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    for start in graph:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    key = frozenset(path)
                    if key not in reported:
                        reported.add(key)
                        cycles.append(path)
                elif nxt not in path and nxt in graph:
                    stack.append((nxt, [*path, nxt]))
    return cycles


def purposes_used(journey: Journey) -> set[str]:
    used = {journey.purpose}
    used.update(s.purpose for s in journey.steps if isinstance(s, SendStep) and s.purpose)
    return used


def send_steps(journey: Journey) -> list[SendStep]:
    return [s for s in journey.steps if isinstance(s, SendStep)]
