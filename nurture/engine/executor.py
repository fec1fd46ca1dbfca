"""Run one enrollment's steps until it waits, using only prefetched data.

No SQL here: the tick prefetches what the steps need (`Batch`), the executor returns what
changed (`Outcome`), and the tick writes every outcome of a batch at once.
"""

from __future__ import annotations

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


@dataclass
class Batch:
    """Everything the steps of one batch may read, fetched in bulk beforehand."""

    settings: Settings
    journeys: dict[str, LoadedJourney]
    catalog: TemplateCatalog
    links: Links
    contacts: dict[int, ContactView]
    gate_state: gates.GateState
    now: datetime


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


def run(enrollment: dict[str, Any], batch: Batch, lease_until: datetime) -> Outcome:
    """Advance one claimed enrollment as far as it goes now."""
    state = dict(enrollment)
    outcome = Outcome(state)
    loaded = batch.journeys.get(state["journey_id"])
    contact = batch.contacts.get(state["contact_id"])
    if loaded is None or contact is None:
        missing = "journey" if loaded is None else "contact"
        return _fail(outcome, batch.now, f"{missing} no longer exists")
    try:
        _advance(loaded, contact, outcome, batch, lease_until)
    except NurtureError as e:
        _fail(outcome, batch.now, f"step {state['step_id']}: {e}")
    state["updated_at"] = batch.now
    return outcome


def _fail(outcome: Outcome, now: datetime, error: str) -> Outcome:
    outcome.enrollment.update(state=EnrollmentState.FAILED, next_run_at=None, last_error=error,
                              ended_at=now, end_reason="error", updated_at=now)
    return outcome


def _finish(outcome: Outcome, now: datetime, state: str, reason: str) -> None:
    outcome.enrollment.update(state=state, next_run_at=None, ended_at=now, end_reason=reason,
                              wait_event=None)


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


def _advance(loaded: LoadedJourney, contact: ContactView, outcome: Outcome, batch: Batch,
             lease_until: datetime) -> None:
    state, now, journey = outcome.enrollment, batch.now, loaded.journey
    step = _current_step(loaded, state["step_id"])
    if state["state"] == EnrollmentState.WAITING and isinstance(step, J.WaitForStep):
        step = _jump(loaded, step.on_timeout or loaded.following[step.id])
        state.update(state=EnrollmentState.ACTIVE, wait_event=None)
    for _ in range(MAX_STEPS_PER_RUN):
        if step is None:
            return _finish(outcome, now, EnrollmentState.COMPLETED, "completed")
        state["step_id"] = step.id
        if _holds(loaded, journey.goal, contact):
            return _finish(outcome, now, EnrollmentState.EXITED, "goal reached")
        if _holds(loaded, journey.exit_when, contact):
            return _finish(outcome, now, EnrollmentState.EXITED, "exit condition")
        following = _jump(loaded, loaded.following[step.id])
        if isinstance(step, J.SendStep):
            if not _send(loaded, step, contact, outcome, batch, lease_until):
                return None
            step = following
        elif isinstance(step, J.WaitStep):
            state["seq"] += 1
            state["step_id"] = following.id if following else None
            state["next_run_at"] = _wait_until(step, contact, now)
            return None
        elif isinstance(step, J.WaitForStep):
            state["seq"] += 1
            state.update(state=EnrollmentState.WAITING, wait_event=step.event,
                         next_run_at=now + parse_duration(step.timeout))
            return None
        elif isinstance(step, J.BranchStep):
            target = next((c.goto for c in step.cases if _holds(loaded, c.when, contact)),
                          step.otherwise)
            step = _jump(loaded, target) if target else following
        elif isinstance(step, J.SetStep):
            _set(loaded, step, contact, outcome)
            step = following
        elif isinstance(step, J.HandoffStep):
            outcome.handoffs.append(step.reason or f"journey {journey.id} step {step.id}")
            step = following
        elif isinstance(step, J.GotoStep):
            step = _jump(loaded, step.target)
        elif isinstance(step, J.MoveToStep):
            outcome.moves.append(step.journey)
            return _finish(outcome, now, EnrollmentState.EXITED, f"moved to {step.journey}")
        elif isinstance(step, J.ExitStep):
            return _finish(outcome, now, EnrollmentState.COMPLETED, step.reason or "exit step")
        state["seq"] += 1
    raise NurtureError(f"more than {MAX_STEPS_PER_RUN} steps without a wait")


def _jump(loaded: LoadedJourney, step_id: str | None) -> Any:
    return loaded.steps[step_id] if step_id else None


def _wait_until(step: J.WaitStep, contact: ContactView, now: datetime) -> datetime:
    if step.duration:
        return now + parse_duration(step.duration)
    assert step.until is not None
    return next_local_time(step.until.days, step.until.time, contact.timezone, now)


def _set(loaded: LoadedJourney, step: J.SetStep, contact: ContactView, outcome: Outcome) -> None:
    reason = step.reason or f"journey {loaded.id} step {step.id}"
    if step.attribute is not None:
        old = contact.attributes.get(step.attribute)
        contact.attributes[step.attribute] = step.value
        outcome.attributes.append((step.attribute, old, step.value, reason))
    if step.score is not None:
        contact.score += step.score
        outcome.score.append((step.score, reason))


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
    row: dict[str, Any] = {"public_id": public_id, "contact_id": contact.id, "enrollment": state,
           "step_id": step.id, "channel": step.channel, "purpose": purpose,
           "template": step.template, "to": contact.address(step.channel) or "", "now": now}
    if isinstance(verdict, gates.Skipped):
        outcome.messages.append(send.message_row(**row, state=MessageState.SKIPPED,
                                                 skip_reason=verdict.reason,
                                                 error=verdict.detail))
        return True
    try:
        composed = compose(batch, loaded, step, contact, purpose, public_id)
    except TemplateError as e:
        outcome.messages.append(send.message_row(**row, state=MessageState.SKIPPED,
                                                 skip_reason=SkipReason.RENDER_ERROR,
                                                 error=str(e)))
        raise
    refused = _sms_refusal(batch.settings, composed)
    if refused is not None:
        outcome.messages.append(send.message_row(
            **row, state=MessageState.SKIPPED, skip_reason=refused.reason, error=refused.detail,
            locale=composed.locale, text=composed.message.text, segments=composed.segments))
        return True
    outcome.messages.append(send.row_for(composed, template=step.template, now=now,
                                         lease_until=lease_until, enrollment=state,
                                         step_id=step.id))
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
            purpose: str, public_id: str) -> send.Composed:
    """Render the step's template for this contact into a message for the provider."""
    links = MessageLinks(batch.links, public_id)
    context = template_context(batch.settings, contact, links, public_id, loaded.journey)
    if step.channel == "sms":
        return send.compose_sms(batch.settings, batch.catalog, batch.links,
                                template=step.template, contact=contact, context=context,
                                purpose=purpose, public_id=public_id, now=batch.now)
    return send.compose_email(batch.settings, batch.catalog, template=step.template,
                              contact=contact, context=context, purpose=purpose,
                              public_id=public_id, now=batch.now,
                              categories=(loaded.id, step.id))
