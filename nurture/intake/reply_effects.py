"""What a reply does, besides its points: keeps its intent, records consent, stops a journey.

`reply.received` events carry `text` and `channel` (email or sms). The text is classified
by `nurture.replies` (config `[[replies.rules]]` first, then the French/English defaults):

- `opt_out` (STOP, ARRÊT, "ne plus m'envoyer"…) withdraws consent for that channel, for
  every purpose, with the text as evidence — on SMS for every contact holding the
  number, since the number is what receives the texts;
- `opt_in` (START alone) lifts an earlier channel-wide withdrawal only when the reply
  really came through the channel's own signed provider inbound (`OPT_IN_SOURCES`: a
  Twilio SMS, its signature verified by the webhook), for every contact holding that
  number. A `reply.received` posted to `/events` (stored with source `api`, which the
  caller cannot choose), given on the command line, or an email reply (whose sender
  anyone can forge) changes no consent: email re-opt-in goes through the preference
  page or `POST /consent`, with evidence;
- `help` changes nothing (the SMS webhook answers it);
- any other reply comes from a person: the journey that sent the contact's latest message
  is paused (stop-on-reply) unless it says `stop_on_reply: false`, or was waiting for
  this very reply.

The intent is kept on the event (`properties.intent`, `properties.matched`); its points
(config `[replies] points` over `replies.DEFAULT_POINTS`) are added by `maturity`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.journey import WaitForStep
from nurture.authoring.loader import LoadedJourney
from nurture.config.settings import Settings
from nurture.engine.runtime import NoHook, Runtime
from nurture.errors import ContactError
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.scoring.replies import (
    DEFAULT_POINTS,
    Classification,
    Classifier,
    Intent,
    rules_from_config,
)
from nurture.store import maturity as ms
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction, EnrollmentState, EventType

log = logging.getLogger("nurture.replies")

#: intents that are not a person talking: they never pause a journey
CARRIER_INTENTS = frozenset({Intent.OPT_OUT, Intent.OPT_IN, Intent.HELP})
#: event source → the channel whose opt-in it may carry: only a provider's inbound whose
#: signature the webhook verified, for that provider's own channel
OPT_IN_SOURCES: Mapping[str, str] = {"twilio": Channel.SMS}


@lru_cache(maxsize=16)
def _classifier(rules: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]) -> Classifier:
    items = [{"intent": i, "keywords": k, "patterns": p} for i, k, p in rules]
    return Classifier(rules_from_config(items))


def classifier(settings: Settings) -> Classifier:
    """The classifier for this config, compiled once."""
    rules = tuple((r.intent, tuple(r.keywords), tuple(r.patterns))
                  for r in settings.replies.rules)
    return _classifier(rules)


def classify(settings: Settings, event_type: str,
             properties: Mapping[str, Any]) -> Classification | None:
    """The reply's intent, or None for any other event."""
    if event_type != EventType.REPLY_RECEIVED:
        return None
    return classifier(settings).classify(str(properties.get("text") or ""))


def points(settings: Settings) -> dict[str, float]:
    """Points per intent: the defaults, overridden by config `[replies] points`."""
    return {**{str(k): v for k, v in DEFAULT_POINTS.items()}, **settings.replies.points}


def reply_channel(conn: Connection, event: IncomingEvent) -> str:
    channel = event.properties.get("channel")
    if channel in ("email", "sms"):
        return str(channel)
    if event.message_id is not None:
        return ms.message_channel(conn, event.message_id) or "email"
    return "email"


def on_reply(conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
             now: datetime) -> None:
    """The event hook for `reply.received` (every other event passes through)."""
    found = classify(rt.settings, event.type, event.properties)
    if found is None or event.contact_id is None:
        return
    channel = reply_channel(conn, event)
    ms.set_event_properties(conn, event_id, {**event.properties, "channel": channel,
                                             "intent": found.intent, "matched": found.matched})
    text = str(event.properties.get("text") or "")
    if found.intent == Intent.OPT_OUT:
        _consent(conn, rt, event, event_id, channel, ConsentAction.WITHDRAWN, found, text, now)
    elif found.intent == Intent.OPT_IN:
        if OPT_IN_SOURCES.get(event.source) == channel:
            _consent(conn, rt, event, event_id, channel, ConsentAction.GRANTED, found, text,
                     now)
        else:
            log.info("reply %s (%s, %s): an opt-in counts only from the channel's signed "
                     "provider inbound; consent unchanged", event_id, event.source, channel)
    elif found.intent not in CARRIER_INTENTS:
        pause_for_reply(conn, rt, event.contact_id, channel, found.intent, event_id, now)


class ReplyHook(NoHook):
    """A reply's consent and stop-on-reply (`on_reply`), one reply at a time: what it does
    depends on where the events before it left the contact."""

    single_types = frozenset({EventType.REPLY_RECEIVED})

    def on_event(self, conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
                 now: datetime) -> None:
        on_reply(conn, rt, event_id, event, now)


def _consent(conn: Connection, rt: Runtime, event: IncomingEvent, event_id: int, channel: str,
             action: str, found: Classification, text: str, now: datetime) -> None:
    """The reply's channel-wide decision, with the reply as evidence: on SMS for every
    contact holding the number; on email for the contact (a withdrawal only)."""
    contact = store.contact_row(conn, contact_id=event.contact_id)
    evidence = {"text": text, "event_id": event_id, "matched": found.matched,
                "source": event.source, "source_event_id": event.source_event_id}
    changed: list[int] = []
    if channel == Channel.SMS and contact is not None and contact.phone:
        apply = ledger.withdraw_number if action == ConsentAction.WITHDRAWN else ledger.lift_number
        changed = apply(conn, now, phone=contact.phone, source="reply", evidence=evidence)
    elif action == ConsentAction.WITHDRAWN:
        try:
            ledger.record_consent(
                conn, rt.settings, now, contact=contact, channel=channel, purpose=ALL_PURPOSES,
                action=action, source="reply", evidence=evidence)
        except ContactError as e:  # no address on that channel
            log.warning("reply %s of contact %s: consent not recorded: %s", event_id,
                        event.contact_id, e)
            return
        changed = [int(event.contact_id or 0)]
    for contact_id in changed:
        store.record_change(conn, contact_id, f"consent.{channel}", "",
                            f"{action} (all purposes)", now, rule=f"reply:{found.intent}",
                            event_id=event_id, reason=f"reply {text[:80]!r}")


def pause_for_reply(conn: Connection, rt: Runtime, contact_id: int, channel: str, intent: str,
                    event_id: int | None, now: datetime) -> int | None:
    """Stop-on-reply: pause the enrollment that sent the latest message. Returns its id."""
    enrollment_id = (store.last_message_enrollment(conn, contact_id, channel)
                     or store.last_message_enrollment(conn, contact_id, None))
    row = ms.enrollment(conn, enrollment_id) if enrollment_id else None
    if row is None or row["state"] not in (EnrollmentState.ACTIVE, EnrollmentState.WAITING):
        return None
    loaded = rt.journeys.get(row["journey_id"])
    if loaded is not None and (not loaded.journey.stop_on_reply
                               or _resumed_by_reply(loaded, row, now)):
        return None
    store.update_enrollment(conn, row["id"], {
        "state": EnrollmentState.PAUSED, "next_run_at": None, "wait_event": None,
        "updated_at": now})
    store.record_change(conn, contact_id, f"journey.{row['journey_id']}", row["state"],
                        EnrollmentState.PAUSED, now, rule=f"reply:{intent}", event_id=event_id,
                        reason="stop on reply: a person answered")
    return int(row["id"])


def _resumed_by_reply(loaded: LoadedJourney, row: Mapping[str, Any], now: datetime) -> bool:
    """True when this reply is what the enrollment's `wait_for` step was waiting for."""
    if row["state"] != EnrollmentState.ACTIVE or row["updated_at"] != now:
        return False
    return any(isinstance(step, WaitForStep) and step.event == EventType.REPLY_RECEIVED
               and (step.on_event or loaded.following[step.id]) == row["step_id"]
               for step in loaded.journey.steps)
