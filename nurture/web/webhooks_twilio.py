"""Twilio webhooks: inbound SMS (answered in TwiML) and SMS status callbacks.

Every request is checked with the SDK's `RequestValidator` (auth token from
`TWILIO_AUTH_TOKEN`) against the public URL Twilio called: `public_base_url` + path +
query, with scheme and host taken from `X-Forwarded-Proto` / `X-Forwarded-Host` when a
proxy sets them. A bad signature gets 403 and stores nothing.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from twilio.twiml.messaging_response import MessagingResponse

from nurture.errors import SignatureError
from nurture.intake import feedback
from nurture.providers import twilio
from nurture.web.deps import ConnDep, NowDep, RuntimeDep

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
SIGNATURE_HEADER = "X-Twilio-Signature"

router = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])


def public_urls(base_url: str, request: Request) -> list[str]:
    """The URL Twilio signed: as a proxy forwarded it, then as configured."""
    base = urlsplit(base_url)
    path = base.path.rstrip("/") + request.url.path
    query = request.url.query
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    forwarded = urlunsplit((proto or base.scheme, host or base.netloc, path, query, ""))
    configured = urlunsplit((base.scheme, base.netloc, path, query, ""))
    return list(dict.fromkeys([forwarded, configured]))


async def signed_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    """The form fields, once the signature over URL and fields is verified."""
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if not token:
        raise HTTPException(503, f"{AUTH_TOKEN_ENV} is not set on this server")
    async with request.form() as form:
        try:
            twilio.verify_request(token, public_urls(rt.settings.public_base_url, request),
                                  form, request.headers.get(SIGNATURE_HEADER, ""))
        except SignatureError as e:
            raise HTTPException(403, str(e)) from e
        return {name: value for name, value in form.multi_items() if isinstance(value, str)}


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


@router.post("/sms")
def inbound_sms(form: SignedForm, rt: RuntimeDep, conn: ConnDep, now: NowDep) -> Response:
    try:
        event = twilio.parse_inbound(form, now)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    reply = feedback.record_inbound_sms(conn, rt, event, now)
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return Response(str(twiml), media_type="application/xml")


@router.post("/status", status_code=204)
def status(form: SignedForm, rt: RuntimeDep, conn: ConnDep, now: NowDep,
           m: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    try:
        event = twilio.parse_status(form, m, now)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    if event is not None:
        feedback.record(conn, rt, event, now)
    return Response(status_code=204)
