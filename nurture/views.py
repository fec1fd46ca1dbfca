"""Plain read-only views of stored rows, handed to the pure domain modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass
class ContactView:
    """A contact as conditions, gates and templates see it (implements ConditionContext)."""

    id: int
    email: str | None
    phone: str | None
    locale: str
    timezone: str
    country: str | None
    stage: str
    temperature: str
    score: float
    fit: float
    role_account: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    #: (event type, window) → count, prefetched for the conditions in play
    event_counts: Mapping[tuple[str, timedelta | None], int] = field(default_factory=dict)
    #: channel → suppression-list hash of its address, computed once per batch
    address_hashes: dict[str, str] = field(default_factory=dict)

    def event_count(self, event_type: str, within: timedelta | None) -> int:
        return self.event_counts.get((event_type, within), 0)

    def address(self, channel: str) -> str | None:
        return self.email if channel == "email" else self.phone

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ContactView:
        return cls(
            id=row["id"], email=row["email"], phone=row["phone"], locale=row["locale"],
            timezone=row["timezone"], country=row["country"], stage=row["stage"],
            temperature=row["temperature"], score=row["score"], fit=row["fit"],
            role_account=row["role_account"], attributes=dict(row["attributes"] or {}),
        )

    def template_fields(self) -> dict[str, Any]:
        return {
            "email": self.email, "phone": self.phone, "locale": self.locale,
            "timezone": self.timezone, "country": self.country, "stage": self.stage,
            "temperature": self.temperature, "score": round(self.score, 1),
        }
