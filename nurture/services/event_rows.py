"""The rows of `nurture event import`: a CSV/XLSX (`import_files`) or JSON lines file,
each row parsed into the event it describes, or the reason it cannot be one. Pure
except for reading the file."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from nurture.errors import NurtureError
from nurture.services.import_files import header_key, read_table
from nurture.vocab import is_valid_event_type


class EventReason(StrEnum):
    """Why an event was not loaded (the `_reason` of FILE.rejected.csv)."""

    #: no email, phone or contact_id
    NO_CONTACT = "no_contact"
    #: the email, phone or id names no contact (events never create contacts)
    UNKNOWN_CONTACT = "unknown_contact"
    #: not a known event type, nor a custom `x.` one
    BAD_TYPE = "bad_type"
    #: no time, not ISO 8601, no time zone, or in the future
    BAD_TIME = "bad_time"
    #: a `properties` value that is not a JSON object
    BAD_PROPERTIES = "bad_properties"


@dataclass(frozen=True)
class EventRejection:
    row: int
    reason: EventReason
    detail: str


@dataclass(frozen=True)
class ParsedEvent:
    row: int
    who: tuple[str, str]  # ("email" | "phone" | "id", value)
    type: str
    occurred_at: datetime
    source_id: str | None
    properties: dict[str, Any]



def read_records(path: Path, encoding: str) -> tuple[list[tuple[int, dict[str, Any]]],
                                                      list[str] | None]:
    """(row or line number, record) for each event, and the CSV header (None for JSON
    lines)."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _read_json_lines(path, encoding), None
    table = read_table(path, encoding)
    keys = [header_key(h) for h in table.header]
    return [(n, dict(zip(keys, values, strict=True))) for n, values in table.rows], table.header


def _read_json_lines(path: Path, encoding: str) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise NurtureError(f"{path}: no such file")
    records = []
    for number, line in enumerate(path.read_text(encoding=encoding).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            record = {"_invalid": f"not JSON: {e.msg} (column {e.colno})"}
        records.append((number, record if isinstance(record, dict)
                        else {"_invalid": "not a JSON object"}))
    return records


def parse_record(number: int, record: Mapping[str, Any],
                 now: datetime) -> ParsedEvent | EventRejection:
    if "_invalid" in record:
        return EventRejection(number, EventReason.BAD_PROPERTIES, str(record["_invalid"]))
    who = _who(record)
    if who is None:
        return EventRejection(number, EventReason.NO_CONTACT, "no email, phone or contact_id")
    kind = str(record.get("type") or "").strip()
    if not is_valid_event_type(kind):
        return EventRejection(number, EventReason.BAD_TYPE, f"unknown event type {kind!r} "
                              "(custom types start with 'x.')")
    at = parse_time(record.get("occurred_at"))
    if isinstance(at, str):
        return EventRejection(number, EventReason.BAD_TIME, at)
    if at > now:
        return EventRejection(number, EventReason.BAD_TIME, f"{at.isoformat()} is in the future")
    properties = _properties(record)
    if isinstance(properties, str):
        return EventRejection(number, EventReason.BAD_PROPERTIES, properties)
    source_id = str(record.get("id") or record.get("event_id") or "").strip() or None
    return ParsedEvent(number, who, kind, at, source_id, properties)


def _who(record: Mapping[str, Any]) -> tuple[str, str] | None:
    for key in ("contact_id", "email", "phone"):
        value = str(record.get(key) or "").strip()
        if value:
            return key, value
    return None


def parse_time(value: Any) -> datetime | str:
    """An aware UTC datetime, or why not."""
    text = str(value if value is not None else "").strip()
    if not text:
        return "no occurred_at"
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return f"occurred_at {text!r} is not ISO 8601 (2026-03-02T09:30:00+01:00)"
    if found.tzinfo is None:
        return f"occurred_at {text!r} has no time zone (add Z or +01:00)"
    return found.astimezone(UTC)


def _properties(record: Mapping[str, Any]) -> dict[str, Any] | str:
    found: dict[str, Any] = {}
    given = record.get("properties")
    if isinstance(given, str) and given.strip():
        try:
            given = json.loads(given)
        except json.JSONDecodeError:
            return f"properties {given[:60]!r} is not a JSON object"
    if isinstance(given, dict):
        found.update(given)
    elif given not in (None, ""):
        return "properties must be a JSON object"
    for key, value in record.items():
        for prefix in ("prop.", "properties."):
            if key.startswith(prefix) and key[len(prefix):] and str(value).strip():
                found[key[len(prefix):]] = _scalar(str(value).strip())
    return found


def _scalar(value: str) -> Any:
    """A CSV cell as the API would carry it: numbers and true/false typed."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def write_rejected(path: Path, header: list[str] | None,
                   records: Sequence[tuple[int, Mapping[str, Any]]],
                   rejected: Sequence[EventRejection]) -> str | None:
    """FILE.rejected.csv (or .jsonl for JSON lines) beside the file; an earlier one is
    removed when nothing was rejected."""
    suffix = ".rejected.csv" if header is not None else ".rejected.jsonl"
    target = path.with_name(path.name + suffix)
    if not rejected:
        target.unlink(missing_ok=True)
        return None
    originals = dict(records)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        if header is None:
            for item in rejected:
                line = {"_row": item.row, "_reason": str(item.reason), "_detail": item.detail,
                        **originals.get(item.row, {})}
                handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        else:
            out = csv.writer(handle)
            out.writerow(["_row", "_reason", "_detail", *header])
            for item in rejected:
                out.writerow([item.row, str(item.reason), item.detail,
                              *originals.get(item.row, {}).values()])
    return str(target)
