"""An in-memory provider: keeps what it is given (benchmarks and tests of the engine)."""

from __future__ import annotations

from nurture.providers.base import OutgoingMessage, SendResult


class MemoryProvider:
    name = "memory"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        return SendResult(self.name, f"mem-{message.public_id}")
