"""Which provider serves which channel: one line per provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from nurture.config.settings import PLACEHOLDER_SECRETS, Settings
from nurture.errors import ConfigError
from nurture.providers.base import Provider
from nurture.providers.outbox import OutboxProvider
from nurture.providers.pacing import LocalPacer, Pacer, SharedPacer
from nurture.providers.smtp import SmtpProvider
from nurture.store.database import Database

#: a pacer for a rate (messages or segments per second)
PacerFor = Callable[[float], Pacer]
Factory = Callable[[Settings, Mapping[str, str], PacerFor], Provider]


def _outbox(settings: Settings, env: Mapping[str, str], pacer_for: PacerFor) -> Provider:
    return OutboxProvider(settings.outbox_path)


def _secret(settings: Settings, env: Mapping[str, str], name: str, why: str) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise ConfigError(f"{why}: set the {name} environment variable")
    if settings.mode == "production" and value.lower() in PLACEHOLDER_SECRETS:
        raise ConfigError(f"{why}: {name} is a placeholder, not a real secret")
    return value


def _sendgrid(settings: Settings, env: Mapping[str, str], pacer_for: PacerFor) -> Provider:
    from nurture.providers.sendgrid import SendGridProvider  # the SDK loads only when used

    return SendGridProvider(_secret(settings, env, "SENDGRID_API_KEY",
                                    "providers.email = 'sendgrid'"), settings)


def _twilio(settings: Settings, env: Mapping[str, str], pacer_for: PacerFor) -> Provider:
    from nurture.providers.twilio import TwilioProvider  # the SDK loads only when used

    why = "providers.sms = 'twilio'"
    sid = settings.providers.twilio_account_sid or (env.get("TWILIO_ACCOUNT_SID") or "").strip()
    if not sid:
        raise ConfigError(f"{why}: set providers.twilio_account_sid or TWILIO_ACCOUNT_SID")
    return TwilioProvider(sid, _secret(settings, env, "TWILIO_AUTH_TOKEN", why), settings,
                          pacer=pacer_for(settings.providers.twilio_mps))


def _smtp(settings: Settings, env: Mapping[str, str], pacer_for: PacerFor) -> Provider:
    """A login needs SMTP_PASSWORD and a password needs a login; in production the
    password never travels in clear to another machine."""
    why, relay = "providers.email = 'smtp'", settings.providers.smtp
    if not relay.username:
        if (env.get("SMTP_PASSWORD") or "").strip():
            raise ConfigError(f"{why}: SMTP_PASSWORD is set but providers.smtp.username "
                              "is empty: set the login the relay expects")
        return SmtpProvider(settings, pacer=pacer_for(relay.mps))
    if (settings.mode == "production" and relay.security == "none"
            and relay.host not in ("localhost", "127.0.0.1", "::1")):
        raise ConfigError(f"{why}: security = 'none' would send the password to "
                          f"{relay.host} in clear: use 'starttls' or 'tls'")
    return SmtpProvider(settings, _secret(settings, env, "SMTP_PASSWORD", why),
                        pacer=pacer_for(relay.mps))


FACTORIES: dict[str, Factory] = {
    "outbox": _outbox,
    "sendgrid": _sendgrid,
    "smtp": _smtp,
    "twilio": _twilio,
}


def build_providers(settings: Settings, env: Mapping[str, str] | None = None,
                    database: Database | None = None) -> dict[str, Provider]:
    """One provider per channel, as config.toml's [providers] says. With the `database`,
    paced providers book their senders' time there, shared by every daemon on it."""
    env = os.environ if env is None else env

    def pacer_for(rate: float) -> Pacer:
        if database is not None and rate > 0:
            return SharedPacer(rate, database)
        return LocalPacer(rate)

    chosen = {"email": settings.providers.email, "sms": settings.providers.sms}
    built: dict[str, Provider] = {}
    for channel, name in chosen.items():
        factory = FACTORIES.get(name)
        if factory is None:
            raise ConfigError(f"providers.{channel}: unknown provider {name!r}")
        built[channel] = factory(settings, env, pacer_for)
    return built
