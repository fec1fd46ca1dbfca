"""What the HTTP edge accepts: the checks every field passes before a service sees it.

Everything stored must be storable everywhere we run: PostgreSQL refuses NUL bytes in
text, NaN and infinities in JSON, ids beyond its INTEGER columns (32 bits); a lone
surrogate cannot be encoded at all. SQLite takes most of these silently, which is worse.
So the edge refuses them, with the path of the field at fault: a `Problem` is that path
and a message, and a request's problems become one 422 (`invalid`).
"""

from __future__ import annotations

import ipaddress
import math
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

import phonenumbers
from fastapi import HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, Field

from nurture.config.settings import Settings

INT64_MAX = 2**63 - 1
#: row ids are INTEGER columns: 32 bits on PostgreSQL (64 on SQLite); none is larger
ROW_ID_MAX = 2**31 - 1
#: JSON properties nest this deep at most (an event's or a webhook item's)
MAX_DEPTH = 8
#: the oldest event time taken (older ones are typing errors or overflows)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

_ISO_3166 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
VN VU WF WS YE YT ZA ZM ZW
"""
#: ISO 3166-1 alpha-2, officially assigned
ISO_COUNTRIES = frozenset(_ISO_3166.split())
#: ISO codes, and the few regions phone numbers carry beyond them (AC, TA, XK): a contact's
#: country may come from its number
COUNTRIES = ISO_COUNTRIES | frozenset(phonenumbers.SUPPORTED_REGIONS)

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL bytes"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone surrogates (not valid Unicode)"
    return None


def _clean(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _sane_time(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (e.g. 2026-03-02T10:15:00+01:00)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("is out of range") from e
    if utc < EARLIEST:
        raise ValueError(f"is before {EARLIEST.date().isoformat()}")
    return utc


#: text that any database stores as given
Text = Annotated[str, AfterValidator(_clean)]
#: a row id (a contact's), as every database stores it
RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]
#: an aware time from 1970 on, in UTC (the future bound depends on the clock: see events)
EventTime = Annotated[datetime, AfterValidator(_sane_time)]


def _contact_ref(value: str) -> str:
    if value.isdigit() and not (value.isascii() and 1 <= int(value) <= ROW_ID_MAX):
        raise ValueError("is not a contact id")
    return value


#: a contact named in a URL path: its email, E.164 phone or id (in range)
ContactRef = Annotated[Text, Path(min_length=1, max_length=320,
                                  description="the contact's email, phone or id",
                                  examples=["camille@example.com"]),
                       AfterValidator(_contact_ref)]
#: a journey or step id in a path or a body
JourneyId = Annotated[Text, Field(min_length=1, max_length=64)]


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as e:
        raise ValueError("is not an IP address") from e


IpAddress = Annotated[str, Field(max_length=64), AfterValidator(_ip)]


def json_problems(value: Any, loc: Loc, depth: int = 0) -> Iterator[Problem]:
    """What no database can store in a JSON column, with where it is."""
    if depth > MAX_DEPTH:
        yield loc, f"nests deeper than {MAX_DEPTH} levels"
    elif isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield loc, problem
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            yield loc, "is beyond 64-bit integers"
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield loc, "must be a finite number (not NaN or infinite)"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problem = text_problem(key) if isinstance(key, str) else "keys must be text"
            if problem:
                yield (*loc, str(key)[:40]), f"key {problem}"
            else:
                yield from json_problems(item, (*loc, key), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from json_problems(item, (*loc, index), depth + 1)
    else:
        yield loc, f"is not a JSON value ({type(value).__name__})"


ATTRIBUTE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def attribute_problems(settings: Settings, attributes: Mapping[str, Any],
                       loc: Loc) -> Iterator[Problem]:
    """Only attributes declared in config.toml, each of its declared type (or null)."""
    for name, value in attributes.items():
        spec = settings.attributes.get(name)
        where = (*loc, name)
        if spec is None:
            declared = ", ".join(sorted(settings.attributes)) or "none"
            yield where, f"is not a declared attribute (declared: {declared})"
        elif value is not None and (
                not isinstance(value, ATTRIBUTE_TYPES[spec.type])
                or (isinstance(value, bool) and spec.type != "bool")):
            yield where, f"must be of type {spec.type}, as declared in config.toml"
        else:
            yield from json_problems(value, where)


def purpose_problems(settings: Settings, purposes: Sequence[str],
                     loc: Loc) -> Iterator[Problem]:
    for index, purpose in enumerate(purposes):
        if purpose not in settings.purposes:
            yield (*loc, index), (f"unknown purpose {purpose[:40]!r} (declared: "
                                  f"{', '.join(sorted(settings.purposes))})")


def country_problem(country: str) -> str | None:
    if country.upper() not in COUNTRIES:
        return f"{country[:10]!r} is not an ISO 3166-1 alpha-2 country code"
    return None


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def invalid(problems: Sequence[Problem], prefix: Loc = ("body",)) -> RequestValidationError:
    """One 422 for all of a request's problems, in FastAPI's shape (no echoed input)."""
    return RequestValidationError([{"type": "value_error", "loc": (*prefix, *loc), "msg": msg}
                                   for loc, msg in problems])


def describe(problems: Sequence[Problem]) -> str:
    """`field.path: message; …` for the per-item errors of a batch."""
    return printable("; ".join(f"{'.'.join(str(p) for p in loc) or 'item'}: {msg}"
                               for loc, msg in problems))


def printable(value: str) -> str:
    """`value` as JSON can carry it: a lone surrogate spelled out (`\\udc80`)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def text_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """A provider's form fields, or 400 naming the first one no database can store."""
    for name, value in fields.items():
        problem = text_problem(name) or text_problem(value)
        if problem:
            raise HTTPException(400, f"field {name[:40]!r}: {problem}")
    return dict(fields)
