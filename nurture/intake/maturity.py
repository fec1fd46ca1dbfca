"""Maturity in the database: events re-score contacts, scores set temperature and stage,
new prospects are handed to sales, and sales move stages back.

The decisions are `nurture.scoring`'s (pure); this module fetches what they need in a few
queries, writes every change with its rule, event and reason (`contact_change`), and
flags the contact for journey re-evaluation (`evaluate_at`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection

from nurture.config.settings import ScoreRule, Scoring, Settings
from nurture.durations import parse_duration
from nurture.engine import membership
from nurture.engine.runtime import EventRun, NoHook, Runtime
from nurture.errors import ContactError
from nurture.intake import reply_effects
from nurture.intake.events import IncomingEvent
from nurture.scoring import rules as scoring
from nurture.store import maturity as ms
from nurture.views import ContactView
from nurture.vocab import Stage

#: fields whose change can move the contact between journeys
MOVING_FIELDS = frozenset({"stage", "temperature", "fit"})


@dataclass
class Writes:
    """Changes of a batch of contacts, written together by `flush`."""

    now: datetime
    contacts: dict[int, ContactView] = field(default_factory=dict)
    #: rows of `contact_change`, in `maturity_store.CHANGE_COLUMNS` order
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    #: contacts whose stage changed, with the change (handoffs, stage_changed_at)
    staged: dict[int, scoring.Change] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)
    #: contacts whose attributes changed
    profiled: set[int] = field(default_factory=set)
    #: contacts already due for journey evaluation (`evaluate_at` ≤ now, left as it is)
    due: set[int] = field(default_factory=set)

    def add(self, contact: ContactView, changes: Iterable[scoring.Change],
            event_id: int | None = None) -> None:
        self.contacts[contact.id] = contact
        for change in changes:
            self.changes.append((contact.id, change.field, _text(change.old),
                                 _text(change.new), change.delta, change.rule, event_id,
                                 change.reason, self.now))
            if change.field == "stage":
                self.staged[contact.id] = change
            if change.field in MOVING_FIELDS:
                self.moved.add(contact.id)

    def attribute(self, contact: ContactView, name: str, value: Any, reason: str) -> None:
        """Set an attribute (a journey's `set` step), recorded; `flush` writes them all."""
        old = contact.attributes.get(name)
        contact.attributes[name] = value
        self.contacts[contact.id] = contact
        self.changes.append((contact.id, f"attributes.{name}", "" if old is None else str(old),
                             "" if value is None else str(value), None, "journey", None,
                             reason, self.now))
        self.profiled.add(contact.id)
        self.moved.add(contact.id)  # journey conditions may read attributes

    def flush(self, conn: Connection, settings: Settings,
              decay_at: dict[int, datetime | None], reschedule: bool = False) -> None:
        """Write changes, then contacts (with their next decay), then handoffs."""
        # by contact, each contact's in their order: the index on (contact, rule, at) is
        # walked in one direction instead of at random
        ms.insert_changes(conn, sorted(self.changes, key=_contact_of))
        # rows grouped by the columns they set: indexed columns (decay_at, stage,
        # evaluate_at) are written only when they change, which spares SQLite index
        # updates; in id order, as the rows lie
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        every = decay_every(settings)
        for cid in sorted(self.contacts):
            contact = self.contacts[cid]
            row = {"id": cid, "score": contact.score, "fit": contact.fit,
                   "temperature": contact.temperature, "updated_at": self.now}
            if cid not in self.due:
                row["evaluate_at"] = self.now
            current = decay_at.get(cid)
            decays = next_decay(every, contact.score, current, self.now, reschedule)
            if decays != current:
                row["decay_at"] = decays
            if cid in self.staged:
                row.update(stage=contact.stage, stage_changed_at=self.now)
            if cid in self.profiled:
                row["attributes"] = contact.attributes
            groups.setdefault(tuple(row), []).append(row)
        for rows in groups.values():
            ms.update_contacts(conn, rows)
        prospects = {cid: c for cid, c in self.staged.items() if c.new == Stage.PROSPECT}
        qualifying = ms.qualifying_events(conn, prospects) if prospects else {}
        ms.insert_handoffs(conn, [handoff_row(self.contacts[cid], change, qualifying.get(cid, []),
                                              self.now) for cid, change in prospects.items()])


_contact_of = itemgetter(0)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def decay_every(settings: Settings) -> timedelta | None:
    """How often scores decay; None without a half-life (scores never decay)."""
    if not settings.scoring.half_life:
        return None
    return parse_duration(settings.scoring.decay_every)


def next_decay(every: timedelta | None, score: float, current: datetime | None,
               now: datetime, reschedule: bool) -> datetime | None:
    """When this contact's score decays next (`decay_every`): none at 0 or without a
    half-life; the decay job reschedules, an event only starts the schedule."""
    if score == 0 or every is None:
        return None
    if current is not None and not reschedule:
        return current
    return now + every


# ---- events ---------------------------------------------------------------------------


def on_event(conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
             now: datetime) -> None:
    """The event hook: score this event, re-derive fit, temperature and stage."""
    on_events(conn, rt, [(event_id, event)], now)


def on_events(conn: Connection, rt: Runtime, items: Sequence[tuple[int, IncomingEvent]],
              now: datetime) -> dict[int, ContactView]:
    """The batched form of `on_event` (`intake.ingest_many`): a few queries per batch.
    Returns the contacts as it left them (written, due for journey evaluation by now), so
    the caller need not load or flag them again."""
    items = [(eid, ev) for eid, ev in items if ev.contact_id is not None]
    if not items:
        return {}
    config = rt.settings.scoring
    contacts, decay_at, due = ms.lock_for_scoring(
        conn, {ev.contact_id for _, ev in items if ev.contact_id}, now)
    rules = scoring.compiled(config)
    matched = [_match(rt.settings, rules.rules, event) for _, event in items]
    hits = _cap_hits(conn, config, [(ev.contact_id or 0, m[0]) for (_, ev), m
                                    in zip(items, matched, strict=True)], now)
    reply_points = reply_effects.points(rt.settings)
    writes = Writes(now, due=due)
    fits: dict[int, scoring.Fit] = {}  # by contact, when the attributes alone decide it
    for (event_id, event), (found, properties, intent) in zip(items, matched, strict=True):
        contact = contacts.get(event.contact_id or 0)
        if contact is None:
            continue
        awards = _awards(event, found, properties, contact.id, hits)
        if intent is not None:
            text = str(event.properties.get("text") or "")
            awards += filter(None, [scoring.reply_award(intent, text, reply_points)])
        fit = None
        if rules.fit.by_profile:  # events do not change attributes
            fit = fits.get(contact.id) or fits.setdefault(contact.id, rules.fit(contact))
        signal = scoring.signal_for(config, event.type, intent)
        writes.add(contact, scoring.assess(contact, config, awards, signal, fit), event_id)
    writes.flush(conn, rt.settings, decay_at)
    return contacts


class ScoringHook(NoHook):
    """Every event scores (`on_events`), a run of them at a time."""

    def on_run(self, conn: Connection, rt: Runtime, run: EventRun,
               now: datetime) -> Mapping[int, ContactView]:
        return on_events(conn, rt, run, now)


def _match(settings: Settings, index: scoring.RuleIndex, event: IncomingEvent
           ) -> tuple[list[ScoreRule], Mapping[str, Any], str | None]:
    """The rules this event matches, the properties they read (a reply's `intent` and
    `matched` added) and the reply's intent."""
    reply = reply_effects.classify(settings, event.type, event.properties)
    if reply is None:
        return index.matching(event.type, event.properties), event.properties, None
    properties = {**event.properties, "intent": reply.intent, "matched": reply.matched}
    return index.matching(event.type, properties), properties, reply.intent


def _awards(event: IncomingEvent, rules: list[ScoreRule], properties: Mapping[str, Any],
            contact_id: int, hits: dict[tuple[str, int], int]) -> list[scoring.Award]:
    """The points of the matched rules, counting each capped rule's hits as they come."""
    awards = []
    for rule in rules:
        key = (rule.name, contact_id)
        award = scoring.award_for(rule, event.type, properties, hits.get(key, 0))
        if award is not None:
            awards.append(award)
            hits[key] = hits.get(key, 0) + 1
    return awards


def _cap_hits(conn: Connection, config: Scoring, matched: Sequence[tuple[int, list[ScoreRule]]],
              now: datetime) -> dict[tuple[str, int], int]:
    """(rule, contact) → hits of that capped rule within its window, one query per rule."""
    wanted: dict[str, tuple[ScoreRule, set[int]]] = {}
    for cid, rules in matched:
        for rule in rules:
            if rule.cap is not None:
                wanted.setdefault(rule.name, (rule, set()))[1].add(cid)
    # fit changes carry fit rule names (joined by commas): only they could share a name
    fit_names = {"fit", *(rule.name for rule in config.fit)}
    hits: dict[tuple[str, int], int] = {}
    for name, (rule, cids) in wanted.items():
        shared = set(name.split(",")) <= fit_names
        found = ms.rule_hits_many(conn, cids, name, now - scoring.cap_window(rule), shared)
        hits.update({(name, cid): count for cid, count in found.items()})
    return hits


def reassess(conn: Connection, settings: Settings, contact_id: int, now: datetime) -> set[int]:
    """Fit, temperature and stage derived again from the contact as stored (its profile
    changed: `contact add`, a `set` step), each change recorded with the rule that
    decided. Returns the contacts that may now leave journeys (entries follow through
    `evaluate_at`)."""
    contacts, decay_at = ms.lock_contacts(conn, [contact_id])
    contact = contacts.get(contact_id)
    if contact is None:
        return set()
    writes = Writes(now)
    writes.add(contact, scoring.assess(contact, settings.scoring))
    writes.flush(conn, settings, decay_at)  # also starts the decay of a new score
    return writes.moved


def apply_set_steps(conn: Connection, rt: Runtime, contact_id: int,
                    attributes: Sequence[tuple[str, Any, Any, str]],
                    points: Sequence[tuple[float, str]], now: datetime) -> None:
    """A journey's `set` steps (the executor's `Outcome.attributes` and `.score`) applied
    to the contact as it is now, not as the batch read it: the row is locked (PostgreSQL)
    and the points are added to the current score, so points an event added meanwhile
    are kept. Each change is recorded (rule `journey`), then fit, temperature and stage
    are derived again and the journeys whose exit now holds are left."""
    contacts, decay_at = ms.lock_contacts(conn, [contact_id])
    contact = contacts.get(contact_id)
    if contact is None:
        return
    writes = Writes(now)
    for name, _, value, reason in attributes:
        writes.attribute(contact, name, value, reason)
    awards = [scoring.Award("journey", value, reason) for value, reason in points]
    writes.add(contact, scoring.assess(contact, rt.settings.scoring, awards))
    writes.flush(conn, rt.settings, decay_at)
    leave_journeys(conn, rt, writes.moved, now)


def leave_journeys(conn: Connection, rt: Runtime, contact_ids: Iterable[int],
                   now: datetime) -> None:
    """Exit the journeys whose exit/goal now holds (entries follow via `evaluate_at`)."""
    for cid in sorted(contact_ids):
        membership.apply_exits(conn, rt, cid, now)


# ---- stages set by people, handoffs ---------------------------------------------------


def set_stage(conn: Connection, rt: Runtime, contact_id: int, stage: str, reason: str,
              now: datetime, rule: str = "sales") -> scoring.Change | None:
    """Sales (CLI, API) or a job moves a contact: accept, customer, recycle (reason kept).
    Returns the change, or None when the contact was already there."""
    if stage not in {s.value for s in Stage}:
        raise ContactError(f"unknown stage {stage!r} (one of: "
                           f"{', '.join(s.value for s in Stage)})")
    if stage == Stage.RECYCLED and not reason.strip():
        raise ContactError("recycling a contact needs a reason (--reason)")
    contacts, decay_at = ms.lock_contacts(conn, [contact_id])
    contact = contacts.get(contact_id)
    if contact is None:
        raise ContactError(f"no contact {contact_id}")
    if contact.stage == stage:
        return None
    change = scoring.Change("stage", contact.stage, stage, rule, reason.strip() or f"set by {rule}")
    contact.stage = stage
    writes = Writes(now)
    writes.add(contact, [change])
    writes.flush(conn, rt.settings, decay_at)
    leave_journeys(conn, rt, [contact_id], now)
    return change


def handoff_row(contact: ContactView, change: scoring.Change, qualifying: list[dict[str, Any]],
                now: datetime) -> dict[str, Any]:
    """A handoff to sales with what qualified the contact, to record (`handoffs`
    delivers it)."""
    payload = {
        "reason": change.reason, "rule": change.rule, "qualified_at": now.isoformat(),
        "contact": contact_payload(contact), "score": contact.score, "fit": contact.fit,
        "temperature": contact.temperature, "stage": contact.stage,
        "events": events_payload(qualifying),
    }
    return {"contact_id": contact.id, "reason": f"{change.rule}: {change.reason}",
            "payload": payload, "notify": True, "state": "pending", "attempts": 0,
            "next_attempt_at": now, "last_error": "", "created_at": now}


def events_payload(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": e["id"], "type": e["type"], "occurred_at": e["occurred_at"].isoformat(),
             "properties": e["properties"], "points": e["delta"], "rule": e["rule"]}
            for e in rows]


def contact_payload(contact: ContactView) -> dict[str, Any]:
    return {"id": contact.id, "email": contact.email, "phone": contact.phone,
            "locale": contact.locale, "timezone": contact.timezone, "country": contact.country,
            "attributes": dict(contact.attributes)}
