"""The scoring and reply parts of config.toml checked by their own languages.

Config stays below the domain (it declares, it does not interpret): these checks call
into it, and every entry point runs them before anything runs (`engine.build`,
`nurture validate`).
"""

from __future__ import annotations

from nurture.authoring.conditions import parse
from nurture.config.settings import Settings
from nurture.errors import ConditionError, ConfigError
from nurture.scoring.filters import parse_filter
from nurture.scoring.replies import Intent, rules_from_config
from nurture.scoring.rules import RESERVED_RULES

#: a config key path, as pydantic gives them: ("scoring", "rules", 0, "where", "url")
Loc = tuple[str | int, ...]


def config_problems(settings: Settings) -> list[tuple[Loc, str]]:
    """Every problem, with the key it is about."""
    found: list[tuple[Loc, str]] = []
    for index, rule in enumerate(settings.scoring.rules):
        here: Loc = ("scoring", "rules", index)
        if rule.name in RESERVED_RULES or rule.name.startswith("reply:"):
            found.append(((*here, "name"),
                          f"{rule.name!r} is a name the engine uses for its own changes"))
        for key, spec in rule.where.items():
            try:
                parse_filter(spec)
            except ValueError as e:
                found.append(((*here, "where", key), f"where.{key}: {e}"))
    for index, fit in enumerate(settings.scoring.fit):
        try:
            parse(fit.when)
        except ConditionError as e:
            found.append((("scoring", "fit", index, "when"), str(e)))
    unknown = sorted(set(settings.replies.points) - {i.value for i in Intent})
    if unknown:
        found.append((("replies", "points"), f"points: unknown intent(s) {unknown}"))
    try:
        rules_from_config([rule.model_dump() for rule in settings.replies.rules], defaults=())
    except ConfigError as e:
        found.append((("replies", "rules"), str(e)))
    return found


def check(settings: Settings) -> None:
    """ConfigError listing every problem, one line each."""
    problems = config_problems(settings)
    if problems:
        path = settings.root_path / "config.toml"
        raise ConfigError("\n".join(f"{path}: {'.'.join(map(str, loc))}: {message}"
                                    for loc, message in problems))
