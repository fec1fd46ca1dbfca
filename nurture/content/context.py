"""What templates see: one context builder for every message (journey step, confirmation,
sales notification, preview)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nurture.authoring.journey import Journey
from nurture.config.settings import Settings
from nurture.views import ContactView


def template_context(settings: Settings, contact: ContactView, links: Mapping[str, str],
                     public_id: str, journey: Journey | None) -> dict[str, Any]:
    """`journey` is None for messages sent outside journeys (double opt-in confirmations)."""
    fields = contact.template_fields()
    for name, spec in settings.attributes.items():
        fields[name] = contact.attributes.get(name, "" if spec.type == "string" else None)
    sender = settings.sender
    return {
        "contact": fields,
        "sender": {"company": sender.company, "postal_address": sender.postal_address,
                   "email_from": sender.email_from},
        "links": links,
        "message": {"id": public_id},
        "journey": {"id": journey.id if journey else "", "name": journey.name if journey else ""},
    }
