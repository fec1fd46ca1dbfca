"""`nurture validate`: config, journeys and templates checked together, every problem listed.

Nothing hides anything else: a config.toml with errors is still used for what it says
right (the refused keys take their defaults), a journey step the schema refuses leaves
the rest of its file checked. Problems are errors (exit 1) or warnings (printed, exit 0).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from nurture.authoring.journey import SendStep
from nurture.authoring.loader import LoadedJourney, known_attributes, load_journeys
from nurture.config.settings import Settings
from nurture.content import template_checks
from nurture.content.rendering import TemplateCatalog
from nurture.engine.build import catalog_for
from nurture.errors import Problem, TemplateError
from nurture.services.config_validation import (
    check_config,
    check_sms_sender,
    read_config,
    toml_key_lines,
)
from nurture.store import queries as store
from nurture.store.database import Database
from nurture.vocab import LIVE_ENROLLMENT_STATES

__all__ = ["check_templates", "check_waiting_steps", "toml_key_lines", "validate_project"]

log = logging.getLogger(__name__)


def validate_project(config_path: Path) -> list[Problem]:
    """Every problem of the project, errors and warnings, sorted by file and line."""
    settings, problems = read_config(config_path)
    if settings is None:
        return _sorted(problems + _journeys_without_config(config_path))
    declared = {name: spec.type for name, spec in settings.attributes.items()}
    journeys: list[LoadedJourney] = []
    if settings.journeys_path.is_dir():
        journeys, found = load_journeys(settings.journeys_path, set(settings.purposes),
                                        attributes=declared, partial=True)
        problems.extend(found)
    else:
        problems.append(Problem(str(config_path), 1,
                                f"journeys folder {settings.journeys_path} does not exist"))
    lines = toml_key_lines(config_path.read_text(encoding="utf-8"))
    problems.extend(check_config(settings, config_path, lines,
                                 known_attributes(declared, journeys)))
    problems.extend(check_sms_sender(settings, journeys, config_path, lines))
    problems.extend(check_templates(settings, catalog_for(settings), journeys))
    problems.extend(check_waiting_steps(settings, journeys))
    return _sorted(problems)


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(set(problems), key=lambda p: (p.path, p.line or 0, p.message))


def _journeys_without_config(config_path: Path) -> list[Problem]:
    """A config.toml that cannot be read: its journeys are checked on their own."""
    folder = config_path.parent / "journeys"
    if not folder.is_dir():
        return []
    _, problems = load_journeys(folder, None)
    return [*problems, Problem(str(config_path), 1, (
        "until config.toml can be read, journeys/ is checked without it: their purposes, "
        "attributes and templates are not checked"), Problem.WARNING)]


def check_templates(settings: Settings, catalog: TemplateCatalog,
                    journeys: list[LoadedJourney]) -> list[Problem]:
    """Every template a send step names (each variant's too), in every locale; missing
    ones at the line that names them.

    A locale that falls back to another language's file is a warning there (an error in
    production mode): "English contacts silently get French".
    """
    problems: list[Problem] = []
    checked: set[tuple[str, str, bool]] = set()
    named: set[tuple[str, str]] = set()
    severity = Problem.ERROR if settings.mode == "production" else Problem.WARNING
    for loaded in journeys:
        for index, step in enumerate(loaded.journey.steps):
            if not isinstance(step, SendStep):
                continue
            purpose = settings.purposes.get(step.purpose or loaded.journey.purpose)
            marketing = purpose.marketing if purpose else True
            for loc, template in _step_templates(index, step):
                line = loaded.line_of(*loc)
                first = (step.channel, template) not in named
                named.add((step.channel, template))
                try:
                    for locale in settings.locales:
                        catalog.resolve(step.channel, template, locale)
                except TemplateError as e:
                    others = [n for n in catalog.names(step.channel) if n != template]
                    hint = difflib.get_close_matches(template, others, n=1)
                    problems.append(Problem(str(loaded.path), line, str(e) + (
                        f"; did you mean '{hint[0]}'?" if hint else "")))
                    continue
                if first:
                    problems += [Problem(str(loaded.path), line, message, severity)
                                 for message in template_checks.missing_translations(
                                     catalog, step.channel, template)]
                key = (step.channel, template, marketing)
                if key in checked:
                    continue
                checked.add(key)
                problems.extend(template_checks.check(
                    catalog, step.channel, template, marketing=marketing,
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
                problems += [Problem(_default_file(catalog, channel, name), None, message,
                                     severity)
                             for message in template_checks.missing_translations(
                                 catalog, channel, name)]
    return problems


def _step_templates(index: int, step: SendStep) -> list[tuple[tuple[str | int, ...], str]]:
    """Each template of a send step with the key that names it: every variant's too."""
    if step.variants:
        return [(("steps", index, "variants", i, "template"), variant.template)
                for i, variant in enumerate(step.variants)]
    return [(("steps", index, "template"), step.template or "")]


def _default_file(catalog: TemplateCatalog, channel: str, name: str) -> str:
    """The file a template is known by when no journey step names it: its first part."""
    try:
        files = catalog.resolve_files(channel, name, catalog.default_locale).files
    except TemplateError:
        return catalog.path(f"{channel}/{name}")
    return catalog.path(files.get("subject") or files["txt"])


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
