"""Pure scoring: event → points, caps, decay, temperature bands, fit and qualification.

No SQL and no clock: callers pass the contact, the counts they fetched and `now`'s
elapsed times. Every result carries the rule that produced it and a reason, so each
change can be explained later (`nurture contact show`).

Score rules (`[[scoring.rules]]`) match an event type and, optionally, filters on its
properties in `where` (their syntax: `nurture.score_filters`). Every filter must hold;
every matching rule applies (points add up). A rule with `cap = N` applies at most N
times per `cap_window` for one contact (the caller counts the previous hits).

Fit rules (`[[scoring.fit]]`) are conditions (see `nurture.conditions`) over the
contact's attributes; the fit is the sum of the points of those that hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nurture.authoring.conditions import CORE_FIELDS, Condition, ConditionContext, parse
from nurture.config.settings import FitRule, ScoreRule, Scoring
from nurture.durations import parse_duration
from nurture.scoring.filters import parse_filter, predicate
from nurture.scoring.replies import Intent
from nurture.views import ContactView
from nurture.vocab import Stage, Temperature

#: a decayed score closer to zero than this becomes 0 (and stops decaying)
SETTLE_BELOW = 0.5
#: rule names the engine writes itself; configured rules may not take them
RESERVED_RULES = frozenset({"decay", "journey", "sales", "bands", "fit", "qualification",
                            "strong_signal", "customer_event", "demotion", "accept_within"})


def rule_matches(rule: ScoreRule, event_type: str, properties: Mapping[str, Any]) -> bool:
    if rule.event != event_type:
        return False
    return all(parse_filter(spec).holds(key in properties, properties.get(key))
               for key, spec in rule.where.items())


def matching_rules(rules: Sequence[ScoreRule], event_type: str,
                   properties: Mapping[str, Any]) -> list[ScoreRule]:
    return [rule for rule in rules if rule_matches(rule, event_type, properties)]


class RuleIndex:
    """Score rules by event type with their filters compiled, so each event is matched
    against its own rules only: `matching_rules` for many events."""

    def __init__(self, rules: Sequence[ScoreRule]) -> None:
        self.by_event: dict[str, list[tuple[ScoreRule, list[Callable[..., bool]]]]] = {}
        for rule in rules:
            tests = [predicate(key, spec) for key, spec in rule.where.items()]
            self.by_event.setdefault(rule.event, []).append((rule, tests))

    def matching(self, event_type: str, properties: Mapping[str, Any]) -> list[ScoreRule]:
        return [rule for rule, tests in self.by_event.get(event_type, ())
                if all(test(properties) for test in tests)]


# --- points -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Award:
    """Points to add (or remove), with the rule and the reason to record."""

    rule: str
    points: float
    reason: str


def award_for(rule: ScoreRule, event_type: str, properties: Mapping[str, Any],
              previous_hits: int = 0) -> Award | None:
    """The rule's points for this (matching) event, or None once its cap is reached."""
    if rule.cap is not None and previous_hits >= rule.cap:
        return None
    shown = ", ".join(f"{key}={properties.get(key)!r}" for key in rule.where)
    reason = f"{event_type} ({shown})" if shown else event_type
    if rule.cap is not None:
        reason += f"; hit {previous_hits + 1} of {rule.cap} per {rule.cap_window}"
    return Award(rule.name, rule.points, reason)


def cap_window(rule: ScoreRule) -> timedelta:
    return parse_duration(rule.cap_window)


def reply_award(intent: str, text: str, points: Mapping[str, float]) -> Award | None:
    """A classified reply's points (config `[replies] points` over the defaults)."""
    value = points.get(intent, 0.0)
    if not value:
        return None
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 60 else shown[:59] + "…"
    return Award(f"reply:{intent}", value, f"reply {shown!r} reads as {intent}")


def decayed(score: float, elapsed: timedelta, half_life: timedelta | None) -> float:
    """The score after `elapsed` with points halving every `half_life` (toward zero)."""
    if half_life is None or elapsed <= timedelta(0) or score == 0:
        return score
    value = score * 0.5 ** (elapsed / half_life)
    return 0.0 if abs(value) < SETTLE_BELOW else round(value, 2)


def decay_award(score: float, elapsed: timedelta, scoring: Scoring) -> Award | None:
    half_life = parse_duration(scoring.half_life) if scoring.half_life else None
    new = decayed(score, elapsed, half_life)
    if new == score:
        return None
    days = elapsed / timedelta(days=1)
    return Award("decay", round(new - score, 2),
                 f"half-life {scoring.half_life}, {days:.3g} day(s) since the last decay")


# --- temperature, fit, stage -----------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A derived value with the rule and the reason that decided it."""

    value: str
    rule: str
    reason: str


def band(score: float, scoring: Scoring) -> str:
    """The temperature of this score (`temperature_for` explains it)."""
    if score >= scoring.hot_at:
        return Temperature.HOT
    return Temperature.WARM if score >= scoring.warm_at else Temperature.COLD


def temperature_for(score: float, scoring: Scoring) -> Verdict:
    if score >= scoring.hot_at:
        return Verdict(Temperature.HOT, "bands", f"score {score:g} ≥ hot_at {scoring.hot_at:g}")
    if score >= scoring.warm_at:
        return Verdict(Temperature.WARM, "bands", f"warm_at {scoring.warm_at:g} ≤ score "
                       f"{score:g} < hot_at {scoring.hot_at:g}")
    return Verdict(Temperature.COLD, "bands", f"score {score:g} < warm_at {scoring.warm_at:g}")


@dataclass(frozen=True)
class Fit:
    points: float
    #: (rule name, points) of the fit rules that hold
    matched: tuple[tuple[str, float], ...]

    @property
    def reason(self) -> str:
        if not self.matched:
            return "no fit rule holds"
        return ", ".join(f"{name} {points:+g}" for name, points in self.matched)


def fit_for(rules: Sequence[FitRule], contact: ConditionContext) -> Fit:
    matched = tuple((r.name, r.points) for r in rules if parse(r.when).evaluate(contact))
    return Fit(round(sum(p for _, p in matched), 2), matched)


class Inputs:
    """What some conditions read of a contact, as a key: two contacts with the same key
    get the same answers. Profiles, stages and temperatures repeat across thousands of
    contacts, so a batch can remember answers instead of evaluating them again."""

    def __init__(self, conditions: Iterable[Condition]) -> None:
        conditions = list(conditions)
        paths = {path for c in conditions for path in c.fields()}
        self.core = sorted(paths & set(CORE_FIELDS))
        self.attributes = sorted(p[len("attributes."):] for p in paths
                                 if p.startswith("attributes."))
        self.counts = sorted({pair for c in conditions for pair in c.event_windows()},
                             key=repr)

    def key(self, contact: ConditionContext) -> tuple[Any, ...] | None:
        """The values read, then their types (a condition tells 1 from true and 1.0, a
        dict does not); None when one is a list or a mapping (no key)."""
        attributes = contact.attributes
        values = (*[getattr(contact, name) for name in self.core],
                  *[attributes.get(name) for name in self.attributes],
                  *[contact.event_count(kind, window) for kind, window in self.counts])
        key = (*values, *map(type, values))
        try:
            hash(key)
        except TypeError:
            return None
        return key


class FitRules:
    """The fit rules, with each fit remembered by what the rules read (`Inputs`)."""

    #: fits remembered at most (then forgotten at once)
    LIMIT = 10_000

    def __init__(self, rules: Sequence[FitRule]) -> None:
        self.rules = list(rules)
        self.inputs = Inputs(parse(r.when) for r in rules)
        self.known: dict[tuple[Any, ...], Fit] = {}
        #: the fit depends on the attributes only (not on score, stage, events…)
        self.by_profile = not self.inputs.core and not self.inputs.counts

    def __call__(self, contact: ConditionContext) -> Fit:
        key = self.inputs.key(contact)
        found = self.known.get(key) if key is not None else None
        if found is None:
            found = fit_for(self.rules, contact)
            if key is not None:
                if len(self.known) >= self.LIMIT:
                    self.known.clear()
                self.known[key] = found
        return found


@dataclass(frozen=True)
class Compiled:
    rules: RuleIndex
    fit: FitRules


_COMPILED: dict[int, tuple[Scoring, Compiled]] = {}


def compiled(scoring: Scoring) -> Compiled:
    """The rules of this config, compiled once (settings are immutable)."""
    found = _COMPILED.get(id(scoring))
    if found is None or found[0] is not scoring:
        if len(_COMPILED) > 32:
            _COMPILED.clear()
        found = _COMPILED[id(scoring)] = (scoring, Compiled(RuleIndex(scoring.rules),
                                                            FitRules(scoring.fit)))
    return found[1]


@dataclass(frozen=True)
class Signal:
    """What an event says about the stage, beyond its points."""

    #: "strong" (prospect at once) or "customer"
    kind: str
    #: what to show: the event type, or "reply meeting_request"
    name: str


def signal_for(scoring: Scoring, event_type: str | None,
               intent: str | None = None) -> Signal | None:
    if event_type is not None and event_type in scoring.customer_events:
        return Signal("customer", event_type)
    if event_type is not None and event_type in scoring.strong_signals:
        return Signal("strong", event_type)
    if intent == Intent.MEETING_REQUEST:
        return Signal("strong", f"reply {intent}")
    return None


def next_stage(stage: str, *, score: float, previous_score: float, fit: float,
               scoring: Scoring, signal: Signal | None = None) -> Verdict | None:
    """The stage this contact moves to now, or None.

    Customers stay customers; sales-accepted contacts move only to customer. Leads become
    prospects on a strong signal (fit not required), or when engaged (score ≥ qualify_at)
    and fitting (fit ≥ fit_threshold). A recycled lead needs new evidence: a strong signal,
    or its score crossing qualify_at again. Prospects are demoted only when
    `demote_prospects_below` is set and the score falls under it.
    """
    if stage == Stage.CUSTOMER:
        return None
    if signal is not None and signal.kind == "customer":
        return Verdict(Stage.CUSTOMER, "customer_event", f"{signal.name} is a customer event")
    if stage == Stage.PROSPECT:
        floor = scoring.demote_prospects_below
        if floor is not None and score < floor:
            return Verdict(Stage.LEAD, "demotion",
                           f"score {score:g} < demote_prospects_below {floor:g}")
        return None
    if stage not in (Stage.LEAD, Stage.RECYCLED):
        return None
    if signal is not None and signal.kind == "strong":
        return Verdict(Stage.PROSPECT, "strong_signal",
                       f"{signal.name} is a strong signal (fit not required)")
    engaged = score >= scoring.qualify_at
    if stage == Stage.RECYCLED:
        engaged = engaged and previous_score < scoring.qualify_at
    if engaged and fit >= scoring.fit_threshold:
        return Verdict(Stage.PROSPECT, "qualification",
                       f"score {score:g} ≥ qualify_at {scoring.qualify_at:g} and fit {fit:g}"
                       f" ≥ fit_threshold {scoring.fit_threshold:g}")
    return None


# --- one contact, all at once ----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One explained change of a contact field (written to `contact_change`)."""

    field: str
    old: Any
    new: Any
    rule: str
    reason: str
    delta: float | None = None


def assess(contact: ContactView, scoring: Scoring, awards: Sequence[Award] = (),
           signal: Signal | None = None, fit: Fit | None = None) -> list[Change]:
    """Apply `awards` to the contact, then re-derive fit (unless given: it depends on the
    attributes only), temperature and stage.

    Updates `contact` (a working copy) in place and returns every change, in order.
    """
    changes: list[Change] = []
    previous_score = contact.score
    for award in awards:
        old, contact.score = contact.score, round(contact.score + award.points, 2)
        changes.append(Change("score", old, contact.score, award.rule, award.reason,
                              award.points))
    fit = fit or compiled(scoring).fit(contact)
    if fit.points != contact.fit:
        rule = ",".join(name for name, _ in fit.matched) or "fit"
        changes.append(Change("fit", contact.fit, fit.points, rule, fit.reason,
                              round(fit.points - contact.fit, 2)))
        contact.fit = fit.points
    if band(contact.score, scoring) != contact.temperature:
        verdict = temperature_for(contact.score, scoring)
        changes.append(Change("temperature", contact.temperature, verdict.value, verdict.rule,
                              verdict.reason))
        contact.temperature = verdict.value
    stage = next_stage(contact.stage, score=contact.score, previous_score=previous_score,
                       fit=contact.fit, scoring=scoring, signal=signal)
    if stage is not None and stage.value != contact.stage:
        changes.append(Change("stage", contact.stage, stage.value, stage.rule, stage.reason))
        contact.stage = stage.value
    return changes
