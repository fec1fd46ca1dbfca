"""Plain read-only views of stored rows, handed to the pure domain modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


def shown_score(value: float) -> float:
    """A score or fit as every output shows it (CLI, JSON, templates, pages): one decimal.

    Half rounds away from zero, so 92.55 shows 92.6 wherever it appears."""
    sign = -1.0 if value < 0 else 1.0
    return sign * int(abs(value) * 10 + 0.5 + 1e-9) / 10


def score_text(value: float) -> str:
    """`shown_score` for people: `92.6`, `81.0`."""
    return f"{shown_score(value):.1f}"


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
            "temperature": self.temperature, "score": shown_score(self.score),
        }
