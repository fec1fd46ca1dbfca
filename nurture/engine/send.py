"""The one send path: every outgoing message is composed, recorded and handed over here.

Journey steps (through the executor), retries, double opt-in confirmations and sales
notifications all become a `message` row (state `sending`) in the caller's transaction,
then reach `deliver` once that transaction committed. Immediately before each provider
call — each message, each attempt — `Guard` confirms that the address is not
suppressed and, for journey messages, that consent for the channel × purpose still
holds; a withdrawal or suppression committed before that moment always wins, and the
message ends `skipped` with its reason. Only the provider call itself remains: a
withdrawal committed while the request is on the wire cannot stop it.

Retries re-run the gates at their own time (consent, suppression, send window), so a
retry never goes out after a withdrawal, nor outside the window (it waits for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from nurture.authoring.journey import Journey
from nurture.compliance import gates
from nurture.compliance.hygiene import address_hash
from nurture.compliance.tokens import Links, MessageLinks
from nurture.config.settings import Settings
from nurture.content.context import template_context
from nurture.content.headers import ascii_address, feedback_id, list_id, sender_domain
from nurture.content.rendering import TemplateCatalog
from nurture.engine.runtime import Runtime
from nurture.errors import ProviderError, TemplateError
from nurture.providers.base import Flushes, KnowsFate, OutgoingMessage
from nurture.store import queries as store
from nurture.store import work
from nurture.views import ContactView
from nurture.vocab import ALL_PURPOSES, ConsentAction, MessageKind, MessageState, SkipReason

log = logging.getLogger("nurture.send")


# ---- composing ------------------------------------------------------------------------


def new_public_id(now: datetime) -> str:
    """Our message id: time-ordered (the index grows at its end, as rows are added) and
    80 random bits, so ids cannot be guessed; links carry it signed besides. The dashes
    keep every run of letters and digits at 11 or fewer: 31 hex digits in a row read as a
    Bitcoin address to spam filters about once in seven emails, and 20 still did about
    once in 40,000 (`bc1` and 17 more; the shortest rule needs 14)."""
    noise = os.urandom(10).hex()
    return f"{int(now.timestamp() * 1000):011x}-{noise[:10]}-{noise[10:]}"


def message_row(*, public_id: str, contact_id: int, channel: str, purpose: str,
                template: str, to: str, state: str, now: datetime,
                kind: str = MessageKind.JOURNEY, enrollment: Mapping[str, Any] | None = None,
                step_id: str | None = None, skip_reason: str | None = None, error: str = "",
                locale: str = "", subject: str = "", text: str = "", segments: int = 0,
                lease_until: datetime | None = None) -> dict[str, Any]:
    """A complete message row (every column, so a batch inserts in one statement)."""
    return {
        "public_id": public_id, "contact_id": contact_id,
        "enrollment_id": enrollment["id"] if enrollment else None,
        "seq": enrollment["seq"] if enrollment else None,
        "journey_id": enrollment["journey_id"] if enrollment else None, "step_id": step_id,
        "kind": kind, "channel": channel, "purpose": purpose, "template": template,
        "locale": locale, "state": state, "skip_reason": skip_reason, "error": error,
        "to_address": to, "subject": subject, "body_text": text, "segments": segments,
        "provider": "", "provider_message_id": None, "attempts": 0, "next_attempt_at": None,
        "lease_until": lease_until, "retry_payload": None, "created_at": now, "sent_at": None,
        "updated_at": now,
    }


@dataclasses.dataclass(frozen=True)
class Composed:
    """A rendered message for the provider, with what its row records of it."""

    message: OutgoingMessage
    locale: str
    segments: int = 0


def compose_sms(settings: Settings, catalog: TemplateCatalog, links: Links, *,
                template: str, contact: ContactView, context: Mapping[str, Any],
                purpose: str, public_id: str, now: datetime,
                kind: str = MessageKind.JOURNEY) -> Composed:
    return SmsComposer(settings, catalog, links).compose(
        template=template, contact=contact, context=context, purpose=purpose,
        public_id=public_id, now=now, kind=kind)


class SmsComposer:
    """`compose_sms` for the many messages of a batch: what depends only on the contact's
    country and locale (the STOP mention, the sender) is found once per batch."""

    def __init__(self, settings: Settings, catalog: TemplateCatalog, links: Links) -> None:
        self.settings = settings
        self.catalog = catalog
        self.callback = f"{links.base_url}/webhooks/twilio/status?m="
        self._mentions: dict[tuple[str | None, str], str | None] = {}
        self._senders: dict[str | None, str] = {}

    def compose(self, *, template: str, contact: ContactView, context: Mapping[str, Any],
                purpose: str, public_id: str, now: datetime,
                kind: str = MessageKind.JOURNEY) -> Composed:
        settings, country = self.settings, contact.country
        mention = None
        if _marketing(settings, purpose):
            key = (country, contact.locale)
            if key in self._mentions:
                mention = self._mentions[key]
            else:
                mention = self._mentions[key] = settings.stop_mention_for(*key)
        sender = self._senders.get(country)
        if sender is None:
            sender = self._senders[country] = settings.sender.sms_sender_for(country)
        sms = self.catalog.render_sms(template, contact.locale, context, stop_mention=mention)
        message = OutgoingMessage(
            public_id, "sms", contact.phone or "", sender, text=sms.text,
            status_callback=self.callback + public_id, created_at=now, contact_id=contact.id,
            purpose=purpose, kind=kind)
        return Composed(message, sms.locale, sms.segments)


def compose_email(settings: Settings, catalog: TemplateCatalog, *, template: str,
                  contact: ContactView, context: Mapping[str, Any], purpose: str,
                  public_id: str, now: datetime, to: str | None = None,
                  locale: str | None = None, categories: tuple[str, ...] = (),
                  kind: str = MessageKind.JOURNEY) -> Composed:
    """An email; marketing purposes carry List-Unsubscribe (RFC 2369 / RFC 8058) and
    their List-Id (RFC 2919), every email a Feedback-ID (Gmail's complaint reports)."""
    email = catalog.render_email(template, locale or contact.locale, context)
    links = context.get("links") or {}
    headers = (unsubscribe_headers(settings, links["unsubscribe"], public_id, purpose=purpose,
                                   locale=email.locale)
               if _marketing(settings, purpose) else {})
    journey = (context.get("journey") or {}).get("id") or kind
    headers["Feedback-ID"] = feedback_id(campaign=template, journey=journey, purpose=purpose,
                                         sender=sender_domain(settings))
    message = OutgoingMessage(
        public_id, "email", to if to is not None else contact.email or "",
        settings.sender.email_from, subject=email.subject, text=email.text, html=email.html,
        reply_to=reply_address(settings, public_id) if kind == MessageKind.JOURNEY
        else settings.sender.reply_to,
        headers=headers, categories=categories, created_at=now, contact_id=contact.id,
        purpose=purpose, kind=kind)
    return Composed(message, email.locale)


def alphanumeric(sender: str) -> bool:
    """A sender name (`AcmePlan`) rather than a number (+33…, a short code)."""
    return not sender.removeprefix("+").isdigit()


def refuses_sender(phone: str, sender: str) -> bool:
    """US and Canadian carriers refuse alphanumeric senders (+1 numbers)."""
    return phone.startswith("+1") and alphanumeric(sender)


def _marketing(settings: Settings, purpose: str) -> bool:
    spec = settings.purposes.get(purpose)
    return spec.marketing if spec else True


def unsubscribe_headers(settings: Settings, url: str, public_id: str, *, purpose: str = "",
                        locale: str = "") -> dict[str, str]:
    """RFC 2369 List-Unsubscribe with an HTTPS one-click URI (RFC 8058), and mailto if set;
    the purpose's List-Id (RFC 2919) when it is known."""
    targets = [f"<{url}>"]
    if settings.sender.unsubscribe_mailto:
        mailbox = ascii_address(settings.sender.unsubscribe_mailto)
        targets.append(f"<mailto:{mailbox}?subject=unsubscribe-{public_id}>")
    headers = {"List-Unsubscribe": ", ".join(targets),
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    if purpose:
        headers["List-Id"] = list_id(settings, purpose, locale)
    return headers


def reply_address(settings: Settings, public_id: str) -> str:
    """A per-message reply-to (reply+ID@domain) ties an email reply to its message."""
    if settings.sender.reply_domain:
        return f"reply+{public_id}@{settings.sender.reply_domain}"
    return settings.sender.reply_to


def row_for(composed: Composed, *, template: str, now: datetime, lease_until: datetime,
            enrollment: Mapping[str, Any] | None = None,
            step_id: str | None = None) -> dict[str, Any]:
    """The `sending` row recorded for a composed message before any provider call."""
    m = composed.message
    return message_row(
        public_id=m.public_id, contact_id=m.contact_id or 0, channel=m.channel,
        purpose=m.purpose, template=template, to=m.to, state=MessageState.SENDING, now=now,
        kind=m.kind, enrollment=enrollment, step_id=step_id, locale=composed.locale,
        subject=m.subject, text=m.text, segments=composed.segments, lease_until=lease_until)


def direct_email(conn: Connection, rt: Runtime, now: datetime, *, contact: ContactView,
                 template: str, kind: str, purpose: str, links: Mapping[str, str],
                 journey: Journey | None = None, to: str | None = None,
                 locale: str | None = None,
                 categories: tuple[str, ...] = ()) -> OutgoingMessage:
    """Compose and record a message outside journeys (confirmation, notification) in the
    caller's transaction; hand the result to `deliver` once it committed.
    TemplateError when it cannot be rendered (nothing is recorded)."""
    public_id = new_public_id(now)
    context = template_context(rt.settings, contact, links, public_id, journey)
    composed = compose_email(rt.settings, rt.catalog, template=template, contact=contact,
                             context=context, purpose=purpose, public_id=public_id, now=now,
                             to=to, locale=locale, categories=categories, kind=kind)
    work.insert_messages(conn, [row_for(composed, template=template, now=now,
                                        lease_until=now + rt.lease)])
    return composed.message


# ---- the last look before each provider call -------------------------------------------


class Guard:
    """Consent and the suppression list as of the last look, for one delivery run.

    Before each provider call it reads the ledger version on a connection of its own in
    autocommit (it sees every commit, locks nothing, holds no snapshot); only when the
    version moved (a withdrawal, a grant, a suppression committed meanwhile) are the
    run's contacts read again. Use it as a context manager around the run."""

    def __init__(self, rt: Runtime, messages: Sequence[OutgoingMessage],
                 hashes: Mapping[str, str] | None = None) -> None:
        self.rt = rt
        self.contact_ids = sorted({m.contact_id for m in messages if m.contact_id})
        known = hashes or {}
        self.hash_of = {m.public_id: known.get(m.to) or address_hash(m.to) for m in messages}
        self.hashes = set(self.hash_of.values())
        self.version: int | None = None
        self.state = gates.GateState({}, set())
        self._reader: contextlib.ExitStack | None = None
        self._conn: Connection | None = None
        self._version: Callable[[], int] = lambda: 0

    def __enter__(self) -> Guard:
        self._reader = contextlib.ExitStack()
        self._conn = self._reader.enter_context(self.rt.db.reader())
        self._version = store.ledger_version_reader(self._conn)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.close()

    def _look(self) -> None:
        assert self._conn is not None, "use the Guard as a context manager"
        version = self._version()
        if version == self.version:
            return
        # the version first, then the state: a change committed in between is seen now
        # and looked at again next time, never missed
        self.state = gates.GateState(store.consent_statuses(self._conn, self.contact_ids),
                                     store.suppressed_among(self._conn, self.hashes))
        self.version = version

    def verdict(self, message: OutgoingMessage) -> gates.Skipped | None:
        """None when the message may be handed over now."""
        self._look()
        hashed = self.hash_of.get(message.public_id) or address_hash(message.to)
        if hashed in self.state.suppressed:
            return gates.Skipped(SkipReason.SUPPRESSED, "address on the suppression list")
        if message.kind != MessageKind.JOURNEY:
            return None  # asked for by the person (confirmation), or to our own team
        if message.contact_id is None:
            return gates.Skipped(SkipReason.NO_CONSENT, "a journey message names no contact")
        return gates.consent_verdict(self.state, self.rt.settings, message.contact_id,
                                     message.channel, message.purpose)


# ---- handing over ---------------------------------------------------------------------


def backoff(attempts: int, base_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with ±25% jitter: base, 2×base, 4×base…"""
    jitter = (rng or random).uniform(0.75, 1.25)
    return timedelta(seconds=base_seconds * (2 ** (attempts - 1)) * jitter)


def _result(message: OutgoingMessage, attempts: int, now: datetime,
            **values: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "public_id": message.public_id, "attempts": attempts, "updated_at": now,
        "lease_until": None, "retry_payload": None, "next_attempt_at": None, "sent_at": None,
        "error": "", "provider": "", "provider_message_id": None, "skip_reason": None,
        "_consequence": None,
    }
    result.update(values)
    return result


def attempt(rt: Runtime, message: OutgoingMessage, attempts: int, now: datetime) -> dict[str, Any]:
    """One provider call → the message's new state (never raises for provider errors)."""
    provider = rt.providers[message.channel]
    try:
        sent = provider.send(message)
    except ProviderError as e:
        limits = rt.settings.providers
        result = _result(message, attempts, now, provider=provider.name,
                         error=f"{e.code or 'error'}: {e}")
        if e.code == "timeout":
            # the request went out and no answer came back: it may have been sent, so it
            # is never sent again (at most once); a later webhook may still tell
            result.update(state=MessageState.UNKNOWN)
        elif e.retryable and attempts < limits.max_attempts:
            result.update(state=MessageState.RETRYING, retry_payload=to_payload(message),
                          next_attempt_at=now + backoff(attempts, limits.retry_base_seconds))
        else:
            result.update(state=MessageState.FAILED, _consequence=e.consequence)
        log.warning("%s %s to %s: %s", message.channel, message.public_id, message.to, e)
        return result
    return _result(message, attempts, now, state=MessageState.SENT, provider=provider.name,
                   provider_message_id=sent.provider_message_id, sent_at=now)


@dataclasses.dataclass
class Delivery:
    """What one `deliver` (or `retry_due`) run did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unknown: int = 0
    #: skip reason → messages the last look (or a retry's gates) held back
    skip_reasons: Counter[str] = dataclasses.field(default_factory=Counter)
    #: cause (the provider error's code) → messages failed for good / to be retried
    failures: Counter[str] = dataclasses.field(default_factory=Counter)
    retries: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return sum(self.skip_reasons.values())

    @property
    def handled(self) -> int:
        return self.sent + self.retrying + self.failed + self.unknown + self.skipped


def deliver(rt: Runtime, messages: Sequence[OutgoingMessage], now: datetime,
            attempts: Sequence[int] | None = None,
            hashes: Mapping[str, str] | None = None) -> Delivery:
    """Hand each recorded message to its provider after the guard's last look, recording
    the outcomes a chunk at a time. `hashes`: address → `address_hash`, where the caller
    computed them already."""
    done = Delivery()
    if not messages:
        return done
    results: list[dict[str, Any]] = []
    written = 0
    flushed_at = time.monotonic()
    with Guard(rt, messages, hashes) as guard:
        for index, message in enumerate(messages):
            tries = attempts[index] if attempts else 1
            refused = guard.verdict(message)
            if refused is not None:
                results.append(_result(message, tries - 1, now, state=MessageState.SKIPPED,
                                       skip_reason=refused.reason, error=refused.detail))
            else:
                results.append(attempt(rt, message, tries, now))
            # outcomes are recorded as they come, a chunk at a time: a crash leaves at
            # most a chunk's worth of messages whose outcome is unknown
            if (len(results) - written >= RESULT_CHUNK
                    or time.monotonic() - flushed_at >= RESULT_CHUNK_SECONDS):
                _record(rt, results[written:], messages[written:len(results)], now)
                written, flushed_at = len(results), time.monotonic()
    _record(rt, results[written:], messages[written:], now)
    for result in results:
        state = result["state"]
        done.sent += state == MessageState.SENT
        if state == MessageState.SKIPPED:
            done.skip_reasons[str(result["skip_reason"])] += 1
        done.retrying += state == MessageState.RETRYING
        done.failed += state == MessageState.FAILED
        if state in (MessageState.RETRYING, MessageState.FAILED):
            tally = done.retries if state == MessageState.RETRYING else done.failures
            tally[cause_of(result["error"])] += 1
        done.unknown += state == MessageState.UNKNOWN
    return done


def cause_of(error: str | None) -> str:
    """A recorded error's cause: the code before its colon (`http_503: …`)."""
    code, sep, _ = (error or "").partition(":")
    return code.strip() if sep and code.strip() else "error"


#: how often a retry of a paused journey looks again
PAUSED_RETRY = timedelta(hours=1)

#: outcomes written together, at most (messages, seconds)
RESULT_CHUNK = 100
RESULT_CHUNK_SECONDS = 1.0


def _record(rt: Runtime, results: Sequence[dict[str, Any]],
            messages: Sequence[OutgoingMessage], now: datetime) -> None:
    if not results:
        return
    for provider in {id(p): p for p in rt.providers.values()}.values():
        candidate: object = provider
        if isinstance(candidate, Flushes):
            candidate.flush()  # durable before it is recorded as sent
    with rt.db.begin() as conn:
        work.write_message_results(conn, results)
        for result, message in zip(results, messages, strict=True):
            if result["_consequence"]:
                apply_consequence(conn, message, result["_consequence"], result["error"], now)


def apply_consequence(conn: Connection, message: OutgoingMessage, consequence: str,
                      detail: str, now: datetime) -> None:
    """A permanent failure that says something about the address: suppress or withdraw."""
    if consequence == "suppress":
        store.suppress(conn, address_hash(message.to), "provider_rejected", detail, now)
        return
    row = store.message_by_public_id(conn, message.public_id)
    if consequence == "withdraw" and row is not None:
        # an opted-out number (Twilio 21610) is opted out for every contact holding it
        holders = (store.withdraw_number(conn, phone=message.to, source="provider",
                                         evidence={"provider_error": detail}, now=now)
                   if message.channel == "sms" else [])
        if row["contact_id"] in holders:
            return
        store.append_consent(
            conn, contact_id=row["contact_id"], channel=message.channel, purpose=ALL_PURPOSES,
            action=ConsentAction.WITHDRAWN, legal_basis="consent", source="provider",
            address=message.to, evidence={"provider_error": detail}, now=now)


# ---- after a crash ----------------------------------------------------------------------


def expire_and_reconcile(rt: Runtime, now: datetime) -> int:
    """Messages left `sending` past their lease are `unknown`; where the provider can
    tell (the outbox), their fate is settled at once: handed over → `sent`; never
    handed over → recomposed and retried through the gates. Returns how many remain
    unknown (a webhook naming our id may still settle them)."""
    with rt.db.begin() as conn:
        expired = store.expire_sending(conn, now)
        if not expired:
            return 0
        contacts = store.load_contacts(conn, sorted({r["contact_id"] for r in expired}))
        unknown = 0
        for row in expired:
            values = _fate(rt, row, contacts.get(row["contact_id"]), now)
            if values is None:
                unknown += 1
            else:
                store.update_message(conn, row["id"], values)
    return unknown


def _fate(rt: Runtime, row: Mapping[str, Any], contact: ContactView | None,
          now: datetime) -> dict[str, Any] | None:
    provider: object = rt.providers.get(row["channel"])
    if not isinstance(provider, KnowsFate):
        return None
    if provider.handed_over(row["public_id"], row["channel"]):
        return {"state": MessageState.SENT, "provider": rt.providers[row["channel"]].name,
                "sent_at": now, "updated_at": now,
                "error": "settled after a crash: the provider had it"}
    message = _recompose(rt, row, contact, now)
    if message is None:
        return None
    return {"state": MessageState.RETRYING, "next_attempt_at": now,
            "retry_payload": to_payload(message), "updated_at": now,
            "error": "never handed over before the daemon stopped: sent again"}


def _recompose(rt: Runtime, row: Mapping[str, Any], contact: ContactView | None,
               now: datetime) -> OutgoingMessage | None:
    """The same message again (same id, so the same links) from its row; journey
    messages only (a confirmation's link needs its request: it stays unknown)."""
    if contact is None or row["kind"] != MessageKind.JOURNEY:
        return None
    loaded = rt.journeys.get(row["journey_id"] or "")
    public_id = row["public_id"]
    context = template_context(rt.settings, contact, MessageLinks(rt.links, public_id),
                               public_id, loaded.journey if loaded else None)
    try:
        if row["channel"] == "sms":
            return compose_sms(rt.settings, rt.catalog, rt.links, template=row["template"],
                               contact=contact, context=context, purpose=row["purpose"],
                               public_id=public_id, now=row["created_at"]).message
        return compose_email(rt.settings, rt.catalog, template=row["template"],
                             contact=contact, context=context, purpose=row["purpose"],
                             public_id=public_id, now=row["created_at"],
                             categories=(row["journey_id"] or "", row["step_id"] or "")).message
    except TemplateError:
        return None


# ---- retries --------------------------------------------------------------------------


def retry_due(rt: Runtime, now: datetime) -> Delivery:
    """Messages whose retry time has come: gated again at `now` (consent, suppression,
    window), claimed as `sending` with a lease, then handed over like any other."""
    with rt.db.begin() as conn:
        rows = work.due_retries(conn, now, rt.settings.batch_size)
        if not rows:
            return Delivery()
        ready, held = _regate(conn, rt, rows, now)
        for row, values in held:
            store.update_message(conn, row["id"], values)
        for row in ready:
            store.update_message(conn, row["id"], {"state": MessageState.SENDING,
                                                   "lease_until": now + rt.lease,
                                                   "updated_at": now})
    # who, why and what kind come from the row, whatever an older payload says
    messages = [dataclasses.replace(from_payload(row["retry_payload"]),
                                    contact_id=row["contact_id"], purpose=row["purpose"],
                                    kind=row["kind"]) for row in ready]
    done = deliver(rt, messages, now, attempts=[row["attempts"] + 1 for row in ready])
    done.skip_reasons.update(str(v["skip_reason"]) for _, v in held
                             if v.get("state") == MessageState.SKIPPED)
    return done


def _regate(conn: Connection, rt: Runtime, rows: list[dict[str, Any]], now: datetime
            ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Split due retries into those that may go now and those the gates hold back:
    skipped (consent, suppression) or moved to the window's next opening."""
    contacts = store.load_contacts(conn, sorted({r["contact_id"] for r in rows}))
    hashes = {address_hash(r["to_address"]) for r in rows if r["to_address"]}
    state = gates.GateState(store.consent_statuses(conn, list(contacts)),
                            store.suppressed_among(conn, hashes))
    ready: list[dict[str, Any]] = []
    held: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for row in rows:
        contact = contacts.get(row["contact_id"])
        verdict: gates.GateResult
        if contact is None:
            verdict = gates.Skipped(SkipReason.NO_ADDRESS, "contact no longer exists")
        elif row["journey_id"] in rt.paused:
            # a paused journey sends nothing, its retries included: they wait for resume
            verdict = gates.Deferred(now + PAUSED_RETRY, "journey paused")
        elif row["kind"] != MessageKind.JOURNEY:
            verdict = (gates.Skipped(SkipReason.SUPPRESSED, "address on the suppression list")
                       if address_hash(row["to_address"]) in state.suppressed else None)
        else:
            loaded = rt.journeys.get(row["journey_id"] or "")
            window = loaded.journey.send_window.get(row["channel"]) if loaded else None
            request = gates.SendRequest(contact, row["channel"], row["purpose"], now,
                                        (window,) if window else ())
            verdict = gates.check(request, state, rt.settings, gates.RETRY_GATES)
        if verdict is None:
            ready.append(row)
        elif isinstance(verdict, gates.Deferred):
            held.append((row, {"next_attempt_at": verdict.until, "updated_at": now}))
        else:
            held.append((row, {"state": MessageState.SKIPPED, "skip_reason": verdict.reason,
                               "error": verdict.detail, "retry_payload": None,
                               "next_attempt_at": None, "updated_at": now}))
    return ready, held


def to_payload(message: OutgoingMessage) -> dict[str, Any]:
    data = dataclasses.asdict(message)
    data["created_at"] = message.created_at.isoformat() if message.created_at else None
    data["categories"] = list(message.categories)
    return data


def from_payload(data: dict[str, Any]) -> OutgoingMessage:
    values = dict(data)
    if values.get("created_at"):
        values["created_at"] = datetime.fromisoformat(values["created_at"])
    values["categories"] = tuple(values.get("categories") or ())
    return OutgoingMessage(**values)
