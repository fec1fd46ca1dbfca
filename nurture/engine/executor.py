"""Run one enrollment's steps until it waits, using only prefetched data.

No SQL here: the tick prefetches what the steps need (`Batch`), the executor returns what
changed (`Outcome`), and the tick writes every outcome of a batch at once.

An enrollment runs the version of its journey it entered (`Batch.versions`); the exit and
goal conditions checked before each step are the current version's. Each step taken is
traced (`Outcome.steps`: the branch case chosen, a wait_for's outcome and its time). An
error a person can fix — a template that does not render, a step or journey that is not
there — blocks the enrollment at that step with the reason, never ends it: it resumes
there once the fix is applied (`nurture apply`) or `nurture retry` is run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.authoring import journey as J
from nurture.authoring.loader import LoadedJourney
from nurture.compliance import gates
from nurture.compliance.tokens import Links, MessageLinks
from nurture.compliance.windows import next_local_time
from nurture.config.settings import Settings
from nurture.content.context import template_context
from nurture.content.rendering import TemplateCatalog
from nurture.durations import parse_duration
from nurture.engine import send
from nurture.errors import NurtureError, TemplateError
from nurture.providers.base import OutgoingMessage
from nurture.views import ContactView
from nurture.vocab import EnrollmentState, MessageState, SkipReason

MAX_STEPS_PER_RUN = 100
_KEEP: Any = object()


def trace_row(enrollment: Mapping[str, Any], kind: str, outcome: str, detail: str,
              at: datetime, step_id: Any = _KEEP, until: datetime | None = None
              ) -> dict[str, Any]:
    """A `steprun` row: one step the enrollment took (or an operator's act on it)."""
    return {"enrollment_id": enrollment["id"], "contact_id": enrollment["contact_id"],
            "journey_id": enrollment["journey_id"],
            "journey_version": enrollment["journey_version"],
            "step_id": enrollment["step_id"] if step_id is _KEEP else step_id, "kind": kind,
            "outcome": outcome, "detail": detail, "at": at, "until": until}


@dataclass
class Batch:
    """Everything the steps of one batch may read, fetched in bulk beforehand."""

    settings: Settings
    #: the current version of each journey: its exit and goal conditions apply to all
    journeys: Mapping[str, LoadedJourney]
    catalog: TemplateCatalog
    links: Links
    contacts: dict[int, ContactView]
    gate_state: gates.GateState
    now: datetime
    #: (journey, version) → the version each claimed enrollment runs (None: not applied)
    versions: Mapping[tuple[str, str], LoadedJourney | None] = field(default_factory=dict)
    _sms: send.SmsComposer | None = field(default=None, repr=False)

    @property
    def sms(self) -> send.SmsComposer:
        """Composes the batch's SMS (what a country or locale needs is found once)."""
        if self._sms is None:
            self._sms = send.SmsComposer(self.settings, self.catalog, self.links)
        return self._sms


@dataclass
class Outcome:
    """What one enrollment run changed."""

    enrollment: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    outgoing: list[OutgoingMessage] = field(default_factory=list)
    #: (attribute, old, new, reason)
    attributes: list[tuple[str, Any, Any, str]] = field(default_factory=list)
    #: (points, reason)
    score: list[tuple[float, str]] = field(default_factory=list)
    handoffs: list[str] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)
    #: a send waits for its window's next opening
    deferred: bool = False
    #: `steprun` rows: each step taken, with what it decided
    steps: list[dict[str, Any]] = field(default_factory=list)

    def trace(self, kind: str, outcome: str, detail: str, at: datetime,
              until: datetime | None = None) -> None:
        self.steps.append(trace_row(self.enrollment, kind, outcome, detail, at, until=until))


def run(enrollment: dict[str, Any], batch: Batch, lease_until: datetime) -> Outcome:
    """Advance one claimed enrollment as far as it goes now."""
    state = dict(enrollment)
    outcome = Outcome(state)
    now = batch.now
    contact = batch.contacts.get(state["contact_id"])
    if contact is None:
        return _fail(outcome, now, "contact no longer exists")
    key = (state["journey_id"], state["journey_version"])
    loaded = batch.versions[key] if key in batch.versions else batch.journeys.get(key[0])
    try:
        if loaded is None:
            raise NurtureError(f"journey '{key[0]}' is not applied: apply it, or unenroll")
        state["journey_version"] = loaded.version  # an enrollment from before versions
        rules = batch.journeys.get(loaded.id, loaded)
        _advance(loaded, rules, contact, outcome, batch, lease_until)
    except NurtureError as e:
        _block(outcome, now, f"step '{state['step_id']}': {e}" if state["step_id"] else str(e))
    state["updated_at"] = now
    return outcome


def _fail(outcome: Outcome, now: datetime, error: str) -> Outcome:
    """An impossible state (the contact is gone): nothing a person could fix."""
    outcome.enrollment.update(state=EnrollmentState.FAILED, next_run_at=None, last_error=error,
                              ended_at=now, end_reason="error", updated_at=now)
    return outcome


def _block(outcome: Outcome, now: datetime, reason: str) -> None:
    """Held at its step until the fix is applied or retried; the next run of the step
    takes a new sequence number (its message never collides with one recorded now)."""
    state = outcome.enrollment
    outcome.deferred = False
    state.update(state=EnrollmentState.BLOCKED, next_run_at=None, last_error=reason,
                 wait_event=None, wait_step=None, seq=state["seq"] + 1)
    outcome.trace("step", "blocked", reason, now)


def _finish(outcome: Outcome, now: datetime, state: str, reason: str) -> None:
    outcome.enrollment.update(state=state, next_run_at=None, ended_at=now, end_reason=reason,
                              wait_event=None, wait_step=None)


def _current_step(loaded: LoadedJourney, step_id: str | None) -> Any:
    steps = loaded.steps
    if step_id is None or step_id in steps:
        return steps.get(step_id) if step_id else None
    target = loaded.journey.migrate.get(step_id)
    if target is None:
        raise NurtureError(f"step '{step_id}' no longer exists and no migrate target is named")
    return steps[target]


def _holds(loaded: LoadedJourney, source: str | None, contact: ContactView) -> bool:
    return source is not None and loaded.condition(source).evaluate(contact)


def _resume(loaded: LoadedJourney, outcome: Outcome, now: datetime) -> Any:
    """Where a run starts: the wait_for it was in ends by timeout (still `waiting`) or by
    the event (resumed by intake at `updated_at`); both are traced."""
    state = outcome.enrollment
    waited = loaded.steps.get(state.get("wait_step") or "")
    state["wait_step"] = None
    if isinstance(waited, J.WaitForStep):
        if state["state"] == EnrollmentState.WAITING:
            state["step_id"] = waited.id
            outcome.steps.append(trace_row(state, "wait_for", "timeout",
                                           f"no {waited.event} within {waited.timeout}", now))
            state.update(state=EnrollmentState.ACTIVE, wait_event=None)
            return _jump(loaded, waited.on_timeout or loaded.following[waited.id])
        outcome.steps.append(trace_row(state, "wait_for", "event", waited.event,
                                       state.get("updated_at") or now, step_id=waited.id))
    step = _current_step(loaded, state["step_id"])
    if state["state"] == EnrollmentState.WAITING and isinstance(step, J.WaitForStep):
        state.update(state=EnrollmentState.ACTIVE, wait_event=None)
        return _jump(loaded, step.on_timeout or loaded.following[step.id])
    return step


def _advance(loaded: LoadedJourney, rules: LoadedJourney, contact: ContactView,
             outcome: Outcome, batch: Batch, lease_until: datetime) -> None:
    state, now, journey = outcome.enrollment, batch.now, rules.journey
    step = _resume(loaded, outcome, now)
    exits = [(reason, source) for reason, source in (("goal reached", journey.goal),
                                                     ("exit condition", journey.exit_when))
             if source is not None]
    for _ in range(MAX_STEPS_PER_RUN):
        if step is None:
            outcome.steps.append(trace_row(state, "end", "completed", "", now, step_id=None))
            return _finish(outcome, now, EnrollmentState.COMPLETED, "completed")
        state["step_id"] = step.id
        for reason, source in exits:
            if _holds(rules, source, contact):
                outcome.trace("exit", reason, source or "", now)
                return _finish(outcome, now, EnrollmentState.EXITED, reason)
        following = _jump(loaded, loaded.following[step.id])
        if isinstance(step, J.SendStep):
            if not _send(loaded, step, contact, outcome, batch, lease_until):
                return None
            step = following
        elif isinstance(step, J.WaitStep | J.WaitForStep):
            return _wait(loaded, step, contact, outcome, now, following)
        elif isinstance(step, J.BranchStep):
            step = _branch(loaded, step, contact, outcome, now) or following
        elif isinstance(step, J.SetStep):
            _set(loaded, step, contact, outcome, now)
            step = following
        elif isinstance(step, J.HandoffStep):
            outcome.handoffs.append(step.reason or f"journey {journey.id} step {step.id}")
            outcome.trace("handoff", "handoff", step.reason, now)
            step = following
        elif isinstance(step, J.GotoStep):
            outcome.trace("goto", "goto", step.target, now)
            step = _jump(loaded, step.target)
        elif isinstance(step, J.MoveToStep):
            outcome.moves.append(step.journey)
            outcome.trace("move_to", "moved", step.journey, now)
            return _finish(outcome, now, EnrollmentState.EXITED, f"moved to {step.journey}")
        elif isinstance(step, J.ExitStep):
            outcome.trace("exit", "exit step", step.reason, now)
            return _finish(outcome, now, EnrollmentState.COMPLETED, step.reason or "exit step")
        state["seq"] += 1
    raise NurtureError(f"more than {MAX_STEPS_PER_RUN} steps without a wait")


def _wait(loaded: LoadedJourney, step: J.WaitStep | J.WaitForStep, contact: ContactView,
          outcome: Outcome, now: datetime, following: Any) -> None:
    state = outcome.enrollment
    state["seq"] += 1
    state["wait_step"] = step.id
    if isinstance(step, J.WaitForStep):
        until = now + parse_duration(step.timeout)
        state.update(state=EnrollmentState.WAITING, wait_event=step.event, next_run_at=until)
        outcome.trace("wait_for", "waiting", f"{step.event}, {step.timeout} at most", now,
                      until)
        return
    until = _wait_until(step, contact, now)
    outcome.trace("wait", "waiting", step.duration or "until a local time", now, until)
    state["step_id"] = following.id if following else None
    state["next_run_at"] = until


def _branch(loaded: LoadedJourney, step: J.BranchStep, contact: ContactView,
            outcome: Outcome, now: datetime) -> Any:
    """The first case that holds wins, else `else`, else the next step (None)."""
    for index, case in enumerate(step.cases, 1):
        if _holds(loaded, case.when, contact):
            outcome.trace("branch", f"case {index}", f"{case.when} -> {case.goto}", now)
            return _jump(loaded, case.goto)
    if step.otherwise:
        outcome.trace("branch", "else", step.otherwise, now)
        return _jump(loaded, step.otherwise)
    outcome.trace("branch", "no case", "the next step", now)
    return None


def _jump(loaded: LoadedJourney, step_id: str | None) -> Any:
    return loaded.steps[step_id] if step_id else None


def _wait_until(step: J.WaitStep, contact: ContactView, now: datetime) -> datetime:
    if step.duration:
        return now + parse_duration(step.duration)
    assert step.until is not None
    return next_local_time(step.until.days, step.until.time, contact.timezone, now)


def _set(loaded: LoadedJourney, step: J.SetStep, contact: ContactView, outcome: Outcome,
         now: datetime) -> None:
    reason = step.reason or f"journey {loaded.id} step {step.id}"
    done = []
    if step.attribute is not None:
        old = contact.attributes.get(step.attribute)
        contact.attributes[step.attribute] = step.value
        outcome.attributes.append((step.attribute, old, step.value, reason))
        done.append(f"{step.attribute} = {step.value!r}")
    if step.score is not None:
        contact.score += step.score
        outcome.score.append((step.score, reason))
        done.append(f"score {step.score:+g}")
    outcome.trace("set", "set", ", ".join(done), now)


def _send(loaded: LoadedJourney, step: J.SendStep, contact: ContactView, outcome: Outcome,
          batch: Batch, lease_until: datetime) -> bool:
    """Gate, render and record one message. False when deferred to the window's opening."""
    state, now = outcome.enrollment, batch.now
    purpose = step.purpose or loaded.journey.purpose
    window = loaded.journey.send_window.get(step.channel)
    request = gates.SendRequest(contact, step.channel, purpose, now,
                                (window,) if window else ())
    verdict = gates.check(request, batch.gate_state, batch.settings)
    if isinstance(verdict, gates.Deferred):
        state["next_run_at"] = verdict.until
        outcome.deferred = True
        return False
    public_id = send.new_public_id(now)
    variant = J.choose_variant(step, contact.id, loaded.id)
    template = variant.template if variant else step.template or ""
    tag = variant.template if variant else None

    def skipped(reason: str, error: str, **values: Any) -> None:
        row = send.message_row(public_id=public_id, contact_id=contact.id, enrollment=state,
                               step_id=step.id, channel=step.channel, purpose=purpose,
                               template=template, to=contact.address(step.channel) or "",
                               now=now, state=MessageState.SKIPPED, skip_reason=reason,
                               error=error, **values)
        row["variant"] = tag  # the last column, as in every row of the batch
        outcome.messages.append(row)

    if isinstance(verdict, gates.Skipped):
        skipped(verdict.reason, verdict.detail)
        outcome.trace("send", "skipped", f"{verdict.reason}: {verdict.detail}", now)
        return True
    try:
        composed = compose(batch, loaded, step, contact, purpose, public_id, template)
    except TemplateError as e:
        skipped(SkipReason.RENDER_ERROR, str(e))
        raise
    refused = _sms_refusal(batch.settings, composed)
    if refused is not None:
        skipped(refused.reason, refused.detail, locale=composed.locale,
                text=composed.message.text, segments=composed.segments)
        outcome.trace("send", "skipped", f"{refused.reason}: {refused.detail}", now)
        return True
    row = send.row_for(composed, template=template, now=now, lease_until=lease_until,
                       enrollment=state, step_id=step.id)
    row["variant"] = tag
    outcome.messages.append(row)
    outcome.trace("send", "sent", f"{step.channel} {template} ({composed.locale})", now)
    outcome.outgoing.append(composed.message)
    batch.gate_state.record_send(contact.id, step.channel, batch.settings.frequency_caps)
    return True


def _sms_refusal(settings: Settings, composed: send.Composed) -> gates.Skipped | None:
    """What only the rendered SMS can tell: over the segment budget, or a sender the
    recipient's carriers refuse."""
    message = composed.message
    if message.channel != "sms":
        return None
    if composed.segments > settings.sms.max_segments:
        return gates.Skipped(SkipReason.TOO_LONG, f"{composed.segments} segments, "
                             f"[sms] max_segments is {settings.sms.max_segments}")
    if send.refuses_sender(message.to, message.sender):
        return gates.Skipped(SkipReason.NO_SENDER, f"alphanumeric sender {message.sender!r} "
                             "for a +1 number: set [sender] sms_from_countries")
    return None


def compose(batch: Batch, loaded: LoadedJourney, step: J.SendStep, contact: ContactView,
            purpose: str, public_id: str, template: str) -> send.Composed:
    """Render `template` (the step's, or the contact's variant of it) into a message for
    the provider."""
    links = MessageLinks(batch.links, public_id)
    context = template_context(batch.settings, contact, links, public_id, loaded.journey)
    if step.channel == "sms":
        return batch.sms.compose(template=template, contact=contact, context=context,
                                 purpose=purpose, public_id=public_id, now=batch.now)
    return send.compose_email(batch.settings, batch.catalog, template=template,
                              contact=contact, context=context, purpose=purpose,
                              public_id=public_id, now=batch.now,
                              categories=(loaded.id, step.id))
