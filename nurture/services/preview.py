"""`nurture preview`: a template rendered as one contact would receive it.

Nothing here is a stand-in for the send path: the context comes from `template_context`,
the links from the project's `Links` (its secret key and `public_base_url`), the message
from `send.compose_email` / `send.compose_sms` (sender, STOP mention, SMS sender id as
really sent). Only the contact may be a sample, and the preview says so.

The contact is a real one from the database, a JSON file that is the whole contact
(what it leaves out stays out, as for a contact stored without it), or a labelled sample.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from nurture.compliance.tokens import MessageLinks
from nurture.config.settings import Settings
from nurture.content.context import template_context
from nurture.content.rendering import (
    CONTACT_CORE_FIELDS,
    TemplateCatalog,
    non_gsm_characters,
    sms_segments,
)
from nurture.engine import send
from nurture.engine.build import links_for
from nurture.errors import NurtureError
from nurture.intake.handoffs import NOTIFICATION_LINKS, NOTIFICATION_PURPOSE, NOTIFICATION_TEMPLATE
from nurture.services import contacts
from nurture.services.signup import CONFIRM_PURPOSE, CONFIRM_TEMPLATE, confirmation_links
from nurture.store import schema
from nurture.store.database import Database
from nurture.views import ContactView
from nurture.vocab import MessageKind

CHANNELS = ("email", "sms")
Source = Literal["database", "file", "sample"]
#: what a contact without these fields gets (the `contact` table's defaults)
_STORED_DEFAULTS: Mapping[str, Any] = {"stage": "lead", "temperature": "cold", "score": 0.0}
_TEXT_FIELDS = ("email", "phone", "locale", "timezone", "country", "stage", "temperature")


@dataclass(frozen=True)
class PreviewContact:
    """Whom the preview is for, and where that contact came from."""

    view: ContactView
    source: Source

    @property
    def label(self) -> str:
        """How the output names it: its email (else phone), or `sample`."""
        if self.source == "sample":
            return "sample"
        return self.view.email or self.view.phone or ""


@dataclass(frozen=True)
class Preview:
    channel: str
    template: str
    locale: str
    purpose: str
    contact: PreviewContact
    sender: str
    to: str
    text: str
    subject: str = ""
    html: str = ""
    reply_to: str = ""
    segments: int = 0
    encoding: str = ""
    #: the characters that force an SMS into UCS-2 (none in GSM-7)
    non_gsm: str = ""
    #: other channels the template exists in
    also: tuple[str, ...] = ()


# ---- the contact -----------------------------------------------------------------------


def database_contact(settings: Settings, who: str) -> PreviewContact:
    """A stored contact, by email, E.164 phone or id (ContactError if unknown)."""
    database = Database(settings.database_url)
    try:
        schema.require_current(database)
        with database.reader() as conn:
            row = contacts.find_contact(conn, who)
    finally:
        database.dispose()
    return PreviewContact(ContactView.from_row(row._mapping), "database")


def file_contact(settings: Settings, path: Path) -> PreviewContact:
    """The contact in a JSON file: an object of contact fields and config attributes
    (optionally under `attributes`). `null` is the same as leaving the field out."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise NurtureError(f"{path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise NurtureError(f"{path}: not JSON: {e}") from e
    if not isinstance(data, dict):
        raise NurtureError(f"{path}: a contact is a JSON object, not {type(data).__name__}")
    return PreviewContact(contact_from_mapping(settings, data, str(path)), "file")


def contact_from_mapping(settings: Settings, data: Mapping[str, Any],
                         where: str = "contact") -> ContactView:
    """A contact from plain data, with what a stored contact has when a field is absent."""
    fields = {k: v for k, v in data.items() if k != "attributes" and v is not None}
    nested = data.get("attributes") or {}
    if not isinstance(nested, dict):
        raise NurtureError(f"{where}: 'attributes' must be an object")
    attributes = {k: v for k, v in {**nested, **{k: v for k, v in fields.items()
                                                 if k not in CONTACT_CORE_FIELDS}}.items()
                  if v is not None}
    unknown = sorted(set(attributes) - set(settings.attributes))
    if unknown:
        known = ", ".join([*CONTACT_CORE_FIELDS, *settings.attributes])
        raise NurtureError(f"{where}: unknown field(s) {', '.join(unknown)} "
                           f"(a contact has: {known})")
    for name in _TEXT_FIELDS:
        if name in fields and not isinstance(fields[name], str):
            raise NurtureError(f"{where}: '{name}' must be a string")
    score = fields.get("score", _STORED_DEFAULTS["score"])
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise NurtureError(f"{where}: 'score' must be a number")
    return ContactView(
        id=0, email=fields.get("email"), phone=fields.get("phone"),
        locale=fields.get("locale") or settings.default_locale,
        timezone=fields.get("timezone") or settings.default_timezone,
        country=fields.get("country"), stage=fields.get("stage", _STORED_DEFAULTS["stage"]),
        temperature=fields.get("temperature", _STORED_DEFAULTS["temperature"]),
        score=float(score), fit=0.0, attributes=attributes)


def sample_contact(settings: Settings, catalog: TemplateCatalog, locale: str) -> PreviewContact:
    """The sample contact validation renders with, each attribute's `sample` from
    config.toml taking precedence."""
    sample = dict(catalog.sample_context(locale)["contact"])
    for name, spec in settings.attributes.items():
        if spec.sample is not None:
            sample[name] = spec.sample
    sample["timezone"] = settings.default_timezone
    return PreviewContact(contact_from_mapping(settings, sample, "sample contact"), "sample")


# ---- the channel -----------------------------------------------------------------------


def channel_for(catalog: TemplateCatalog, template: str,
                asked: str | None) -> tuple[str, str, tuple[str, ...]]:
    """(channel, template name, the other channels it exists in), from `--channel` or the
    folder its files are in (`templates/sms/…`); a leading `email/` or `sms/` names it."""
    if asked is not None and asked not in CHANNELS:
        raise NurtureError(f"--channel must be email or sms, not {asked!r}")
    found = [c for c in CHANNELS if template in catalog.names(c)]
    head, _, rest = template.partition("/")
    if not found and head in CHANNELS and rest:
        if asked not in (None, head):
            raise NurtureError(f"{template!r} names the {head} folder, not {asked}")
        return head, rest, ()
    if asked is None:
        chosen = found[0] if found else "email"
    elif found and asked not in found:
        there = " and ".join(found)
        raise NurtureError(f"no {asked} template {template!r}: it exists for {there} only "
                           f"(use --channel {found[0]})")
    else:
        chosen = asked
    return chosen, template, tuple(c for c in found if c != chosen)


# ---- rendering -------------------------------------------------------------------------


#: the emails sent outside journeys: template → (kind, purpose)
_DIRECT: Mapping[str, tuple[str, str]] = {
    CONFIRM_TEMPLATE: (MessageKind.CONFIRMATION, CONFIRM_PURPOSE),
    NOTIFICATION_TEMPLATE: (MessageKind.NOTIFICATION, NOTIFICATION_PURPOSE),
}


def _purpose_for(settings: Settings, template: str, purpose: str | None) -> str:
    if purpose is not None:
        if purpose not in settings.purposes:
            raise NurtureError(f"unknown purpose {purpose!r} (config has: "
                               f"{', '.join(settings.purposes)})")
        return purpose
    if template in _DIRECT:
        return _DIRECT[template][1]
    marketing = [name for name, spec in settings.purposes.items() if spec.marketing]
    return "marketing" if "marketing" in marketing else (marketing or [""])[0]


def _links(settings: Settings, template: str, public_id: str) -> Mapping[str, str]:
    """The links the send path gives this template: a journey message's own, or those of
    the confirmation and sales notification emails."""
    links = links_for(settings)
    if template == CONFIRM_TEMPLATE:
        return confirmation_links(links, 0, "preview")
    if template == NOTIFICATION_TEMPLATE:
        return NOTIFICATION_LINKS
    return MessageLinks(links, public_id)


def render(settings: Settings, catalog: TemplateCatalog, template: str, now: datetime, *,
           contact: PreviewContact, channel: str | None = None, locale: str | None = None,
           purpose: str | None = None) -> Preview:
    """Render `template` for `contact` (in `locale`, else the contact's) as it would be sent."""
    chosen, name, also = channel_for(catalog, template, channel)
    view = dataclasses.replace(contact.view, locale=locale) if locale else contact.view
    shown = PreviewContact(view, contact.source)
    used = _purpose_for(settings, name, purpose)
    public_id = send.new_public_id(now)
    context = template_context(settings, view, _links(settings, name, public_id), public_id,
                               None)
    if chosen == "sms":
        links = links_for(settings)
        composed = send.compose_sms(settings, catalog, links, template=name, contact=view,
                                    context=context, purpose=used, public_id=public_id,
                                    now=now)
        message = composed.message
        _, encoding = sms_segments(message.text)
        return Preview("sms", name, composed.locale, used, shown, message.sender, message.to,
                       message.text, segments=composed.segments, encoding=encoding,
                       non_gsm=non_gsm_characters(message.text), also=also)
    kind: str = _DIRECT[name][0] if name in _DIRECT else MessageKind.JOURNEY
    to, language = None, None
    if name == NOTIFICATION_TEMPLATE:  # to sales, in the project's language
        to, language = settings.handoff.notify_email or None, locale or settings.default_locale
    composed = send.compose_email(settings, catalog, template=name, contact=view,
                                  context=context, purpose=used, public_id=public_id, now=now,
                                  to=to, locale=language, kind=kind)
    message = composed.message
    return Preview("email", name, composed.locale, used, shown, message.sender, message.to,
                   message.text, subject=message.subject, html=message.html,
                   reply_to=message.reply_to, also=also)
