"""`nurture validate`: config, journeys and templates checked together, every problem listed."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import inspect

from nurture import store
from nurture.config import Settings, load_settings
from nurture.db import Database
from nurture.errors import ConfigError, Problem, TemplateError
from nurture.journey import SendStep
from nurture.loader import LoadedJourney, load_journeys
from nurture.rendering import TemplateCatalog
from nurture.runtime import catalog_for
from nurture.vocab import LIVE_ENROLLMENT_STATES


def validate_project(config_path: Path) -> list[Problem]:
    try:
        settings = load_settings(config_path)
    except ConfigError as e:
        return [_config_problem(config_path, line) for line in str(e).splitlines()]
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


def _config_problem(path: Path, line: str) -> Problem:
    """Place a config error on the line of its key when we can find it."""
    message = line.split(": ", 1)[1] if line.startswith(f"{path}: ") else line
    match = re.search(r"line (\d+)", message)
    if match:
        return Problem(str(path), int(match.group(1)), message)
    key = message.split(":", 1)[0].split(".")[-1]
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(rf"\s*\[?[\w.]*\b{re.escape(key)}\b", text):
            return Problem(str(path), number, message)
    return Problem(str(path), 1, message)


def check_templates(settings: Settings, catalog: TemplateCatalog,
                    journeys: list[LoadedJourney]) -> list[Problem]:
    """Every template a send step names, in every locale; missing ones at the step's line."""
    problems: list[Problem] = []
    checked: set[tuple[str, str, bool]] = set()
    for loaded in journeys:
        for index, step in enumerate(loaded.journey.steps):
            if not isinstance(step, SendStep):
                continue
            purpose = settings.purposes.get(step.purpose or loaded.journey.purpose)
            marketing = purpose.marketing if purpose else True
            try:
                for locale in settings.locales:
                    catalog.resolve(step.channel, step.template, locale)
            except TemplateError as e:
                problems.append(Problem(str(loaded.path),
                                        loaded.line_of("steps", index, "template"), str(e)))
                continue
            key = (step.channel, step.template, marketing)
            if key in checked:
                continue
            checked.add(key)
            problems.extend(catalog.check(step.channel, step.template, marketing=marketing,
                                          max_sms_segments=settings.sms.max_segments,
                                          stop_mention=settings.sms.stop_mention))
    return problems


def check_waiting_steps(settings: Settings, journeys: list[LoadedJourney]) -> list[Problem]:
    """A removed step with contacts on it needs a `migrate` target (only if a database exists)."""
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    database = Database(url)
    try:
        if not inspect(database.engine).has_table("enrollment"):
            return []
        problems = []
        with database.begin() as conn:
            positions = store.live_positions(conn, [s.value for s in LIVE_ENROLLMENT_STATES])
        by_id = {j.id: j for j in journeys}
        for (journey_id, step_id), count in sorted(positions.items()):
            loaded = by_id.get(journey_id)
            if loaded is None or step_id is None or step_id in loaded.steps:
                continue
            if step_id not in loaded.journey.migrate:
                problems.append(Problem(
                    str(loaded.path), loaded.line_of("steps"),
                    f"{count} contact(s) are at removed step '{step_id}': add "
                    f"'migrate: {{{step_id}: <step id>}}' to say where they continue"))
        return problems
    finally:
        database.dispose()
