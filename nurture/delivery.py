"""Hand recorded messages to providers; classify failures; retry with backoff and jitter."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from nurture import store, work
from nurture.errors import ProviderError
from nurture.hygiene import address_hash
from nurture.providers.base import OutgoingMessage
from nurture.vocab import ALL_PURPOSES, ConsentAction, MessageState

if TYPE_CHECKING:
    from nurture.engine import Runtime

log = logging.getLogger("nurture.delivery")


def backoff(attempts: int, base_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with ±25% jitter: base, 2×base, 4×base…"""
    jitter = (rng or random).uniform(0.75, 1.25)
    return timedelta(seconds=base_seconds * (2 ** (attempts - 1)) * jitter)


def attempt(rt: Runtime, message: OutgoingMessage, attempts: int, now: datetime) -> dict[str, Any]:
    """One provider call → the message's new state (never raises for provider errors)."""
    result: dict[str, Any] = {
        "public_id": message.public_id, "attempts": attempts, "updated_at": now,
        "lease_until": None, "retry_payload": None, "next_attempt_at": None, "sent_at": None,
        "error": "", "provider": "", "provider_message_id": None, "_consequence": None,
    }
    provider = rt.providers[message.channel]
    result["provider"] = provider.name
    try:
        sent = provider.send(message)
    except ProviderError as e:
        limits = rt.settings.providers
        result["error"] = f"{e.code or 'error'}: {e}"
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
    result.update(state=MessageState.SENT, provider_message_id=sent.provider_message_id,
                  sent_at=now)
    return result


def deliver(rt: Runtime, messages: Sequence[OutgoingMessage], now: datetime,
            attempts: Sequence[int] | None = None) -> int:
    """Send each message, then record every outcome in one transaction. Returns sent."""
    if not messages:
        return 0
    results = [attempt(rt, m, attempts[i] if attempts else 1, now)
               for i, m in enumerate(messages)]
    with rt.db.begin() as conn:
        work.write_message_results(conn, results)
        for result, message in zip(results, messages, strict=True):
            if result["_consequence"]:
                apply_consequence(conn, message, result["_consequence"], result["error"], now)
    return sum(r["state"] == MessageState.SENT for r in results)


def apply_consequence(conn: Connection, message: OutgoingMessage, consequence: str,
                      detail: str, now: datetime) -> None:
    """A permanent failure that says something about the address: suppress or withdraw."""
    if consequence == "suppress":
        store.suppress(conn, address_hash(message.to), "provider_rejected", detail, now)
        return
    row = store.message_by_public_id(conn, message.public_id)
    if consequence == "withdraw" and row is not None:
        store.append_consent(
            conn, contact_id=row["contact_id"], channel=message.channel, purpose=ALL_PURPOSES,
            action=ConsentAction.WITHDRAWN, legal_basis="consent", source="provider",
            address=message.to, evidence={"provider_error": detail}, now=now)


def retry_due(rt: Runtime, now: datetime) -> int:
    """Messages whose retry time has come: claimed (as `sending`, with a lease), resent."""
    with rt.db.begin() as conn:
        rows = work.due_retries(conn, now, rt.settings.batch_size)
        for row in rows:
            store.update_message(conn, row["id"], {"state": MessageState.SENDING,
                                                   "lease_until": now + rt.lease,
                                                   "updated_at": now})
    messages = [from_payload(row["retry_payload"]) for row in rows]
    deliver(rt, messages, now, attempts=[row["attempts"] + 1 for row in rows])
    return len(rows)


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
