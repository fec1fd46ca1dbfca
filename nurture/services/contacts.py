"""Contact operations shared by the CLI, the HTTP API and import: add, find, consent.

Each function takes an open connection (the caller's transaction) and `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance.hygiene import check_email, check_phone
from nurture.compliance.windows import zone
from nurture.config.settings import Settings
from nurture.errors import ContactError
from nurture.intake import ledger
from nurture.store import journeys
from nurture.store import queries as store
from nurture.vocab import WhatChanged


def normalize_email(raw: str, settings: Settings) -> tuple[str, bool]:
    """The normalized address and whether it is a role account; ContactError if refused."""
    checked = check_email(raw, check_mx=settings.check_mx)
    if checked.normalized is None:
        raise ContactError(f"email {raw!r} refused ({checked.rejected}): {checked.detail}")
    return checked.normalized.lower(), checked.role


def normalize_phone(raw: str, settings: Settings) -> str:
    checked = check_phone(raw, default_region=settings.default_region)
    if checked.e164 is None:
        raise ContactError(f"phone {raw!r} refused ({checked.rejected}): {checked.detail}")
    return checked.e164


#: the contact columns `add_contact` sets, compared before and after to say what changed
PROFILE = ("email", "phone", "locale", "timezone", "country", "role_account")


@dataclass(frozen=True)
class Saved:
    """What `save_contact` did."""

    contact_id: int
    change: WhatChanged
    #: the profile fields that changed (`attributes.KEY` for an attribute), when updated
    fields: tuple[str, ...] = ()


def add_contact(conn: Connection, settings: Settings, now: datetime, *, email: str | None,
                phone: str | None = None, locale: str | None = None,
                timezone: str | None = None, country: str | None = None,
                attributes: Mapping[str, Any] | None = None) -> int:
    """Create a contact, or update the one with the same email (idempotent). Returns its id."""
    return save_contact(conn, settings, now, email=email, phone=phone, locale=locale,
                        timezone=timezone, country=country, attributes=attributes).contact_id


def save_contact(conn: Connection, settings: Settings, now: datetime, *, email: str | None,
                 phone: str | None = None, locale: str | None = None,
                 timezone: str | None = None, country: str | None = None,
                 attributes: Mapping[str, Any] | None = None) -> Saved:
    """Create a contact, or update the one with the same email (by phone without one),
    and say which: the stored profile is compared before and after, so saving the same
    values again is `unchanged` and writes nothing."""
    if not email and not phone:
        raise ContactError("a contact needs an email or a phone number")
    values: dict[str, Any] = {}
    if email:
        values["email"], values["role_account"] = normalize_email(email, settings)
    if phone:
        values["phone"] = normalize_phone(phone, settings)
        if not country:
            country = check_phone(values["phone"]).country
    if locale:
        if locale not in settings.locales:
            raise ContactError(f"locale {locale!r} is not one of {settings.locales}")
        values["locale"] = locale
    if timezone:
        if zone(timezone).key != timezone:
            raise ContactError(f"unknown time zone {timezone!r} (use an IANA name)")
        values["timezone"] = timezone
    if country:
        values["country"] = country.upper()
    existing = (store.contact_row(conn, email=values.get("email")) if email
                else store.contact_row(conn, phone=values["phone"]))
    if existing is not None:
        row = existing._mapping
        before = dict(row["attributes"] or {})
        merged = {**before, **(attributes or {})}
        changed = tuple([name for name in PROFILE if name in values
                         and values[name] != row[name]]
                        + [f"attributes.{key}" for key in merged
                           if key not in before or merged[key] != before[key]])
        contact_id, profiled = int(existing.id), merged != before
        if changed:
            store.update_contact(conn, contact_id, {**values, "attributes": merged,
                                                    "updated_at": now, "evaluate_at": now})
        saved = Saved(contact_id, "updated" if changed else "unchanged", changed)
    else:
        values.setdefault("locale", settings.default_locale)
        values.setdefault("timezone", settings.default_timezone)
        values.update(attributes=dict(attributes or {}), created_at=now, updated_at=now,
                      evaluate_at=now, stage="lead", temperature="cold", score=0.0, fit=0.0,
                      decay_at=None)
        values.setdefault("role_account", False)
        contact_id, profiled = store.insert_contact(conn, values), bool(attributes)
        saved = Saved(contact_id, "created")
    if phone and (existing is None or existing.phone != values["phone"]):
        # a number that texted STOP stays opted out for whoever takes it
        ledger.inherit_number_opt_out(conn, now, contact_id=contact_id, phone=values["phone"])
    if profiled:  # the fit follows the profile, with the rule that decided it
        from nurture.intake import maturity  # maturity → reply_effects → contacts

        maturity.reassess(conn, settings, contact_id, now)
    return saved


def find_contact(conn: Connection, who: str) -> Any:
    """By email, E.164 phone or numeric id; ContactError if unknown."""
    row = None
    if who.isdigit():
        row = store.contact_row(conn, contact_id=int(who))
    elif "@" in who:
        row = store.contact_row(conn, email=who.strip().lower())
    else:
        row = store.contact_row(conn, phone=who.strip())
    if row is None:
        raise ContactError(f"no contact {who!r}")
    return row


def describe(conn: Connection, contact: Any) -> dict[str, Any]:
    """Everything a person needs to understand a contact: profile, why its score and
    stage are what they are, where it stands in journeys, what it was sent (or not and
    why), and its consent history."""
    data = dict(contact._mapping)
    return {
        "contact": data,
        "changes": store.contact_changes(conn, contact.id),
        "enrollments": _with_paths(store.contact_enrollments(conn, contact.id),
                                   journeys.step_runs(conn, contact.id)),
        "messages": store.contact_messages(conn, contact.id),
        "consent": store.consent_history(conn, contact.id),
        "events": store.contact_events(conn, contact.id),
    }


def _with_paths(enrollments: list[dict[str, Any]],
                steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each enrollment with the steps it took (`steps`): the branch case chosen, a
    wait_for's outcome (event or timeout) and its time, why it blocked."""
    taken: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        taken.setdefault(step["enrollment_id"], []).append(
            {k: step[k] for k in ("step_id", "kind", "outcome", "detail", "at", "until",
                                  "journey_version")})
    return [{**row, "steps": taken.get(row["id"], [])} for row in enrollments]
