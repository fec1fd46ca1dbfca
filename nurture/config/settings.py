"""Typed settings from config.toml and the environment.

Only entry points (CLI, daemon, web app factory) call `load_settings`; everything
below receives the `Settings` object as a parameter.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nurture.durations import parse_duration
from nurture.errors import ConfigError

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "dev", "secret", "test", "placeholder"}
DEV_SECRET = "dev-insecure-secret-key"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Duration = Annotated[str, Field(pattern=r"^\d+(\.\d+)?[smhdw]$")]


class WindowRule(_Strict):
    """Allowed sending hours, in the contact's local time."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    ]
    start: str = "00:00"
    end: str = "24:00"
    #: skip public holidays of the contact's country (the `holidays` package)
    skip_holidays: bool = False

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and 0 <= int(hours) <= 24
                and 0 <= int(minutes) < 60 and (int(hours) < 24 or int(minutes) == 0)):
            raise ValueError(f"{value!r} is not HH:MM")
        return value


ALWAYS_OPEN = WindowRule()

#: legal presets: France CNIL practice for commercial SMS, US TCPA
LEGAL_PRESETS: dict[str, WindowRule] = {
    "fr_sms": WindowRule(days=["mon", "tue", "wed", "thu", "fri", "sat"], start="08:00",
                         end="20:00", skip_holidays=True),
    "us_tcpa": WindowRule(start="08:00", end="21:00"),
}


class ChannelWindows(_Strict):
    """A default window for a channel plus per-country overrides (ISO 3166 alpha-2)."""

    default: WindowRule = WindowRule()
    countries: dict[str, WindowRule | Literal["fr_sms", "us_tcpa"]] = {}

    def for_country(self, country: str | None) -> WindowRule:
        rule = self.countries.get((country or "").upper())
        if rule is None:
            return self.default
        return LEGAL_PRESETS[rule] if isinstance(rule, str) else rule


class FrequencyCap(_Strict):
    """At most `max` messages per rolling `per`, on one channel or across all (`any`)."""

    channel: Literal["email", "sms", "any"] = "any"
    max: int = Field(ge=1)
    per: Duration

    @property
    def window(self) -> timedelta:
        return parse_duration(self.per)


class Purpose(_Strict):
    description: str = ""
    #: the description per locale, shown on the preference page (`{ fr = "…" }`)
    descriptions: dict[str, str] = {}
    #: marketing purposes need an unsubscribe link and the STOP mention
    marketing: bool = True
    #: lawful bases accepted for this purpose
    bases: list[Literal["consent", "legitimate_interest", "contract"]] = ["consent"]


class Smtp(_Strict):
    """An SMTP relay (Brevo, Mailjet, Amazon SES, OVH, your own Postfix). The password
    comes from the SMTP_PASSWORD environment variable, never from this file."""

    host: str = ""
    #: default: 587 with STARTTLS, 465 with implicit TLS, 25 without TLS
    port: int | None = Field(default=None, ge=1, le=65535)
    #: "starttls" (upgrade a plain connection), "tls" (implicit TLS, SMTPS) or "none"
    #: (a relay on this machine or a trusted network)
    security: Literal["starttls", "tls", "none"] = "starttls"
    #: the login (AUTH); empty: no authentication
    username: str = ""
    #: messages per second at most (0: as fast as the relay takes them)
    mps: float = Field(default=0, ge=0)
    #: the name given in EHLO (default: this machine's fully qualified name)
    helo_name: str = ""
    #: a PEM bundle of the CA that signed the relay's certificate (a private CA);
    #: default: the system's trusted CAs
    ca_file: str = ""

    @property
    def resolved_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class Providers(_Strict):
    email: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    sms: Literal["outbox", "twilio"] = "outbox"
    outbox_dir: str = "outbox"
    #: seconds before a provider call is abandoned (and retried later)
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    sendgrid_sandbox: bool = False
    sendgrid_categories: list[str] = []
    twilio_account_sid: str = ""
    twilio_messaging_service_sid: str = ""
    #: messages per second per sender (US long code: 1)
    twilio_mps: float = 1.0
    twilio_validity_seconds: int = 14400
    smtp: Smtp = Smtp()

    @model_validator(mode="after")
    def _smtp_host(self) -> Providers:
        if self.email == "smtp" and not self.smtp.host.strip():
            raise ValueError("providers.smtp.host is required when email = 'smtp'")
        return self


class Sender(_Strict):
    email_from: str = "Nurture Demo <hello@nurture.example>"
    reply_to: str = ""
    #: domain for per-message reply-to addresses (reply+<token>@domain)
    reply_domain: str = ""
    sms_from: str = "+33700000000"
    company: str = "Nurture Demo SAS"
    postal_address: str = "1 rue de l'Exemple, 75001 Paris, France"
    unsubscribe_mailto: str = ""
    #: the SMS sender per recipient country (ISO code), e.g. a long code for US and CA,
    #: where carriers refuse alphanumeric senders
    sms_from_countries: dict[str, str] = {}
    #: where people get help (a phone number, an address, a web page), named in the
    #: answer to an SMS HELP; default: the reply_to address, else email_from's
    help_contact: str = ""

    def sms_sender_for(self, country: str | None) -> str:
        return self.sms_from_countries.get((country or "").upper(), self.sms_from)

    def help_fields(self) -> dict[str, str]:
        """What `{company}` and `{contact}` stand for in [sms] help_text."""
        contact = (self.help_contact.strip() or parseaddr(self.reply_to)[1]
                   or parseaddr(self.email_from)[1])
        return {"company": self.company.strip(), "contact": contact}


class Sms(_Strict):
    max_segments: int = 3
    #: mention appended to marketing SMS when absent, per locale
    stop_mention: dict[str, str] = {"fr": "STOP au 36111", "en": "Reply STOP to opt out"}
    #: the answer to HELP (INFO, AIDE) per locale; `{company}` and `{contact}` are filled
    #: in from [sender] (company, help_contact)
    help_text: dict[str, str] = {
        "fr": "{company} : pour toute question, contactez {contact}. STOP pour ne plus "
              "recevoir de SMS.",
        "en": "{company}: for help, contact {contact}. Msg&data rates may apply. Reply STOP "
              "to opt out.",
    }


#: the language a phone number's country reads, for the answers carriers require (HELP):
#: North American numbers (+1) get English, whatever the contact's language
COUNTRY_LOCALES: dict[str, str] = {
    **dict.fromkeys(("US", "CA", "PR", "VI", "GU", "AS", "MP", "AG", "AI", "BB", "BM", "BS",
                     "DM", "GD", "JM", "KN", "KY", "LC", "MS", "SX", "TC", "TT", "VC", "VG",
                     "GB", "IE", "AU", "NZ"), "en"),
    **dict.fromkeys(("FR", "MC", "LU", "RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF", "NC",
                     "PF", "WF"), "fr"),
}
#: text of the samples that must never reach a real recipient (production refuses them)
PLACEHOLDER_TEXT = ("Nurture Demo", "nurture.example", "rue de l'Exemple", "00 00 00 00",
                    "+33700000000", "36111")


class ScoreRule(_Strict):
    """An event (with optional property filters) is worth `points`."""

    name: str
    event: str
    points: float
    #: property filters: `{ url = "~/pricing", seconds = ">=30" }` (~ regex, comparisons)
    where: dict[str, str | int | float | bool] = {}
    #: at most `cap` applications per `cap_window`
    cap: int | None = Field(default=None, ge=1)
    cap_window: Duration = "1d"

class FitRule(_Strict):
    """A profile rule: attribute condition worth `points` of fit."""

    name: str
    when: str
    points: float

class Scoring(_Strict):
    rules: list[ScoreRule] = []
    fit: list[FitRule] = []
    #: minimal fit points for a lead to qualify
    fit_threshold: float = 0
    #: engagement score at which a fitting lead becomes a prospect
    qualify_at: float = 100
    #: events that make a prospect at once (fit not required)
    strong_signals: list[str] = ["demo.requested", "quote.requested", "contact.requested"]
    #: events that make a customer
    customer_events: list[str] = ["purchase.completed"]
    #: temperature bands: lower bounds of warm and hot
    warm_at: float = 20
    hot_at: float = 60
    #: points halve every `half_life` (none: no decay)
    half_life: Duration | None = "30d"
    decay_every: Duration = "1d"
    #: a prospect whose score decays under `demote_below` goes back to lead (off if unset)
    demote_prospects_below: float | None = None
    #: a prospect not accepted by sales within this time is recycled
    accept_within: Duration | None = "14d"

    @model_validator(mode="after")
    def _consistent(self) -> Scoring:
        names = [rule.name for rule in self.rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique (caps count hits by name): {twice}")
        if self.hot_at < self.warm_at:
            raise ValueError(f"hot_at ({self.hot_at:g}) is below warm_at ({self.warm_at:g})")
        return self


class ReplyRule(_Strict):
    intent: Literal["opt_out", "opt_in", "help", "positive", "meeting_request", "negative",
                    "neutral"]
    #: whole-message keywords (accent- and case-insensitive)
    keywords: list[str] = []
    #: regular expressions searched anywhere in the text
    patterns: list[str] = []


class Replies(_Strict):
    #: intent → points, overriding the default points of the intents given
    points: dict[str, float] = {}
    #: tried before the default French/English rules (see nurture/replies.py)
    rules: list[ReplyRule] = []

class Handoff(_Strict):
    #: where each handoff is POSTed as JSON (none: handoffs are only recorded)
    webhook_url: str = ""
    #: a sales address notified by email (template sales/handoff-notification)
    notify_email: str = ""
    max_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = 10.0
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: a second handoff of the same contact within this time is skipped as a duplicate
    #: (qualification and a journey's `handoff` step fire together)
    dedupe_within: Duration = "1d"


class AttributeSpec(_Strict):
    type: Literal["string", "int", "float", "bool"] = "string"
    description: str = ""
    sample: str | int | float | bool | None = None


class Settings(_Strict):
    """Everything in config.toml, resolved against its folder and the environment."""

    mode: Literal["dev", "demo", "production"] = "dev"
    database_url: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    #: proxies whose X-Forwarded-For/-Proto/-Host headers are believed: IP addresses or
    #: networks (e.g. ["127.0.0.1", "10.0.0.0/8"]); none by default
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    default_locale: str = "en"
    locales: list[str] = ["en", "fr"]
    default_timezone: str = "Europe/Paris"
    default_region: str = "FR"
    journeys_dir: str = "journeys"
    templates_dir: str = "templates"
    tick_seconds: float = 30
    batch_size: int = Field(default=500, ge=1)
    #: how long a daemon holds claimed work (and a message stays `sending`) before
    #: another daemon — or a restart — may take it over
    lease_seconds: float = Field(default=300, gt=0)
    #: allow role accounts (info@, contact@…) in marketing
    allow_role_accounts: bool = False
    #: check that email domains have MX records at import (needs DNS)
    check_mx: bool = False
    providers: Providers = Providers()
    sender: Sender = Sender()
    sms: Sms = Sms()
    purposes: dict[str, Purpose] = {
        "newsletter": Purpose(description="Newsletter and educational content"),
        "marketing": Purpose(description="Offers, webinars, case studies"),
        "sales": Purpose(description="Direct sales outreach",
                         bases=["consent", "legitimate_interest"]),
        "transactional": Purpose(description="Confirmations", marketing=False,
                                 bases=["consent", "contract", "legitimate_interest"]),
    }
    attributes: dict[str, AttributeSpec] = {}
    send_windows: dict[Literal["email", "sms"], ChannelWindows] = {}
    frequency_caps: list[FrequencyCap] = []
    scoring: Scoring = Scoring()
    replies: Replies = Replies()
    handoff: Handoff = Handoff()

    # Resolved at load time (not read from the file).
    root: str = "."
    secret_key: str = DEV_SECRET
    api_key: str = ""

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    @property
    def journeys_path(self) -> Path:
        return self.root_path / self.journeys_dir

    @property
    def templates_path(self) -> Path:
        return self.root_path / self.templates_dir

    @property
    def outbox_path(self) -> Path:
        return self.root_path / self.providers.outbox_dir

    @model_validator(mode="after")
    def _help_from_sender(self) -> Settings:
        """HELP answers name this project's company and contact, never a sample's."""
        fields = self.sender.help_fields()
        texts = {locale: text.replace("{company}", fields["company"])
                 .replace("{contact}", fields["contact"])
                 for locale, text in self.sms.help_text.items()}
        if texts == self.sms.help_text:
            return self
        return self.model_copy(update={"sms": self.sms.model_copy(update={"help_text": texts})})

    def help_text_for(self, country: str | None, locale: str | None) -> str | None:
        """The HELP answer for a number of `country` (ISO 3166): in that country's
        language when there is a text for it, else the contact's, else the default."""
        texts = self.sms.help_text
        wanted = [COUNTRY_LOCALES.get((country or "").upper()), locale,
                  (locale or "").replace("_", "-").split("-")[0], self.default_locale]
        chosen = next((texts[w] for w in wanted if w and texts.get(w)), None)
        return chosen or next(iter(texts.values()), None)

    def stop_mention_for(self, country: str | None, locale: str | None) -> str | None:
        """The STOP mention in the contact's language, except where the carriers read
        English keywords (a +1 number gets the English one whatever its language)."""
        texts = self.sms.stop_mention
        english = COUNTRY_LOCALES.get((country or "").upper()) == "en"
        wanted = ["en" if english else None, locale, self.default_locale]
        return next((texts[w] for w in wanted if w and texts.get(w)), None)

    def window(self, channel: str, country: str | None) -> WindowRule:
        windows = self.send_windows.get(channel)  # type: ignore[call-overload]
        return windows.for_country(country) if windows else ALWAYS_OPEN


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--config`, else `NURTURE_CONFIG`, else ./config.toml."""
    raw = explicit or os.environ.get("NURTURE_CONFIG") or "config.toml"
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (use --config or NURTURE_CONFIG)")
    return path


def load_settings(path: Path, env: dict[str, str] | None = None) -> Settings:
    """Parse config.toml at `path`, then apply the environment (secrets, base URL)."""
    env = dict(os.environ if env is None else env)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    for reserved in ("root", "secret_key", "api_key"):
        if reserved in data:
            raise ConfigError(f"{path}: '{reserved}' cannot be set in config.toml")
    data["root"] = str(path.parent.resolve())
    data["secret_key"] = env.get("NURTURE_SECRET_KEY", DEV_SECRET)
    data["api_key"] = env.get("NURTURE_API_KEY", "")
    if env.get("NURTURE_PUBLIC_BASE_URL"):
        data["public_base_url"] = env["NURTURE_PUBLIC_BASE_URL"]
    if env.get("NURTURE_DATABASE_URL"):
        data["database_url"] = env["NURTURE_DATABASE_URL"]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_config_errors(path, e)) from e
    if not settings.database_url:
        db = Path(settings.root) / "nurture.db"
        settings = settings.model_copy(update={"database_url": f"sqlite:///{db}"})
    check_secrets(settings, path)
    return settings


def format_config_errors(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{path}: {where}: {message}")
    return "\n".join(lines)


def check_secrets(settings: Settings, path: Path) -> None:
    """Placeholder secrets are refused outside dev/demo mode."""
    if settings.mode != "production":
        return
    if settings.secret_key == DEV_SECRET or settings.secret_key.lower() in PLACEHOLDER_SECRETS:
        raise ConfigError(f"{path}: NURTURE_SECRET_KEY must be set to a real secret in production")
    if len(settings.secret_key) < 16:
        raise ConfigError(f"{path}: NURTURE_SECRET_KEY is too short (16 characters at least)")
    if not settings.public_base_url.startswith("https://"):
        # RFC 8058: the one-click List-Unsubscribe URI must be HTTPS
        raise ConfigError(f"{path}: public_base_url must be https:// in production "
                          f"(one-click unsubscribe links), not {settings.public_base_url!r}")
    problem = placeholder_problem(settings)
    if problem:
        raise ConfigError(f"{path}: {problem} (production mode sends it to real people)")


def placeholder_problem(settings: Settings) -> str | None:
    """What of the sample sender, company, address, HELP text or STOP number is still
    there: every message names the advertiser and how to reach it (L34-5 CPCE, CAN-SPAM,
    the carriers' HELP rules). SMS settings count when SMS really go out."""
    sender, sms = settings.sender, settings.sms
    values = [("[sender] email_from", sender.email_from), ("[sender] company", sender.company),
              ("[sender] postal_address", sender.postal_address),
              *((f"[sms] help_text.{locale}", text) for locale, text in sms.help_text.items())]
    if settings.providers.sms != "outbox":
        if not settings.providers.twilio_messaging_service_sid:
            values.append(("[sender] sms_from", sender.sms_from))
        values += [(f"[sender] sms_from_countries.{c}", v)
                   for c, v in sender.sms_from_countries.items()]
        values += [(f"[sms] stop_mention.{locale}", text)
                   for locale, text in sms.stop_mention.items()]
    for key, value in values:
        if not value.strip():
            return f"{key} is empty"
        sample = next((marker for marker in PLACEHOLDER_TEXT if marker in value), None)
        if sample:
            return f"{key} is still the sample ({value!r}): set your own"
    return None
