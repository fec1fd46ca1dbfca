"""config.toml for `nurture validate`: every problem at the line of its key, and settings
made of what the file says right, so that a config error hides no journey error.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from nurture.authoring import condition_checks
from nurture.authoring.conditions import parse
from nurture.authoring.journey import SendStep
from nurture.authoring.loader import LoadedJourney, Loc, explain, line_for, walk_model
from nurture.config.settings import Settings, load_settings
from nurture.engine.send import alphanumeric
from nurture.errors import ConditionError, ConfigError, Problem
from nurture.scoring import checks as scoring_checks

#: countries whose carriers refuse alphanumeric senders (+1 numbers)
NUMERIC_SENDER_COUNTRIES = ("US", "CA")


def read_config(path: Path) -> tuple[Settings | None, list[Problem]]:
    """The settings and the problems of config.toml.

    With problems, the settings are what the file says right, the refused keys taking
    their defaults, so that journeys and templates are still checked against the rest;
    None only when the file cannot be read at all (a TOML syntax error).
    """
    try:
        return load_settings(path), []
    except ConfigError as e:
        return _settings_despite(path), _config_problems(path, e)


def _settings_despite(path: Path) -> Settings | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError:
        return None
    for key in _RESOLVED:
        data.pop(key, None)
    data["root"] = str(path.parent.resolve())
    if os.environ.get("NURTURE_DATABASE_URL"):
        data["database_url"] = os.environ["NURTURE_DATABASE_URL"]
    for _ in range(_MAX_REPAIRS):
        try:
            settings = Settings.model_validate(data)
        except ValidationError as e:
            if not _drop_refused(data, e):
                return None
            continue
        if not settings.database_url:
            database = path.parent.resolve() / "nurture.db"
            settings = settings.model_copy(update={"database_url": f"sqlite:///{database}"})
        return settings
    return None


#: each round drops the keys pydantic refused (a refused table member may then be missing)
_MAX_REPAIRS = 8


def _drop_refused(data: dict[str, Any], error: ValidationError) -> bool:
    """Remove what `error` refuses from `data` (its default applies); False if nothing was."""
    places: set[Loc] = set()
    for item in error.errors():
        loc, _ = walk_model(Settings, tuple(item["loc"]))
        if "[key]" in loc:
            loc = loc[: loc.index("[key]")]
        places.add(loc[:-1] if item["type"] == "missing" else loc)
    dropped = False
    # the last items of a list first, so that the indexes of the others still hold
    for loc in sorted(places, key=lambda loc: [(isinstance(p, str), p) for p in loc],
                      reverse=True):
        dropped |= _drop(data, loc)
    return dropped


def _drop(data: Any, loc: Loc) -> bool:
    for part in loc[:-1]:
        if not _holds(data, part):
            return False
        data = data[part]
    if not loc or not _holds(data, loc[-1]):
        return False
    del data[loc[-1]]
    return True


def _holds(container: Any, part: str | int) -> bool:
    if isinstance(container, list):
        return isinstance(part, int) and 0 <= part < len(container)
    return isinstance(container, dict) and part in container


def check_config(settings: Settings, path: Path, lines: dict[Loc, int],
                 attributes: dict[str, str]) -> list[Problem]:
    """What config.toml says that parses but cannot work: the locales, the scoring and
    reply rules (their own languages) and the fit conditions."""
    problems = [Problem(str(path), line_for(lines, loc), message)
                for loc, message in scoring_checks.config_problems(settings)]
    if settings.default_locale not in settings.locales:
        listed = ", ".join(settings.locales)
        hint = difflib.get_close_matches(settings.default_locale, settings.locales, n=1)
        guess = f"did you mean '{hint[0]}'? " if hint else ""
        problems.append(Problem(str(path), line_for(lines, ("default_locale",)), (
            f"default_locale '{settings.default_locale}' is not one of locales ({listed}): "
            f"every template falls back to it, and contacts without a locale get it "
            f"({guess}set it to one of them, or add it to locales)")))
    for index, rule in enumerate(settings.scoring.fit):
        try:
            condition = parse(rule.when)
        except ConditionError:
            continue  # reported by the scoring checks
        for message in condition_checks.check(condition, attributes):
            problems.append(Problem(str(path), line_for(lines, ("scoring", "fit", index, "when")),
                                    f"scoring.fit '{rule.name}': condition: {message}"))
    return problems


def check_sms_sender(settings: Settings, journeys: list[LoadedJourney], path: Path,
                     lines: dict[Loc, int]) -> list[Problem]:
    """US and Canadian carriers refuse alphanumeric senders: once a journey sends SMS,
    `[sender] sms_from_countries` must give +1 numbers a number to come from."""
    sending = sorted({j.id for j in journeys for step in j.journey.steps
                      if isinstance(step, SendStep) and step.channel == "sms"})
    if not sending:
        return []
    sender = settings.sender
    problems = []
    inherited = [c for c in NUMERIC_SENDER_COUNTRIES if c not in sender.sms_from_countries]
    if inherited and alphanumeric(sender.sms_from):
        wanted = ", ".join(f'{c} = "+1..."' for c in inherited)
        problems.append(Problem(str(path), line_for(lines, ("sender", "sms_from")), (
            f"sender.sms_from '{sender.sms_from}' is a name, and carriers refuse named senders "
            f"for US and Canadian (+1) numbers: SMS of {', '.join(sending)} to them would not "
            f"be sent (no_sender); give them a number: [sender] sms_from_countries = "
            f"{{ {wanted} }}")))
    for country in NUMERIC_SENDER_COUNTRIES:
        own = sender.sms_from_countries.get(country)
        if own is not None and alphanumeric(own):
            problems.append(Problem(
                str(path), line_for(lines, ("sender", "sms_from_countries", country)),
                f"sender.sms_from_countries.{country} '{own}' is a name, and carriers refuse "
                f"named senders for +1 numbers: use a long code, toll-free or short code"))
    return problems


def _config_problems(path: Path, error: ConfigError) -> list[Problem]:
    """Config errors at the line of their key, in words a marketer reads."""
    cause = error.__cause__
    if isinstance(cause, tomllib.TOMLDecodeError):
        match = re.search(r"\(at line (\d+), column \d+\)", str(cause))
        line = int(match.group(1)) if match else 1
        return [Problem(str(path), line, f"TOML syntax error: {cause}")]
    lines = toml_key_lines(path.read_text(encoding="utf-8"))
    if not isinstance(cause, ValidationError):
        message = str(error).removeprefix(f"{path}: ")
        reserved = re.match(r"'(\w+)' cannot be set", message)
        loc = (reserved.group(1),) if reserved else ("mode",) if "SECRET" in message else ()
        return [Problem(str(path), line_for(lines, loc) if loc else 1, message)]
    grouped: dict[Loc, list[ErrorDetails]] = {}
    for item in cause.errors():
        grouped.setdefault(walk_model(Settings, tuple(item["loc"]))[0], []).append(item)
    return [Problem(str(path), line_for(lines, tuple(items[0]["loc"])),
                    explain(Settings, items, hidden=_RESOLVED))
            for items in grouped.values()]


#: Settings fields resolved at load time, never written in config.toml
_RESOLVED = frozenset({"root", "secret_key", "api_key"})
#: a table header (a line of a multi-line array such as `  ["a", "b"],` is not one)
_TOML_TABLE = re.compile(r"^\s*(\[\[?)\s*([\w.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                       r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _toml_path(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", dotted)
    return tuple(part.strip("\"'") for part in parts)


def toml_key_lines(text: str) -> dict[Loc, int]:
    """Every table and key of a TOML file → its line (`[[x]]` tables are numbered from 0)."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    counts: dict[Loc, int] = {}
    closing = ""
    for number, raw in enumerate(text.splitlines(), 1):
        if closing:  # inside a multi-line string
            closing = "" if closing in raw else closing
            continue
        header = _TOML_TABLE.match(raw)
        if header:
            path = _toml_path(header.group(2))
            if header.group(1) == "[[":
                counts[path] = counts.get(path, -1) + 1
                table = (*path, counts[path])
            else:
                table = path
            for size in range(1, len(table) + 1):
                lines.setdefault(table[:size], number)
            continue
        key = _TOML_KEY.match(raw)
        if key:
            lines.setdefault((*table, *_toml_path(key.group(1))), number)
            rest = raw[key.end():]
            closing = next((q for q in ('"""', "'''") if rest.count(q) == 1), "")
    return lines
