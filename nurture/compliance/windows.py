"""Send windows in the contact's local time, with public holidays where a rule asks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers
from phonenumbers import timezone as phone_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

from nurture.config.settings import ALWAYS_OPEN, WindowRule

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = 400


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone, or UTC for an unknown name (the contact row is still usable)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@lru_cache(maxsize=256)
def _holiday_calendar(country: str, year: int) -> frozenset[date]:
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(calendar.keys())


def is_holiday(country: str | None, day: date) -> bool:
    return bool(country) and day in _holiday_calendar(str(country).upper(), day.year)


@lru_cache(maxsize=64)
def _hm(text: str) -> time | None:
    hours, minutes = (int(p) for p in text.split(":"))
    return None if hours == 24 else time(hours, minutes)


def _day_allowed(rule: WindowRule, day: date, country: str | None) -> bool:
    if DAY_NAMES[day.weekday()] not in rule.days:
        return False
    return not (rule.skip_holidays and is_holiday(country, day))


def _bounds(rule: WindowRule, day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, _hm(rule.start) or time(0), tz)
    end_time = _hm(rule.end)
    end = (datetime.combine(day + timedelta(days=1), time(0), tz) if end_time is None
           else datetime.combine(day, end_time, tz))
    return start, end


def next_opening_one(rule: WindowRule, tz: ZoneInfo, country: str | None,
                     now: datetime) -> datetime:
    """`now` if the window is open, else the next time it opens (UTC)."""
    local = now.astimezone(tz)
    if _open_at(rule, local, country):
        return now
    for offset in range(_SEARCH_DAYS):
        day = local.date() + timedelta(days=offset)
        if not _day_allowed(rule, day, country):
            continue
        start, end = _bounds(rule, day, tz)
        if local < end:
            return max(start, local).astimezone(UTC)
    raise ValueError(f"send window {rule} never opens")


def _open_at(rule: WindowRule, local: datetime, country: str | None) -> bool:
    """The common case, cheaply: is the window open at this local time?"""
    if not _day_allowed(rule, local.date(), country):
        return False
    start, end = _hm(rule.start) or time(0), _hm(rule.end)
    moment = local.time()
    return start <= moment and (end is None or moment < end)


def next_opening(rules: Sequence[WindowRule], tz_name: str, country: str | None,
                 now: datetime) -> datetime:
    """The first time at or after `now` when every rule's window is open."""
    rules = [rule for rule in rules if rule is not ALWAYS_OPEN]
    if not rules:
        return now
    tz = zone(tz_name)
    local = now.astimezone(tz)
    if all(_open_at(rule, local, country) for rule in rules):  # the common case
        return now
    candidate = now
    for _ in range(64):
        latest = max(next_opening_one(rule, tz, country, candidate) for rule in rules)
        if latest == candidate:
            return candidate
        candidate = latest
    raise ValueError("send windows never overlap")


@lru_cache(maxsize=1024)
def _calling_code_zones(code: str) -> frozenset[str]:
    """Every zone a number of this country calling code may be in (phonenumbers' data)."""
    zones: set[str] = set()
    for prefix, names in TIMEZONE_DATA.items():
        if prefix.startswith(code):
            zones.update(names)
    zones.discard(phone_timezones.UNKNOWN_TIMEZONE)
    return frozenset(zones)


def phone_zones(phone: str) -> tuple[str, ...]:
    """The time zones a number may be in (several for many US or Canadian numbers), ()
    when the number says nothing (unparsable, or a non-geographic number). A calling
    code with one zone in all (+33: Europe/Paris) is answered without parsing."""
    digits = phone.removeprefix("+")
    for length in (1, 2, 3):
        code = digits[:length]
        if int(code or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            zones = _calling_code_zones(code)
            if len(zones) == 1:
                return tuple(zones)
            break
    return _parsed_zones(phone)


@lru_cache(maxsize=65536)
def _parsed_zones(phone: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezones.time_zones_for_number(number)
    return tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)


#: how many times the zones' openings are reconciled before giving up on a common one
_MAX_ROUNDS = 64


def next_opening_everywhere(rules: Sequence[WindowRule], zones: Sequence[str],
                            country: str | None, now: datetime) -> datetime:
    """The first moment from `now` when the window is open in every zone (a contact
    whose zone is only known as its number's possible zones)."""
    at = now
    for _ in range(_MAX_ROUNDS):
        openings = [next_opening(rules, name, country, at) for name in zones]
        latest = max(openings)
        if all(o == latest for o in openings):
            return latest
        at = latest
    return at


def next_local_time(days: Sequence[str], hhmm: str, tz_name: str, now: datetime) -> datetime:
    """The next `hhmm` (strictly after now) on one of `days`, in the zone (for `wait: until`)."""
    tz = zone(tz_name)
    local = now.astimezone(tz)
    at = _hm(hhmm) or time(0)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, at, tz)
        if DAY_NAMES[day.weekday()] in days and candidate > local:
            return candidate.astimezone(UTC)
    raise ValueError(f"no day in {days}")
