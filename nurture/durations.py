"""Durations as marketers write them: `30m`, `12h`, `3d`, `2w`."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@functools.lru_cache(maxsize=256)
def parse_duration(text: str) -> timedelta:
    """`3d` → 3 days. Raises ValueError with the accepted forms. Kept per text: the
    tick parses the same few steps' durations for every contact."""
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. 30m, 12h, 3d, 2w)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def is_duration(text: object) -> bool:
    return isinstance(text, str) and bool(_PATTERN.match(text))
