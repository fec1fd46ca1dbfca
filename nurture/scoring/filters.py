"""The filters of score rules: what `where = { ... }` in `[[scoring.rules]]` means.

Each key names an event property; every filter of a rule must hold for the rule to apply.

    where = { url = "~/(pricing|tarifs)", seconds = ">=30", form = "demo", vip = true }

    "text"        the property equals this text exactly (case-sensitive)
    42, 2.5       the property equals this number ("42" as text counts as 42)
    true, false   the property is this boolean
    "~regex"      the property, as text, matches the regex anywhere (Python `re.search`;
                  start with (?i) to ignore case)
    ">=30"        numeric comparison: >=, >, <=, < followed by a number; the property
                  must be a number (or a text of digits)
    "!=text"      the property is missing or differs ("!=30" compares numbers)
    "*"           the property is present, whatever its value
    "=text"       exactly "text": escapes a value that starts with ~ > < ! = or is *

A missing property fails every filter but `!=`. Filters are checked when config.toml is
loaded (`parse_filter` raises ValueError), so a bad one is a config error, not a surprise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_COMPARISON = re.compile(r"^(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)$")
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")
_OPS: dict[str, Any] = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__,
                        "<": float.__lt__}


@dataclass(frozen=True)
class Filter:
    """One compiled `where` value: `op` is eq, regex, cmp:<op>, ne or present."""

    op: str
    operand: Any

    def holds(self, present: bool, value: Any) -> bool:
        if self.op == "ne":
            return not present or not _equal(value, self.operand)
        if not present:
            return False
        if self.op == "present":
            return True
        if self.op == "eq":
            return _equal(value, self.operand)
        if self.op == "regex":
            return value is not None and self.operand.search(str(value)) is not None
        number = _number(value)
        return number is not None and bool(_OPS[self.op[4:]](number, self.operand))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return None


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, int | float):
        return _number(value) == float(expected)
    return isinstance(value, str) and value == expected


@lru_cache(maxsize=1024, typed=True)  # typed: True, 1 and 1.0 are different filters
def parse_filter(spec: str | int | float | bool) -> Filter:
    """Compile one `where` value (see the module doc); ValueError says what is wrong."""
    if not isinstance(spec, str):
        return Filter("eq", spec)
    if spec.startswith("~"):
        try:
            return Filter("regex", re.compile(spec[1:]))
        except re.error as e:
            raise ValueError(f"{spec!r}: invalid regex ({e})") from e
    if spec.startswith("!="):
        rest = spec[2:]
        return Filter("ne", float(rest) if _NUMBER.match(rest) else rest)
    if spec[:1] in "<>":
        match = _COMPARISON.match(spec)
        if not match:
            raise ValueError(f"{spec!r}: a comparison is >=, >, <=, < and a number, e.g. '>=30'")
        return Filter(f"cmp:{match.group(1)}", float(match.group(2)))
    if spec == "*":
        return Filter("present", None)
    return Filter("eq", spec[1:] if spec.startswith("=") else spec)


def predicate(key: str, spec: str | int | float | bool
              ) -> Callable[[Mapping[str, Any]], bool]:
    """`where = { key = spec }` as a test of an event's properties, compiled once: the
    usual regex and comparison filters skip `Filter.holds`' dispatch (many events)."""
    found = parse_filter(spec)
    if found.op == "regex":
        search = found.operand.search
        return lambda props: props.get(key) is not None and search(str(props[key])) is not None
    if found.op.startswith("cmp:"):
        compare, bound = _OPS[found.op[4:]], found.operand

        def holds(props: Mapping[str, Any]) -> bool:
            number = _number(props.get(key))
            return number is not None and bool(compare(number, bound))

        return holds
    return lambda props: found.holds(key in props, props.get(key))
