"""Run one enrollment's steps until it waits, using only prefetched data.

No SQL here: the tick prefetches what the steps need (`Batch`), the executor returns what
changed (`Outcome`), and the tick writes every outcome of a batch at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture import gates
from nurture import journey as J
from nurture.config import Settings
from nurture.durations import parse_duration
from nurture.errors import NurtureError, TemplateError
from nurture.loader import LoadedJourney
from nurture.providers.base import OutgoingMessage
from nurture.rendering import TemplateCatalog
from nurture.tokens import Links, MessageLinks
from nurture.views import ContactView
from nurture.vocab import EnrollmentState, MessageState, SkipReason
from nurture.windows import next_local_time

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


def new_public_id(now: datetime) -> str:
    """Our message id: time-ordered (the index grows at its end, as rows are added) and
    80 random bits, so ids cannot be guessed; links carry it signed besides."""
    return f"{int(now.timestamp() * 1000):011x}{os.urandom(10).hex()}"


def message_row(*, public_id: str, contact: ContactView, enrollment: dict[str, Any],
                step: J.SendStep, purpose: str, state: str, now: datetime,
                skip_reason: str | None = None, error: str = "", locale: str = "",
                subject: str = "", text: str = "", segments: int = 0,
                lease_until: datetime | None = None) -> dict[str, Any]:
    """A complete message row (every column, so a batch inserts in one statement)."""
    return {
        "public_id": public_id, "contact_id": contact.id, "enrollment_id": enrollment["id"],
        "seq": enrollment["seq"], "journey_id": enrollment["journey_id"], "step_id": step.id,
        "channel": step.channel, "purpose": purpose, "template": step.template,
        "locale": locale, "state": state, "skip_reason": skip_reason, "error": error,
        "to_address": contact.address(step.channel) or "", "subject": subject,
        "body_text": text, "segments": segments, "provider": "",
        "provider_message_id": None, "attempts": 0, "next_attempt_at": None,
        "lease_until": lease_until, "retry_payload": None, "created_at": now, "sent_at": None,
        "updated_at": now,
    }


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
    window = loaded.journey.send_window.get(step.channel)  # type: ignore[call-overload]
    request = gates.SendRequest(contact, step.channel, purpose, now,
                                (window,) if window else ())
    verdict = gates.check(request, batch.gate_state, batch.settings)
    if isinstance(verdict, gates.Deferred):
        state["next_run_at"] = verdict.until
        outcome.deferred = True
        return False
    public_id = new_public_id(now)
    row = {"public_id": public_id, "contact": contact, "enrollment": state, "step": step,
           "purpose": purpose, "now": now}
    if isinstance(verdict, gates.Skipped):
        outcome.messages.append(message_row(**row, state=MessageState.SKIPPED,
                                            skip_reason=verdict.reason, error=verdict.detail))
        return True
    try:
        built = compose(batch, loaded, step, contact, purpose, public_id)
    except TemplateError as e:
        outcome.messages.append(message_row(**row, state=MessageState.SKIPPED,
                                            skip_reason=SkipReason.RENDER_ERROR, error=str(e)))
        raise
    outgoing, locale, segments = built
    outcome.messages.append(message_row(
        **row, state=MessageState.SENDING, locale=locale, subject=outgoing.subject,
        text=outgoing.text, segments=segments, lease_until=lease_until))
    outcome.outgoing.append(outgoing)
    batch.gate_state.record_send(contact.id, step.channel, batch.settings.frequency_caps)
    return True


def template_context(settings: Settings, contact: ContactView, links: Mapping[str, str],
                     public_id: str, journey: J.Journey | None) -> dict[str, Any]:
    """What templates see. `journey` is None for messages sent outside journeys (double
    opt-in confirmations)."""
    fields = contact.template_fields()
    for name, spec in settings.attributes.items():
        fields[name] = contact.attributes.get(name, "" if spec.type == "string" else None)
    sender = settings.sender
    return {
        "contact": fields,
        "sender": {"company": sender.company, "postal_address": sender.postal_address,
                   "email_from": sender.email_from},
        "links": links,
        "message": {"id": public_id},
        "journey": {"id": journey.id if journey else "", "name": journey.name if journey else ""},
    }


def compose(batch: Batch, loaded: LoadedJourney, step: J.SendStep, contact: ContactView,
            purpose: str, public_id: str) -> tuple[OutgoingMessage, str, int]:
    """Render the step's template for this contact into a message for the provider."""
    settings = batch.settings
    links = MessageLinks(batch.links, public_id)
    context = template_context(settings, contact, links, public_id, loaded.journey)
    spec = settings.purposes.get(purpose)
    marketing = spec.marketing if spec else True
    to = contact.address(step.channel) or ""
    if step.channel == "sms":
        mention = settings.sms.stop_mention.get(contact.locale) if marketing else None
        sms = batch.catalog.render_sms(step.template, contact.locale, context,
                                       stop_mention=mention)
        callback = f"{batch.links.base_url}/webhooks/twilio/status?m={public_id}"
        message = OutgoingMessage(public_id, "sms", to, settings.sender.sms_from, text=sms.text,
                                  status_callback=callback, created_at=batch.now)
        return message, sms.locale, sms.segments
    email = batch.catalog.render_email(step.template, contact.locale, context)
    headers = unsubscribe_headers(settings, links["unsubscribe"], public_id) if marketing else {}
    message = OutgoingMessage(
        public_id, "email", to, settings.sender.email_from, subject=email.subject,
        text=email.text, html=email.html, reply_to=reply_address(settings, public_id),
        headers=headers, categories=(loaded.id, step.id), created_at=batch.now)
    return message, email.locale, 0


def unsubscribe_headers(settings: Settings, url: str, public_id: str) -> dict[str, str]:
    """RFC 2369 List-Unsubscribe with an HTTPS one-click URI (RFC 8058), and mailto if set."""
    targets = [f"<{url}>"]
    if settings.sender.unsubscribe_mailto:
        targets.append(f"<mailto:{settings.sender.unsubscribe_mailto}?subject=unsubscribe-"
                       f"{public_id}>")
    return {"List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def reply_address(settings: Settings, public_id: str) -> str:
    """A per-message reply-to (reply+ID@domain) ties an email reply to its message."""
    if settings.sender.reply_domain:
        return f"reply+{public_id}@{settings.sender.reply_domain}"
    return settings.sender.reply_to
