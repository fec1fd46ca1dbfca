"""SendGrid webhooks: the Signed Event Webhook, and Inbound Parse for email replies.

Nothing is parsed before it is authenticated: the event body is verified byte for byte
(ECDSA, public key from `SENDGRID_WEBHOOK_PUBLIC_KEY`), the inbound URL carries a secret
(`SENDGRID_INBOUND_SECRET`). What the headers alone can tell is checked before the body
is read: signature headers present, a fresh timestamp; the inbound secret. A bad
signature or secret gets 403 and stores nothing; a body that is not a JSON array gets
400; within a valid batch every good item is kept, and an item no database can store
(NUL bytes, NaN…) is counted as rejected. Bodies are capped by `limits`.
"""

from __future__ import annotations

import hmac
import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from nurture.errors import ConfigError, SignatureError
from nurture.intake import feedback
from nurture.providers import sendgrid
from nurture.web.deps import ConnDep, NowDep, RuntimeDep
from nurture.web.fields import json_problems, text_fields

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
INBOUND_SECRET_ENV = "SENDGRID_INBOUND_SECRET"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: SendGrid Inbound Parse accepts messages up to 30 MB
MAX_INBOUND_BYTES = 30 * 1024 * 1024

router = APIRouter(prefix="/webhooks/sendgrid", tags=["webhooks"])


def _env_secret(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise HTTPException(503, f"{name} is not set on this server")
    return value


def _fresh_headers(request: Request, now: datetime) -> None:
    """Refuse, from the headers alone, what the signature check would refuse anyway."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        raise HTTPException(403, "missing signature headers")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise HTTPException(403, "bad signature timestamp")
    sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - sent_at) > sendgrid.MAX_SIGNATURE_AGE:
        raise HTTPException(403, "stale signature timestamp")


async def signed_events(request: Request, now: NowDep) -> list[Any]:
    """The verified body as a JSON array: 403 when unsigned or stale, 400 when not JSON."""
    key = _env_secret(PUBLIC_KEY_ENV)
    _fresh_headers(request, now)
    body = await request.body()
    try:
        sendgrid.verify_signature(key, body, request.headers.get(SIGNATURE_HEADER, ""),
                                  request.headers.get(TIMESTAMP_HEADER, ""), now)
    except SignatureError as e:
        raise HTTPException(403, str(e)) from e
    except ConfigError as e:
        raise HTTPException(503, str(e)) from e
    try:
        items = json.loads(body)
    except ValueError as e:
        raise HTTPException(400, "the body is not JSON") from e
    if not isinstance(items, list):
        raise HTTPException(400, "expected a JSON array of events")
    return items


@router.post("/events")
def events(items: Annotated[list[Any], Depends(signed_events)], rt: RuntimeDep,
           conn: ConnDep, now: NowDep) -> dict[str, int]:
    parsed, rejected = [], 0
    for index, item in enumerate(items):
        if next(json_problems(item, (index,)), None):
            rejected += 1
            continue
        try:
            parsed.append(sendgrid.parse_event(item, now))
        except ValueError:
            rejected += 1
    tally = feedback.record_each(conn, rt, parsed, now)
    return {"stored": tally.stored, "replayed": tally.replayed,
            "rejected": rejected + tally.failed}


async def inbound_fields(secret: str, request: Request) -> dict[str, str]:
    """The Inbound Parse form (text fields only; attachments are not read)."""
    expected = _env_secret(INBOUND_SECRET_ENV)
    if not hmac.compare_digest(secret.encode(), expected.encode()):
        raise HTTPException(403, "wrong inbound secret")
    # raw mode posts the whole MIME message (attachments too) as one field
    async with request.form(max_part_size=MAX_INBOUND_BYTES) as form:
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    return text_fields(fields)


@router.post("/inbound/{secret}")
def inbound(fields: Annotated[dict[str, str], Depends(inbound_fields)], rt: RuntimeDep,
            conn: ConnDep, now: NowDep) -> dict[str, bool]:
    event = sendgrid.parse_inbound(fields, now)
    recorded = feedback.record(conn, rt, event, now)
    return {"stored": recorded.event_id is not None, "matched": recorded.contact_id is not None}
