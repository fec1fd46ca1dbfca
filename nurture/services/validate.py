"""`nurture validate`: config, journeys and templates checked together, every problem listed."""

from __future__ import annotations

import difflib
import logging
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from nurture.authoring.journey import SendStep
from nurture.authoring.loader import (
    LoadedJourney,
    Loc,
    explain,
    line_for,
    load_journeys,
    walk_model,
)
from nurture.config.settings import Settings, load_settings
from nurture.content import template_checks
from nurture.content.rendering import TemplateCatalog
from nurture.engine.build import catalog_for
from nurture.errors import ConfigError, Problem, TemplateError
from nurture.store import queries as store
from nurture.store.database import Database
from nurture.vocab import LIVE_ENROLLMENT_STATES

log = logging.getLogger(__name__)


def validate_project(config_path: Path) -> list[Problem]:
    try:
        settings = load_settings(config_path)
    except ConfigError as e:
        return sorted(_config_problems(config_path, e), key=lambda p: p.line or 0)
    problems: list[Problem] = []
    if not settings.journeys_path.is_dir():
        problems.append(Problem(str(config_path), 1,
                                f"journeys folder {settings.journeys_path} does not exist"))
        return problems
    journeys, found = load_journeys(settings.journeys_path, set(settings.purposes))
    problems.extend(found)
    problems.extend(check_templates(settings, catalog_for(settings), journeys))
    problems.extend(check_waiting_steps(settings, journeys))
    return sorted(set(problems), key=lambda p: (p.path, p.line or 0, p.message))


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


def check_templates(settings: Settings, catalog: TemplateCatalog,
                    journeys: list[LoadedJourney]) -> list[Problem]:
    """Every template a send step names, in every locale; missing ones at the step's line."""
    problems: list[Problem] = []
    checked: set[tuple[str, str, bool]] = set()
    named: set[tuple[str, str]] = set()
    for loaded in journeys:
        for index, step in enumerate(loaded.journey.steps):
            if not isinstance(step, SendStep):
                continue
            named.add((step.channel, step.template))
            purpose = settings.purposes.get(step.purpose or loaded.journey.purpose)
            marketing = purpose.marketing if purpose else True
            try:
                for locale in settings.locales:
                    catalog.resolve(step.channel, step.template, locale)
            except TemplateError as e:
                others = [n for n in catalog.names(step.channel) if n != step.template]
                hint = difflib.get_close_matches(step.template, others, n=1)
                problems.append(Problem(str(loaded.path),
                                        loaded.line_of("steps", index, "template"),
                                        str(e) + (f"; did you mean '{hint[0]}'?" if hint else "")))
                continue
            key = (step.channel, step.template, marketing)
            if key in checked:
                continue
            checked.add(key)
            problems.extend(template_checks.check(
                catalog, step.channel, step.template, marketing=marketing,
                max_sms_segments=settings.sms.max_segments,
                stop_mention=settings.sms.stop_mention))
    # the others (consent confirmation, sales notification…) are sent outside journeys:
    # checked as non-marketing, since no purpose says otherwise
    for channel in ("email", "sms"):
        for name in catalog.names(channel):
            if (channel, name) not in named:
                problems.extend(template_checks.check(
                    catalog, channel, name, marketing=False,
                    max_sms_segments=settings.sms.max_segments))
    return problems


def check_waiting_steps(settings: Settings, journeys: list[LoadedJourney]) -> list[Problem]:
    """A removed step with contacts on it needs a `migrate` target (only if a database exists).

    An unreachable database (a CI runner without it) skips the check, with a warning.
    """
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    database = Database(url)
    try:
        if not inspect(database.engine).has_table("enrollment"):
            return []
        with database.begin() as conn:
            positions = store.live_positions(conn, [s.value for s in LIVE_ENROLLMENT_STATES])
    except SQLAlchemyError as e:
        log.warning("database not reachable, contacts on removed steps not checked: %s",
                    str(e).splitlines()[0])
        return []
    finally:
        database.dispose()
    problems = []
    by_id = {j.id: j for j in journeys}
    # step None (past a final wait) sorts first; None and str must not meet in a tuple
    for (journey_id, step_id), count in sorted(positions.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1] or "")):
        loaded = by_id.get(journey_id)
        if loaded is None or step_id is None or step_id in loaded.steps:
            continue
        if step_id not in loaded.journey.migrate:
            problems.append(Problem(
                str(loaded.path), loaded.line_of("steps"),
                f"{count} contact(s) are waiting at step '{step_id}', which was removed: add "
                f"'migrate: {{{step_id}: <step id>}}' to say which step they continue at"))
    return problems
