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
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Connection

from nurture import maturity, store
from nurture import maturity_store as ms
from nurture.delivery import backoff
from nurture.durations import parse_duration
from nurture.errors import ProviderError, TemplateError
from nurture.executor import template_context
from nurture.providers.base import OutgoingMessage
from nurture.views import ContactView

if TYPE_CHECKING:
    from nurture.engine import Runtime

log = logging.getLogger("nurture.handoffs")

NOTIFICATION_TEMPLATE = "sales/handoff-notification"
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
    if not work:
        return 0
    own = client is None
    client = client or httpx.Client(timeout=config.timeout_seconds)
    results: list[tuple[int, dict[str, Any]]] = []
    failing = 0
    try:
        for row, contact in work:
            if failing >= GIVE_UP_AFTER:
                results.append((row["id"], {"next_attempt_at": now}))
                continue
            values = _attempt(rt, client, row, now)
            failing = failing + 1 if values["state"] == "pending" else 0
            if row["attempts"] == 0 and row["notify"] and config.notify_email:
                values["last_error"] = (values["last_error"] + " "
                                        + notify(rt, contact, row, now)).strip()
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


def full_payload(conn: Connection, row: dict[str, Any], contact: ContactView) -> dict[str, Any]:
    events = maturity.events_payload(ms.qualifying_events(conn, [contact.id]).get(contact.id, []))
    return {**row["payload"], "reason": row["reason"], "contact":
            maturity.contact_payload(contact), "score": contact.score, "fit": contact.fit,
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


def notify(rt: Runtime, contact: ContactView, row: dict[str, Any], now: datetime) -> str:
    """Email the sales address once per handoff (transactional). Returns an error or ""."""
    settings = rt.settings
    public_id = uuid.uuid4().hex
    loaded = rt.journeys.get(str(row["payload"].get("source", "")))
    links = {"unsubscribe": "", "preferences": ""}
    context = template_context(settings, contact, links, public_id,
                               loaded.journey if loaded else None)
    try:
        email = rt.catalog.render_email(NOTIFICATION_TEMPLATE, settings.default_locale, context)
        rt.providers["email"].send(OutgoingMessage(
            public_id, "email", settings.handoff.notify_email, settings.sender.email_from,
            subject=email.subject, text=email.text, html=email.html,
            categories=("handoff",), created_at=now))
    except (TemplateError, ProviderError) as e:
        log.error("handoff %s: notification email not sent: %s", row["id"], e)
        return f"notification not sent: {e}"
    return ""
