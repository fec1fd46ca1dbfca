"""What templates see: one context builder for every message (journey step, confirmation,
sales notification, preview)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nurture.authoring.journey import Journey
from nurture.config.settings import Settings
from nurture.views import ContactView

#: contact fields that are text, or missing (no phone, no country): missing reads ""
_TEXT_FIELDS = ("email", "phone", "country")


def template_context(settings: Settings, contact: ContactView, links: Mapping[str, str],
                     public_id: str, journey: Journey | None) -> dict[str, Any]:
    """`journey` is None for messages sent outside journeys (double opt-in confirmations).

    What a contact lacks never prints "None": a missing text field or string attribute
    (absent, or stored as null) is "", another attribute is None (`{% if %}` reads both
    as false)."""
    fields = contact.template_fields()
    for name in _TEXT_FIELDS:
        if fields.get(name) is None:
            fields[name] = ""
    for name, spec in settings.attributes.items():
        value = contact.attributes.get(name)
        fields[name] = "" if value is None and spec.type == "string" else value
    sender = settings.sender
    return {
        "contact": fields,
        "sender": {"company": sender.company, "postal_address": sender.postal_address,
                   "email_from": sender.email_from},
        "links": links,
        "message": {"id": public_id},
        "journey": {"id": journey.id if journey else "", "name": journey.name if journey else ""},
    }
