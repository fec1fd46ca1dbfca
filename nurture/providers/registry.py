"""Which provider serves which channel: one line per provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from nurture.config import Settings
from nurture.errors import ConfigError
from nurture.providers.base import Provider
from nurture.providers.outbox import OutboxProvider

Factory = Callable[[Settings, Mapping[str, str]], Provider]


def _outbox(settings: Settings, env: Mapping[str, str]) -> Provider:
    return OutboxProvider(settings.outbox_path)


FACTORIES: dict[str, Factory] = {
    "outbox": _outbox,
}


def build_providers(settings: Settings,
                    env: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """One provider per channel, as config.toml's [providers] says."""
    env = os.environ if env is None else env
    chosen = {"email": settings.providers.email, "sms": settings.providers.sms}
    built: dict[str, Provider] = {}
    for channel, name in chosen.items():
        factory = FACTORIES.get(name)
        if factory is None:
            raise ConfigError(f"providers.{channel}: unknown provider {name!r}")
        built[channel] = factory(settings, env)
    return built
