"""Maturity in the database: events re-score contacts, scores set temperature and stage,
new prospects are handed to sales, and sales move stages back.

The decisions are `nurture.scoring`'s (pure); this module fetches what they need in a few
queries, writes every change with its rule, event and reason (`contact_change`), and
flags the contact for journey re-evaluation (`evaluate_at`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from nurture import events, reply_effects, scoring, store
from nurture import maturity_store as ms
from nurture.config import ScoreRule, Settings
from nurture.durations import parse_duration
from nurture.errors import ContactError
from nurture.views import ContactView
from nurture.vocab import Stage

if TYPE_CHECKING:
    from nurture.engine import Runtime
    from nurture.events import IncomingEvent

#: fields whose change can move the contact between journeys
MOVING_FIELDS = frozenset({"stage", "temperature", "fit"})


@dataclass
class Writes:
    """Changes of a batch of contacts, written together by `flush`."""

    now: datetime
    contacts: dict[int, ContactView] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: contacts whose stage changed, with the change (handoffs, stage_changed_at)
    staged: dict[int, scoring.Change] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)

    def add(self, contact: ContactView, changes: Iterable[scoring.Change],
            event_id: int | None = None) -> None:
        self.contacts[contact.id] = contact
        for change in changes:
            self.changes.append({
                "contact_id": contact.id, "field": change.field, "old": _text(change.old),
                "new": _text(change.new), "delta": change.delta, "rule": change.rule,
                "event_id": event_id, "reason": change.reason, "at": self.now})
            if change.field == "stage":
                self.staged[contact.id] = change
            if change.field in MOVING_FIELDS:
                self.moved.add(contact.id)

    def flush(self, conn: Connection, rt: Runtime, decay_at: dict[int, datetime | None],
              reschedule: bool = False) -> None:
        """Write changes, then contacts (with their next decay), then handoffs."""
        ms.insert_changes(conn, self.changes)
        # rows grouped by the columns they set: indexed columns (decay_at, stage) are
        # written only when they change, which spares SQLite index updates
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for cid, contact in self.contacts.items():
            row = {"id": cid, "score": contact.score, "fit": contact.fit,
                   "temperature": contact.temperature, "updated_at": self.now,
                   "evaluate_at": self.now}
            current = decay_at.get(cid)
            decays = next_decay(rt.settings, contact.score, current, self.now, reschedule)
            if decays != current:
                row["decay_at"] = decays
            if cid in self.staged:
                row.update(stage=contact.stage, stage_changed_at=self.now)
            groups.setdefault(tuple(row), []).append(row)
        for rows in groups.values():
            ms.update_contacts(conn, rows)
        prospects = {cid: c for cid, c in self.staged.items() if c.new == Stage.PROSPECT}
        qualifying = ms.qualifying_events(conn, prospects) if prospects else {}
        for cid, change in prospects.items():
            hand_off(conn, self.contacts[cid], change, qualifying.get(cid, []), self.now)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def next_decay(settings: Settings, score: float, current: datetime | None, now: datetime,
               reschedule: bool) -> datetime | None:
    """When this contact's score decays next: none at 0 or without a half-life; the
    decay job reschedules, an event only starts the schedule."""
    if score == 0 or not settings.scoring.half_life:
        return None
    if current is not None and not reschedule:
        return current
    return now + parse_duration(settings.scoring.decay_every)


# ---- events ---------------------------------------------------------------------------


def on_event(conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
             now: datetime) -> None:
    """The event hook: score this event, re-derive fit, temperature and stage."""
    on_events(conn, rt, [(event_id, event)], now)


def on_events(conn: Connection, rt: Runtime, items: Sequence[tuple[int, IncomingEvent]],
              now: datetime) -> dict[int, ContactView]:
    """The batched form of `on_event` (`intake.ingest_many`): a few queries per batch.
    Returns the contacts as it left them, so the caller need not load them again."""
    items = [(eid, ev) for eid, ev in items if ev.contact_id is not None]
    if not items:
        return {}
    settings = rt.settings
    contacts, decay_at = ms.lock_contacts(conn, {ev.contact_id for _, ev in items if ev.contact_id})
    reply_points = reply_effects.points(settings)
    index = _index(settings)
    matched = [_match(settings, index, event) for _, event in items]
    hits = _cap_hits(conn, [(ev.contact_id or 0, m.rules) for (_, ev), m
                            in zip(items, matched, strict=True)], now)
    writes = Writes(now)
    fits: dict[int, scoring.Fit] = {}  # attributes do not change here: one fit per contact
    for (event_id, event), match in zip(items, matched, strict=True):
        contact = contacts.get(event.contact_id or 0)
        if contact is None:
            continue
        awards = []
        for rule in match.rules:
            key = (rule.name, contact.id)
            award = scoring.award_for(rule, event.type, match.properties, hits.get(key, 0))
            if award is not None:
                awards.append(award)
                hits[key] = hits.get(key, 0) + 1
        if match.intent is not None:
            text = str(event.properties.get("text") or "")
            award = scoring.reply_award(match.intent, text, reply_points)
            awards += [award] if award else []
        signal = scoring.signal_for(settings.scoring, event.type, match.intent)
        fit = fits.get(contact.id) or fits.setdefault(
            contact.id, scoring.fit_for(settings.scoring.fit, contact))
        writes.add(contact, scoring.assess(contact, settings.scoring, awards, signal, fit),
                   event_id)
    writes.flush(conn, rt, decay_at)
    return contacts


on_event.many = on_events  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Match:
    rules: list[ScoreRule]
    #: the event's properties, with a reply's `intent` and `matched` added
    properties: Mapping[str, Any]
    intent: str | None = None


_INDEXES: dict[int, tuple[Settings, scoring.RuleIndex]] = {}


def _index(settings: Settings) -> scoring.RuleIndex:
    """The rule index of these settings, built once (settings are immutable)."""
    found = _INDEXES.get(id(settings))
    if found is None or found[0] is not settings:
        if len(_INDEXES) > 32:
            _INDEXES.clear()
        found = _INDEXES[id(settings)] = (settings, scoring.RuleIndex(settings.scoring.rules))
    return found[1]


def _match(settings: Settings, index: scoring.RuleIndex, event: IncomingEvent) -> _Match:
    reply = reply_effects.classify(settings, event.type, event.properties)
    properties = event.properties
    if reply is not None:
        properties = {**properties, "intent": reply.intent, "matched": reply.matched}
    rules = index.matching(event.type, properties)
    return _Match(rules, properties, reply.intent if reply else None)


def _cap_hits(conn: Connection, matched: Sequence[tuple[int, list[ScoreRule]]],
              now: datetime) -> dict[tuple[str, int], int]:
    """(rule, contact) → hits of that capped rule within its window, one query per rule."""
    wanted: dict[str, tuple[ScoreRule, set[int]]] = {}
    for cid, rules in matched:
        for rule in rules:
            if rule.cap is not None:
                wanted.setdefault(rule.name, (rule, set()))[1].add(cid)
    hits: dict[tuple[str, int], int] = {}
    for name, (rule, cids) in wanted.items():
        found = ms.rule_hits_many(conn, cids, name, now - scoring.cap_window(rule))
        hits.update({(name, cid): count for cid, count in found.items()})
    return hits


def on_contact_changed(conn: Connection, rt: Runtime, contact_id: int, now: datetime) -> None:
    """A journey `set` step changed the score or an attribute: re-derive the rest."""
    contacts, decay_at = ms.lock_contacts(conn, [contact_id])
    contact = contacts.get(contact_id)
    if contact is None:
        return
    writes = Writes(now)
    writes.add(contact, scoring.assess(contact, rt.settings.scoring))
    writes.flush(conn, rt, decay_at)
    leave_journeys(conn, rt, writes.moved, now)


def leave_journeys(conn: Connection, rt: Runtime, contact_ids: Iterable[int],
                   now: datetime) -> None:
    """Exit the journeys whose exit/goal now holds (entries follow via `evaluate_at`)."""
    for cid in sorted(contact_ids):
        events.apply_exits(conn, rt, cid, now)


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
    writes.flush(conn, rt, decay_at)
    leave_journeys(conn, rt, [contact_id], now)
    return change


def hand_off(conn: Connection, contact: ContactView, change: scoring.Change,
             qualifying: list[dict[str, Any]], now: datetime) -> int:
    """Record a handoff to sales with what qualified the contact; `handoffs` delivers it."""
    payload = {
        "reason": change.reason, "rule": change.rule, "qualified_at": now.isoformat(),
        "contact": contact_payload(contact), "score": contact.score, "fit": contact.fit,
        "temperature": contact.temperature, "stage": contact.stage,
        "events": events_payload(qualifying),
    }
    return store.insert_handoff(conn, contact.id, f"{change.rule}: {change.reason}",
                                "qualification", now, payload=payload)


def events_payload(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": e["id"], "type": e["type"], "occurred_at": e["occurred_at"].isoformat(),
             "properties": e["properties"], "points": e["delta"], "rule": e["rule"]}
            for e in rows]


def contact_payload(contact: ContactView) -> dict[str, Any]:
    return {"id": contact.id, "email": contact.email, "phone": contact.phone,
            "locale": contact.locale, "timezone": contact.timezone, "country": contact.country,
            "attributes": dict(contact.attributes)}
