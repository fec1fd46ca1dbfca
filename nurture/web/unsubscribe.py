"""`/u/{token}`: the preference page (GET) and RFC 8058 one-click unsubscribe (POST).

- GET shows every channel × purpose with its state and never changes anything (link
  scanners prefetch).
- POST with `List-Unsubscribe=One-Click` (multipart/form-data or urlencoded) withdraws
  the message's channel and purpose at once and answers 200: no redirect, no cookie, no
  login — the signed token is the secret. Repeating it adds nothing.
- POST of the preference form needs its CSRF token (an HMAC of the link token).
- HEAD is answered like GET (link checkers and mail clients probe with it).
A tampered or truncated token gets 400 and changes nothing; it is checked before the body
is read (bodies are capped at 64 KB by `limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import UploadFile

from nurture.engine.runtime import Runtime
from nurture.errors import ContactError, SignatureError
from nurture.services import preferences
from nurture.vocab import ALL_PURPOSES
from nurture.web import pages
from nurture.web.deps import NowDep, RuntimeDep
from nurture.web.fields import text_problem

router = APIRouter()

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Posted:
    """A POSTed form, with the raw body kept as evidence."""

    fields: dict[str, list[str]]
    raw: bytes
    content_type: str

    def first(self, name: str) -> str:
        return (self.fields.get(name) or [""])[0]

    @property
    def one_click(self) -> bool:
        return self.fields.get("List-Unsubscribe") == ["One-Click"]


async def read_form(token: str, request: Request, rt: RuntimeDep) -> Posted:
    """The form, once the link's signature checked out from the URL alone: a forged link's
    body is never read (the handler answers it 400, as it does any bad link)."""
    try:
        rt.links.message_id_from(token)
    except SignatureError:
        return Posted({}, b"", "")
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    fields: dict[str, list[str]] = {}
    if content_type.lower().startswith(FORM_TYPES):
        try:
            async with request.form(max_files=0, max_fields=200) as form:
                for key, value in form.multi_items():
                    if not isinstance(value, UploadFile):
                        fields.setdefault(key, []).append(value)
        except Exception as e:  # malformed multipart: the parser's own error types vary
            raise HTTPException(400, f"malformed form body: {e}") from e
    # NUL bytes or lone surrogates are nothing our page or RFC 8058 sends, and no database
    # stores them: such fields are dropped (an unsubscribe never fails for them)
    storable = {name: kept for name, values in fields.items() if not text_problem(name)
                if (kept := [v for v in values if not text_problem(v)])}
    return Posted(storable, raw.replace(b"\x00", b""), content_type)


def client_evidence(request: Request) -> dict[str, str]:
    return {"ip": request.client.host if request.client else "",
            "user_agent": request.headers.get("user-agent", "")}


def _lang(rt: Runtime, request: Request, target: preferences.LinkTarget | None = None) -> str:
    locale = target.contact.locale if target is not None else None
    return pages.language(rt.settings, locale, request.headers.get("accept-language"))


def _invalid(rt: Runtime, request: Request) -> HTMLResponse:
    t = pages.TEXT[_lang(rt, request)]
    return pages.message(_lang(rt, request), rt.settings, t["invalid_title"], t["invalid_body"],
                         400)


def _gone(rt: Runtime, request: Request, status_code: int) -> HTMLResponse:
    lang = _lang(rt, request)
    t = pages.TEXT[lang]
    return pages.message(lang, rt.settings, t["gone_title"], t["gone_body"], status_code)


def _page(rt: Runtime, conn: Any, token: str, target: preferences.LinkTarget, lang: str,
          saved: list[dict[str, str]] | None = None) -> HTMLResponse:
    settings = rt.settings
    items = preferences.choices(conn, settings, target.contact, target.channel)
    channels = []
    for channel in preferences.channels_of(target.contact):
        rows = [{"key": i.key, "channel": i.channel, "purpose": i.purpose, "state": i.state,
                 "granted": i.granted, "can_grant": i.can_grant,
                 "label": pages.purpose_label(settings, i.purpose, lang)}
                for i in items if i.channel == channel]
        channels.append((channel, rows, channel != target.channel))
    return pages.render("preferences.html", lang, settings, channels=channels,
                        csrf=rt.links.form_token(token), saved=saved,
                        address=pages.mask(target.message["to_address"]))


@router.get("/u/{token}", response_class=HTMLResponse)
@router.head("/u/{token}", response_class=HTMLResponse)
def preference_page(token: str, request: Request, rt: RuntimeDep) -> HTMLResponse:
    try:
        with rt.db.begin() as conn:
            target = preferences.resolve(conn, rt.links, token)
            if target is None:
                return _gone(rt, request, 410)
            return _page(rt, conn, token, target, _lang(rt, request, target))
    except SignatureError:
        return _invalid(rt, request)


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, rt: RuntimeDep, now: NowDep,
                posted: Annotated[Posted, Depends(read_form)]) -> HTMLResponse:
    evidence: dict[str, Any] = client_evidence(request)
    try:
        with rt.db.begin() as conn:
            target = preferences.resolve(conn, rt.links, token)
            if target is None:  # erased: the address is suppressed, nothing will be sent
                return _gone(rt, request, 200 if posted.one_click else 410)
            lang = _lang(rt, request, target)
            evidence["message"] = target.message["public_id"]
            if posted.one_click:
                evidence.update(body=posted.raw.decode("utf-8", "replace")[:2000],
                                content_type=posted.content_type)
                preferences.one_click(conn, rt, now, target, evidence)
                return _one_click_done(rt, token, target, lang)
            if not rt.links.form_token_ok(token, posted.first("csrf")):
                t = pages.TEXT[lang]
                return pages.message(lang, rt.settings, t["form_title"], t["form_body"], 400)
            return _save(rt, conn, now, token, target, lang, posted, evidence)
    except SignatureError:
        return _invalid(rt, request)
    except ContactError as e:  # e.g. re-subscribing an address that bounced since
        lang = _lang(rt, request)
        return pages.message(lang, rt.settings, pages.TEXT[lang]["refused_title"], str(e), 409)


def _one_click_done(rt: Runtime, token: str, target: preferences.LinkTarget,
                    lang: str) -> HTMLResponse:
    t = pages.TEXT[lang]
    label = pages.purpose_label(rt.settings, target.message["purpose"], lang)
    body = t["one_click_body"].format(purpose=label, company=rt.settings.sender.company)
    return pages.message(lang, rt.settings, t["one_click_title"], body,
                         link=f"{rt.links.base_url}/u/{token}", link_text=t["manage"])


def _save(rt: Runtime, conn: Any, now: Any, token: str, target: preferences.LinkTarget,
          lang: str, posted: Posted, evidence: dict[str, Any]) -> HTMLResponse:
    wanted = set(posted.fields.get("consent", []))
    everything = posted.first("action") == "unsubscribe-all"
    evidence["form"] = {"consent": sorted(wanted), "action": posted.first("action")}
    wording = {f"{target.channel}:{name}": pages.purpose_label(rt.settings, name, lang)
               for name in rt.settings.purposes}
    changes = preferences.apply(conn, rt, now, target, wanted, evidence,
                                everything=everything, wording=wording)
    t = pages.TEXT[lang]
    saved = [{"channel": c.channel, "action": c.action,
              "label": t["everything"] if c.purpose == ALL_PURPOSES
              else pages.purpose_label(rt.settings, c.purpose, lang)} for c in changes]
    return _page(rt, conn, token, target, lang, saved)
