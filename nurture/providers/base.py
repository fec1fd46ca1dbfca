"""What every provider takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


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


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str


class Provider(Protocol):
    """Send one message; raise `ProviderError(retryable=...)` when it was not taken."""

    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...
