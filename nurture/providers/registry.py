"""Which provider serves which channel: one line per provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from nurture.config.settings import PLACEHOLDER_SECRETS, Settings
from nurture.errors import ConfigError
from nurture.providers.base import Provider
from nurture.providers.outbox import OutboxProvider

Factory = Callable[[Settings, Mapping[str, str]], Provider]


def _outbox(settings: Settings, env: Mapping[str, str]) -> Provider:
    return OutboxProvider(settings.outbox_path)


def _secret(settings: Settings, env: Mapping[str, str], name: str, why: str) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise ConfigError(f"{why}: set the {name} environment variable")
    if settings.mode == "production" and value.lower() in PLACEHOLDER_SECRETS:
        raise ConfigError(f"{why}: {name} is a placeholder, not a real secret")
    return value


def _sendgrid(settings: Settings, env: Mapping[str, str]) -> Provider:
    from nurture.providers.sendgrid import SendGridProvider  # the SDK loads only when used

    return SendGridProvider(_secret(settings, env, "SENDGRID_API_KEY",
                                    "providers.email = 'sendgrid'"), settings)


def _twilio(settings: Settings, env: Mapping[str, str]) -> Provider:
    from nurture.providers.twilio import TwilioProvider  # the SDK loads only when used

    why = "providers.sms = 'twilio'"
    sid = settings.providers.twilio_account_sid or (env.get("TWILIO_ACCOUNT_SID") or "").strip()
    if not sid:
        raise ConfigError(f"{why}: set providers.twilio_account_sid or TWILIO_ACCOUNT_SID")
    return TwilioProvider(sid, _secret(settings, env, "TWILIO_AUTH_TOKEN", why), settings)


FACTORIES: dict[str, Factory] = {
    "outbox": _outbox,
    "sendgrid": _sendgrid,
    "twilio": _twilio,
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
