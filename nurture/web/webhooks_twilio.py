"""Twilio webhooks: inbound SMS (answered in TwiML) and SMS status callbacks.

Every request is checked with the SDK's `RequestValidator` (auth token from
`TWILIO_AUTH_TOKEN`) against the public URL Twilio called: `public_base_url` + path +
query. Behind a proxy listed in `trusted_proxies`, the scheme and host it forwarded
(`X-Forwarded-Proto` / `X-Forwarded-Host`) are tried too; from anyone else those headers
never reach this module (`proxies`), so a signature made for another deployment on the
same Twilio account cannot be replayed here by naming that deployment's host. A missing
or bad signature gets 403 and stores nothing; the signature covers the fields, so they
are read first (64 KB at most: `limits`).
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
from nurture.web.fields import Text, text_fields
from nurture.web.proxies import last_value

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
SIGNATURE_HEADER = "X-Twilio-Signature"

router = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])


def public_urls(base_url: str, request: Request) -> list[str]:
    """The URL Twilio signed: as a trusted proxy forwarded it, then as configured."""
    base = urlsplit(base_url)
    path = base.path.rstrip("/") + request.url.path
    query = request.url.query
    proto = last_value(request.headers.get("x-forwarded-proto", "")).lower()
    host = last_value(request.headers.get("x-forwarded-host", ""))
    forwarded = urlunsplit((proto or base.scheme, host or base.netloc, path, query, ""))
    configured = urlunsplit((base.scheme, base.netloc, path, query, ""))
    return list(dict.fromkeys([forwarded, configured]))


async def signed_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    """The form fields, once the signature over URL and fields is verified."""
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if not token:
        raise HTTPException(503, f"{AUTH_TOKEN_ENV} is not set on this server")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise HTTPException(403, f"{SIGNATURE_HEADER} is missing")
    async with request.form(max_files=0) as form:
        try:
            twilio.verify_request(token, public_urls(rt.settings.public_base_url, request),
                                  form, signature)
        except SignatureError as e:
            raise HTTPException(403, str(e)) from e
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    return text_fields(fields)


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
           m: Annotated[Text | None, Query(max_length=64)] = None) -> Response:
    try:
        event = twilio.parse_status(form, m, now)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    if event is not None:
        feedback.record(conn, rt, event, now)
    return Response(status_code=204)
