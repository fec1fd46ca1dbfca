"""Helpers for the consent, unsubscribe, GDPR and browser tests: a project on a real SQLite
file, the repo's journeys and templates, and the real outbox provider writing .eml files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nurture.config.settings import load_settings
from nurture.engine.runtime import Runtime
from nurture.intake import ledger as consent_ledger
from nurture.services import contacts
from nurture.store import database as db
from tests.conftest import applied_runtime, write_project

SECRET = "test-secret-key-for-links"
API_KEY = "test-api-key-0123456789"
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # 10:00 in Paris

#: the purposes of the example config, described in both languages
PURPOSES = """
[purposes.newsletter]
description = "Guides and the newsletter"
descriptions = { fr = "Guides et lettre d'information" }
[purposes.marketing]
description = "Webinars and offers"
descriptions = { fr = "Webinaires et offres" }
[purposes.sales]
description = "Direct outreach from our sales team"
bases = ["consent", "legitimate_interest"]
[purposes.transactional]
description = "Confirmations you asked for"
marketing = false
bases = ["consent", "contract", "legitimate_interest"]
"""


def build(root: Path, *, base_url: str = "https://nurture.test", config_extra: str = "",
          journeys: dict[str, str] | None = None, copy_journeys: bool = True) -> Runtime:
    """The repo's journeys and templates; providers from config (the outbox)."""
    config = write_project(root, config_extra, journeys, copy_journeys)
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": SECRET,
                                          "NURTURE_API_KEY": API_KEY,
                                          "NURTURE_PUBLIC_BASE_URL": base_url})
    return applied_runtime(settings)


def add(rt: Runtime, email: str, now: datetime,
        consents: tuple[tuple[str, str], ...] = (("email", "newsletter"),), **fields: Any) -> int:
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, now, email=email, **fields)
        contact = contacts.find_contact(conn, str(cid))
        for channel, purpose in consents:
            consent_ledger.record_consent(conn, rt.settings, now, contact=contact, channel=channel,
                                    purpose=purpose, action="granted", source="signup-form",
                                    evidence={"wording_version": "v1"})
    return cid


def rows(rt: Runtime, table: Any, **where: Any) -> list[dict[str, Any]]:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(query.order_by(*table.primary_key.columns))
                .mappings()]


def ledger(rt: Runtime, cid: int) -> list[dict[str, Any]]:
    return rows(rt, db.consent_record, contact_id=cid)


def messages(rt: Runtime, cid: int) -> list[dict[str, Any]]:
    return rows(rt, db.message, contact_id=cid)


def consent_snapshot(rt: Runtime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The whole ledger and current state: compared before/after to prove nothing changed."""
    return rows(rt, db.consent_record), rows(rt, db.consent_state)


def eml(rt: Runtime, public_id: str) -> EmailMessage:
    path = rt.settings.outbox_path / "email" / f"{public_id}.eml"
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def sent_email(rt: Runtime, cid: int, step_id: str | None = None) -> EmailMessage:
    """The .eml of the contact's latest sent email (of that step)."""
    sent = [m for m in messages(rt, cid) if m["state"] == "sent" and m["channel"] == "email"
            and (step_id is None or m["step_id"] == step_id)]
    assert sent, f"no email sent to contact {cid}"
    return eml(rt, sent[-1]["public_id"])


def one_click_url(mail: EmailMessage) -> str:
    """The HTTPS URI of List-Unsubscribe (RFC 8058 requires one)."""
    uris = re.findall(r"<([^>]+)>", str(mail["List-Unsubscribe"]))
    https = [u for u in uris if u.startswith(("https://", "http://"))]
    assert https, mail["List-Unsubscribe"]
    return https[0]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
