"""Sales handoffs delivered: a JSON POST to `[handoff] webhook_url`, retried with backoff,
and an optional notification email to `[handoff] notify_email`.

A handoff row is recorded in the transaction that qualified the contact (or ran a
journey's `handoff` step); each tick claims the due ones, posts them outside any
transaction, then records the outcome: `delivered`, `pending` again (retryable: timeout,
connection error, 408/425/429/5xx, until `max_attempts`), `failed` (other answers), or
`recorded` (no webhook configured). A second handoff of a contact within `dedupe_within`
is `skipped`: qualification and the prospect journey's `handoff` step fire together.

Delivery is at least once (a crash after the POST posts again): receivers dedupe on the
`Idempotency-Key` header (or `handoff_id`). `X-Nurture-Signature: sha256=<hex>` is an
HMAC of the body with NURTURE_SECRET_KEY, so receivers can check who sent it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Connection

from nurture.durations import parse_duration
from nurture.engine import send
from nurture.engine.runtime import Runtime
from nurture.engine.send import backoff
from nurture.errors import TemplateError
from nurture.intake import maturity
from nurture.providers.base import OutgoingMessage
from nurture.store import maturity as ms
from nurture.store import queries as store
from nurture.views import ContactView, shown_score
from nurture.vocab import MessageKind

log = logging.getLogger("nurture.handoffs")

NOTIFICATION_TEMPLATE = "sales/handoff-notification"
#: to our own sales team: no marketing consent of the contact is involved
NOTIFICATION_PURPOSE = "transactional"
RETRYABLE_STATUS = frozenset({408, 425, 429})
#: after this many retryable failures in a row, the rest wait for the next tick (a dead
#: endpoint must not hold the tick for batch_size × timeout)
GIVE_UP_AFTER = 3


@dataclass(frozen=True)
class Answer:
    ok: bool
    retryable: bool
    error: str = ""


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST; never raises for network trouble."""
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as e:
        return Answer(False, True, f"timeout: {e}")
    except httpx.HTTPError as e:
        return Answer(False, True, f"{type(e).__name__}: {e}")
    if response.is_success:
        return Answer(True, False)
    code = response.status_code
    detail = f"HTTP {code}: {response.text[:200]}"
    return Answer(False, code >= 500 or code in RETRYABLE_STATUS, detail)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_due(rt: Runtime, now: datetime, client: httpx.Client | None = None) -> int:
    """Post the handoffs due at `now`. Returns how many were delivered."""
    config = rt.settings.handoff
    with rt.db.begin() as conn:
        rows = ms.claim_handoffs(conn, now, rt.settings.batch_size, now + rt.lease)
        work = _prepare(conn, rt, rows, now)
        notices = [notice for row, contact in work
                   if (notice := notify(conn, rt, contact, row, now)) is not None]
    send.deliver(rt, notices, now)
    if not work:
        return 0
    own = client is None
    client = client or httpx.Client(timeout=config.timeout_seconds)
    results: list[tuple[int, dict[str, Any]]] = []
    failing = 0
    try:
        for row, _ in work:
            if failing >= GIVE_UP_AFTER:
                results.append((row["id"], {"next_attempt_at": now}))
                continue
            values = _attempt(rt, client, row, now)
            failing = failing + 1 if values["state"] == "pending" else 0
            results.append((row["id"], values))
    finally:
        if own:
            client.close()
    with rt.db.begin() as conn:
        for handoff_id, values in results:
            ms.update_handoff(conn, handoff_id, values)
    return sum(values.get("state") == "delivered" for _, values in results)


def _prepare(conn: Connection, rt: Runtime, rows: list[dict[str, Any]],
             now: datetime) -> list[tuple[dict[str, Any], ContactView]]:
    """Skip duplicates; give journey handoffs (recorded with their source only) the full
    payload, saved so every retry posts the same body."""
    window = parse_duration(rt.settings.handoff.dedupe_within)
    contacts = store.load_contacts(conn, [r["contact_id"] for r in rows])
    ready = []
    for row in rows:
        earlier = ms.earlier_handoff(conn, row["contact_id"], row["id"],
                                     row["created_at"] - window)
        contact = contacts.get(row["contact_id"])
        if earlier is not None or contact is None:
            why = f"duplicate of handoff {earlier}" if earlier else "contact no longer exists"
            ms.update_handoff(conn, row["id"], {"state": "skipped", "next_attempt_at": None,
                                                "last_error": why})
            continue
        if "contact" not in row["payload"]:
            row["payload"] = full_payload(conn, row, contact)
            ms.update_handoff(conn, row["id"], {"payload": row["payload"]})
        ready.append((row, contact))
    return ready


#: the sales notification goes to the team, not a contact: no unsubscribe or preferences
NOTIFICATION_LINKS: Mapping[str, str] = {"unsubscribe": "", "preferences": ""}


def full_payload(conn: Connection, row: dict[str, Any], contact: ContactView) -> dict[str, Any]:
    events = maturity.events_payload(ms.qualifying_events(conn, [contact.id]).get(contact.id, []))
    return {**row["payload"], "reason": row["reason"], "contact":
            maturity.contact_payload(contact), "score": shown_score(contact.score),
            "fit": shown_score(contact.fit),
            "temperature": contact.temperature, "stage": contact.stage, "events": events}


def _attempt(rt: Runtime, client: httpx.Client, row: dict[str, Any],
             now: datetime) -> dict[str, Any]:
    config = rt.settings.handoff
    attempts = row["attempts"] + 1
    if not config.webhook_url:
        return {"state": "recorded", "attempts": row["attempts"], "next_attempt_at": None,
                "last_error": ""}
    body = json.dumps({"handoff_id": row["id"], "created_at": row["created_at"].isoformat(),
                       **row["payload"]}, default=str, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "nurture-handoff/0.1",
               "Idempotency-Key": f"nurture-handoff-{row['id']}",
               "X-Nurture-Signature": signature(rt.settings.secret_key, body)}
    answer = post(client, config.webhook_url, body, headers)
    if answer.ok:
        return {"state": "delivered", "attempts": attempts, "next_attempt_at": None,
                "delivered_at": now, "last_error": ""}
    if answer.retryable and attempts < config.max_attempts:
        log.warning("handoff %s: attempt %d failed, retrying: %s", row["id"], attempts,
                    answer.error)
        return {"state": "pending", "attempts": attempts, "last_error": answer.error,
                "next_attempt_at": now + backoff(attempts, config.retry_base_seconds)}
    log.error("handoff %s failed after %d attempt(s): %s", row["id"], attempts, answer.error)
    return {"state": "failed", "attempts": attempts, "next_attempt_at": None,
            "last_error": answer.error}


def notify(conn: Connection, rt: Runtime, contact: ContactView, row: dict[str, Any],
           now: datetime) -> OutgoingMessage | None:
    """Record the sales notification once per handoff (a message row, handed over by the
    one send path with the rest); the handoff forgets it needs one in the same
    transaction, so a crash never notifies twice."""
    settings = rt.settings
    if not row["notify"] or not settings.handoff.notify_email:
        return None
    ms.update_handoff(conn, row["id"], {"notify": False})
    loaded = rt.journeys.get(str(row["payload"].get("source", "")))
    try:
        return send.direct_email(
            conn, rt, now, contact=contact, template=NOTIFICATION_TEMPLATE,
            kind=MessageKind.NOTIFICATION, purpose=NOTIFICATION_PURPOSE,
            links=NOTIFICATION_LINKS,
            journey=loaded.journey if loaded else None, to=settings.handoff.notify_email,
            locale=settings.default_locale, categories=("handoff",))
    except TemplateError as e:
        log.error("handoff %s: notification email not rendered: %s", row["id"], e)
        ms.update_handoff(conn, row["id"], {"last_error": f"notification not sent: {e}"})
        return None
