"""An event in our vocabulary, as every source hands it to `intake.ingest`.

Stored once per (source, source_event_id); a replay changes nothing (see `intake.ingest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class IncomingEvent:
    type: str
    source: str
    occurred_at: datetime
    contact_id: int | None = None
    source_event_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    message_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
