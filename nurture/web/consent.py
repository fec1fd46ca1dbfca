"""`POST /consent` (API key) records consent from a sign-up form, with its evidence;
`/consent/confirm/{token}` completes a double opt-in (GET shows a button, POST confirms).

A form's fields are checked at the edge before anything is recorded: purposes declared in
config.toml, attributes declared there and of their declared type, an ISO country, a
configured locale, an IANA time zone, an IP address for the visitor; 422 names each field
at fault.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from nurture.compliance.tokens import LinkExpired
from nurture.engine.runtime import Runtime
from nurture.engine.send import deliver
from nurture.errors import ContactError, SignatureError, TemplateError
from nurture.services import signup
from nurture.web import pages
from nurture.web.deps import KeyedRoute, NowDep, RuntimeDep
from nurture.web.fields import (
    IpAddress,
    Problem,
    Text,
    attribute_problems,
    country_problem,
    invalid,
    purpose_problems,
    time_zones,
)
from nurture.web.unsubscribe import client_evidence

#: the API-key route; `router` has the confirmation pages people open
api = APIRouter(route_class=KeyedRoute)
router = APIRouter()


class ConsentIn(BaseModel):
    """A sign-up form's submission: who, what for, and exactly what they were told."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "email": "camille@example.com", "locale": "fr", "country": "FR",
        "channels": ["email"], "purposes": ["newsletter"], "source": "website",
        "form_id": "newsletter-footer", "wording_version": "v3",
        "wording": "Je souhaite recevoir la lettre d'information.",
        "ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}]})

    email: Text | None = Field(default=None, max_length=320)
    phone: Text | None = Field(default=None, max_length=40)
    #: one of config.toml's `locales`
    locale: Text | None = Field(default=None, max_length=35)
    #: an IANA time zone (Europe/Paris)
    timezone: Text | None = Field(default=None, max_length=64)
    #: ISO 3166-1 alpha-2
    country: Text | None = Field(default=None, min_length=2, max_length=2)
    #: attributes declared in config.toml (`[attributes.NAME]`), each of its declared type
    attributes: dict[Text, str | int | float | bool | None] = Field(default={}, max_length=100)
    channels: list[Literal["email", "sms"]] = Field(min_length=1, max_length=2)
    #: purposes declared in config.toml (`[purposes.NAME]`)
    purposes: list[Text] = Field(min_length=1, max_length=50)
    #: where it came from (e.g. the site) and which form
    source: Text = Field(default="api", min_length=1, max_length=100)
    form_id: Text | None = Field(default=None, max_length=200)
    #: the exact text next to the box the person ticked, and its version
    wording: Text = Field(min_length=1, max_length=5000)
    wording_version: Text = Field(default="", max_length=100)
    double_opt_in: bool = False
    #: the visitor's IP and browser when a server relays the form (else the caller's)
    ip: IpAddress | None = None
    user_agent: Text | None = Field(default=None, max_length=1000)


def problems(rt: Runtime, body: ConsentIn) -> list[Problem]:
    """What the form's model cannot know: the names config.toml declares."""
    settings = rt.settings
    found = [*purpose_problems(settings, body.purposes, ("purposes",)),
             *attribute_problems(settings, body.attributes, ("attributes",))]
    if body.country and (problem := country_problem(body.country)):
        found.append((("country",), problem))
    if body.locale and body.locale not in settings.locales:
        found.append((("locale",), f"must be one of {settings.locales}"))
    if body.timezone and body.timezone not in time_zones():
        found.append((("timezone",), "is not an IANA time zone (e.g. Europe/Paris)"))
    return found


@api.post("/consent", status_code=201)
def record_consent(body: ConsentIn, request: Request, rt: RuntimeDep,
                   now: NowDep) -> dict[str, Any]:
    if found := problems(rt, body):
        raise invalid(found)
    caller = client_evidence(request)
    client = {"ip": body.ip or caller["ip"], "user_agent": body.user_agent or caller["user_agent"],
              "received_from": caller["ip"]}
    form = signup.SignupForm(**body.model_dump(exclude={"ip", "user_agent"}))
    try:
        with rt.db.begin() as conn:
            result = signup.record_signup(conn, rt, now, form, client)
    except signup.AddressSuppressed as e:
        raise HTTPException(409, str(e)) from e
    except ContactError as e:
        raise HTTPException(422, str(e)) from e
    except TemplateError as e:
        raise HTTPException(500, f"the confirmation email cannot be rendered: {e}") from e
    if result.confirmation is not None:
        deliver(rt, [result.confirmation], now)
    return {"contact_id": result.contact_id, "status": str(result.status),
            "records": result.records,
            "confirmation_message": result.confirmation.public_id if result.confirmation
            else None}


def _lang(rt: Runtime, request: Request, contact: Any = None) -> str:
    return pages.language(rt.settings, contact.locale if contact is not None else None,
                          request.headers.get("accept-language"))


def _problem(rt: Runtime, request: Request, title: str, body: str,
             status_code: int) -> HTMLResponse:
    """A localized error page; `title` and `body` are keys of `pages.TEXT`."""
    lang = _lang(rt, request)
    t = pages.TEXT[lang]
    return pages.message(lang, rt.settings, t[title], t[body], status_code)


def _bad_link(rt: Runtime, request: Request, error: SignatureError) -> HTMLResponse:
    body = "expired_body" if isinstance(error, LinkExpired) else "confirm_invalid_body"
    return _problem(rt, request, "invalid_title", body, 400)


def _load(rt: Runtime, conn: Any, token: str) -> signup.PendingRequest | None:
    return signup.pending_request(conn, *rt.links.request_from(token))


@router.get("/consent/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, rt: RuntimeDep) -> HTMLResponse:
    """Shows what will be confirmed and a button; never confirms on GET (scanners)."""
    try:
        with rt.db.begin() as conn:
            pending = _load(rt, conn, token)
    except SignatureError as e:
        return _bad_link(rt, request, e)
    if pending is None:
        return _problem(rt, request, "gone_title", "gone_body", 410)
    lang = _lang(rt, request, pending.contact)
    t = pages.TEXT[lang]
    if not pending.waiting:
        return pages.message(lang, rt.settings, t["nothing_pending_title"],
                             t["nothing_pending_body"])
    labels = sorted({pages.purpose_label(rt.settings, r["purpose"], lang)
                     for r in pending.waiting})
    return pages.render("confirm.html", lang, rt.settings, labels=labels,
                        address=pending.contact.email or "")


@router.post("/consent/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, rt: RuntimeDep, now: NowDep) -> HTMLResponse:
    """Appends `confirmed` entries (with this click's IP and user agent) referencing the
    pending ones. The signed, expiring token is the secret: no CSRF token needed."""
    try:
        with rt.db.begin() as conn:
            pending = _load(rt, conn, token)
            if pending is None:
                return _problem(rt, request, "gone_title", "gone_body", 410)
            confirmed = signup.confirm(conn, rt, now, pending, client_evidence(request))
    except SignatureError as e:
        return _bad_link(rt, request, e)
    except ContactError as e:
        lang = _lang(rt, request)
        return pages.message(lang, rt.settings, pages.TEXT[lang]["refused_title"], str(e), 409)
    lang = _lang(rt, request, pending.contact)
    t = pages.TEXT[lang]
    if not confirmed:
        return pages.message(lang, rt.settings, t["nothing_pending_title"],
                             t["nothing_pending_body"])
    return pages.message(lang, rt.settings, t["confirmed_title"], t["confirmed_body"])
