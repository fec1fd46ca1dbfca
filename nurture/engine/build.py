"""Build the engine's `Runtime` from settings: the one place where the parts meet."""

from __future__ import annotations

from collections.abc import Mapping

from nurture.compliance.tokens import Links
from nurture.config.settings import Settings
from nurture.content.rendering import TemplateCatalog
from nurture.engine import versions
from nurture.engine.runtime import Runtime
from nurture.intake import maturity, reply_effects
from nurture.providers.base import Provider
from nurture.providers.registry import build_providers
from nurture.scoring import checks
from nurture.store import schema
from nurture.store.database import Database


def catalog_for(settings: Settings) -> TemplateCatalog:
    return TemplateCatalog(settings.templates_path, default_locale=settings.default_locale,
                           locales=settings.locales, attribute_names=settings.attributes,
                           sender=settings.sender.company)


def links_for(settings: Settings) -> Links:
    """The signed links every message carries (unsubscribe, preferences, confirm)."""
    return Links(settings.secret_key, settings.public_base_url)


def build_runtime(settings: Settings, *, database: Database | None = None,
                  providers: Mapping[str, Provider] | None = None) -> Runtime:
    """The database, the journeys applied in it (`nurture apply`: the files are not read
    here, so an edit that was not applied never runs), templates and providers."""
    checks.check(settings)  # the domain's checks of config.toml
    database = database or Database(settings.database_url)
    schema.require_current(database)
    runtime = Runtime(
        settings=settings, db=database, journeys={}, catalog=catalog_for(settings),
        providers=providers if providers is not None else build_providers(
            settings, database=database),
        links=links_for(settings),
    )
    with database.reader() as conn:
        versions.load(runtime, conn)
    install_hooks(runtime)
    return runtime


def install_hooks(runtime: Runtime) -> None:
    """The event hooks, in order: a reply's consent and stop-on-reply first, then the
    points of every event."""
    runtime.event_hooks.extend((reply_effects.ReplyHook(), maturity.ScoringHook()))
