"""Build the engine's `Runtime` from settings: the one place where the parts meet."""

from __future__ import annotations

from collections.abc import Mapping

from nurture import maturity, reply_effects
from nurture.config import Settings
from nurture.db import Database
from nurture.engine import Runtime
from nurture.errors import ValidationFailed
from nurture.loader import load_journeys
from nurture.providers.base import Provider
from nurture.providers.registry import build_providers
from nurture.rendering import TemplateCatalog
from nurture.tokens import Links


def catalog_for(settings: Settings) -> TemplateCatalog:
    return TemplateCatalog(settings.templates_path, default_locale=settings.default_locale,
                           locales=settings.locales, attribute_names=settings.attributes,
                           sender=settings.sender.company)


def build_runtime(settings: Settings, *, database: Database | None = None,
                  providers: Mapping[str, Provider] | None = None) -> Runtime:
    """Load journeys (refusing invalid ones), templates, providers and the database."""
    journeys, problems = load_journeys(settings.journeys_path, set(settings.purposes))
    if problems:
        raise ValidationFailed(problems)
    database = database or Database(settings.database_url)
    database.create_all()
    runtime = Runtime(
        settings=settings, db=database, journeys={j.id: j for j in journeys},
        catalog=catalog_for(settings),
        providers=providers if providers is not None else build_providers(settings),
        links=Links(settings.secret_key, settings.public_base_url),
    )
    install_hooks(runtime)
    return runtime


def install_hooks(runtime: Runtime) -> None:
    """The event hooks, in order. Each is a plain function of (conn, rt, id, event, now)."""
    # a reply's consent and stop-on-reply first, then the points of every event
    runtime.event_hooks.extend((reply_effects.on_reply, maturity.on_event))
