"""What every provider takes and gives back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message ready for a provider (no database ids but our public id)."""

    public_id: str
    channel: str
    to: str
    sender: str
    subject: str = ""
    text: str = ""
    html: str = ""
    reply_to: str = ""
    #: extra email headers (List-Unsubscribe, List-Unsubscribe-Post…)
    headers: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    #: URL the provider calls with delivery status (SMS)
    status_callback: str | None = None
    #: when the message was recorded (the email Date header)
    created_at: datetime | None = None
    #: whom it is about and why: what the send path checks just before the call
    contact_id: int | None = None
    purpose: str = ""
    #: journey, confirmation or notification (`vocab.MessageKind`)
    kind: str = "journey"


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str


class Provider(Protocol):
    """Send one message; raise `ProviderError(retryable=...)` when it was not taken."""

    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...


@runtime_checkable
class KnowsFate(Protocol):
    """A provider that can tell, after a crash, whether it was handed a message: the
    outbox (files are written atomically, so presence means handed over)."""

    def handed_over(self, public_id: str, channel: str) -> bool:
        """True when the message reached the provider, False when it certainly did not."""
        ...


@runtime_checkable
class Flushes(Protocol):
    """A provider that batches durability: `flush` makes what `send` took durable, and
    the send path calls it before recording a chunk of messages as sent."""

    def flush(self) -> None: ...


@dataclass(frozen=True)
class ProviderEvent:
    """One webhook item in our vocabulary, the provider's raw payload kept beside it.

    Providers only say what the item means; `nurture.feedback` finds the message and
    contact, stores the event once and applies `message_state` and `consequence`.
    """

    type: str
    source: str
    occurred_at: datetime
    #: the provider's id for this item: replays of it change nothing
    source_event_id: str | None
    channel: str
    #: our message id, when the provider echoes it (custom arg, status callback, reply-to)
    public_id: str | None = None
    provider_message_id: str | None = None
    #: the contact's address the item is about (email, or E.164 phone)
    address: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: what became of the message (delivered, bounced, failed), if the item says
    message_state: str | None = None
    #: "suppress" the address; "withdraw" consent for the whole channel; "unsubscribe"
    #: from the message's purpose (the whole channel when the message is unknown)
    consequence: str | None = None
    #: a short reason kept with the message error and the suppression entry
    detail: str = ""
