"""The HTML pages people see (preferences, confirmations), in French or English.

Plain server-rendered HTML: works without JavaScript, autoescaped Jinja2 templates from
`nurture/web/templates/`. Links carry secret tokens, so every page is sent with
no-referrer, no-store and no-framing headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

from nurture.config.settings import Settings

LANGUAGES = ("fr", "en")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False)

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "prefs_title": "Your email and SMS preferences",
        "prefs_intro": "Choose what you want to receive from {company}. Untick what you no "
                       "longer want, then save.",
        "prefs_for": "Preferences for",
        "channel_email": "By email",
        "channel_sms": "By text message (SMS)",
        "state_granted": "subscribed",
        "state_pending": "waiting for your confirmation",
        "state_withdrawn": "unsubscribed",
        "state_none": "not subscribed",
        "locked_sms": "To receive our text messages, sign up through one of our forms.",
        "locked_email": "To receive our emails, sign up through one of our forms.",
        "save": "Save my choices",
        "all_title": "Unsubscribe from everything",
        "all_help": "You will receive nothing more from {company}, by email or by SMS.",
        "all_button": "Unsubscribe from everything",
        "saved": "Your choices are saved.",
        "nothing_changed": "Nothing changed.",
        "action_withdrawn": "unsubscribed",
        "action_granted": "subscribed",
        "everything": "everything",
        "one_click_title": "You are unsubscribed",
        "one_click_body": "You will no longer receive “{purpose}” emails from {company}.",
        "manage": "Manage all your preferences",
        "invalid_title": "This link does not work",
        "invalid_body": "It may have been cut or altered. Open the full link from the email "
                        "again, or reply to the email to unsubscribe.",
        "form_title": "This form could not be accepted",
        "form_body": "It was altered or is incomplete; nothing was changed. Open the link from "
                     "the email again.",
        "gone_title": "Nothing left to manage",
        "gone_body": "We no longer hold any data linked to this link: it was erased, and you "
                     "will receive nothing more from us.",
        "refused_title": "This change could not be made",
        "confirm_title": "Confirm your subscription",
        "confirm_intro": "Please confirm that you want to receive, at {address}:",
        "confirm_button": "Yes, I confirm",
        "confirmed_title": "Thank you, your subscription is confirmed",
        "confirmed_body": "You can change your mind at any time with the unsubscribe link in "
                          "each email.",
        "nothing_pending_title": "Nothing to confirm",
        "nothing_pending_body": "This request was already confirmed or withdrawn.",
        "expired_body": "This confirmation link has expired. Sign up again to receive a new one.",
        "confirm_invalid_body": "It may have been cut or altered. Open the full link from the "
                                "confirmation email again.",
    },
    "fr": {
        "prefs_title": "Vos préférences e-mail et SMS",
        "prefs_intro": "Choisissez ce que vous souhaitez recevoir de la part de {company}. "
                       "Décochez ce que vous ne voulez plus, puis enregistrez.",
        "prefs_for": "Préférences de",
        "channel_email": "Par e-mail",
        "channel_sms": "Par SMS",
        "state_granted": "abonné",
        "state_pending": "en attente de votre confirmation",
        "state_withdrawn": "désabonné",
        "state_none": "non abonné",
        "locked_sms": "Pour recevoir nos SMS, inscrivez-vous via l'un de nos formulaires.",
        "locked_email": "Pour recevoir nos e-mails, inscrivez-vous via l'un de nos formulaires.",
        "save": "Enregistrer mes choix",
        "all_title": "Se désabonner de tout",
        "all_help": "Vous ne recevrez plus rien de la part de {company}, ni par e-mail ni par "
                    "SMS.",
        "all_button": "Me désabonner de tout",
        "saved": "Vos choix sont enregistrés.",
        "nothing_changed": "Aucun changement.",
        "action_withdrawn": "désabonné",
        "action_granted": "abonné",
        "everything": "tout",
        "one_click_title": "Vous êtes désabonné",
        "one_click_body": "Vous ne recevrez plus les e-mails « {purpose} » de la part de "
                          "{company}.",
        "manage": "Gérer toutes vos préférences",
        "invalid_title": "Ce lien ne fonctionne pas",
        "invalid_body": "Il a peut-être été coupé ou modifié. Ouvrez à nouveau le lien complet "
                        "depuis l'e-mail, ou répondez à l'e-mail pour vous désabonner.",
        "form_title": "Ce formulaire n'a pas pu être accepté",
        "form_body": "Il a été modifié ou est incomplet ; rien n'a été changé. Ouvrez à nouveau "
                     "le lien depuis l'e-mail.",
        "gone_title": "Plus rien à gérer",
        "gone_body": "Nous ne détenons plus aucune donnée liée à ce lien : elles ont été "
                     "effacées, et vous ne recevrez plus rien de notre part.",
        "refused_title": "Ce changement n'a pas pu être fait",
        "confirm_title": "Confirmez votre inscription",
        "confirm_intro": "Merci de confirmer que vous souhaitez recevoir, à l'adresse {address} :",
        "confirm_button": "Oui, je confirme",
        "confirmed_title": "Merci, votre inscription est confirmée",
        "confirmed_body": "Vous pouvez changer d'avis à tout moment grâce au lien de "
                          "désinscription présent dans chaque e-mail.",
        "nothing_pending_title": "Rien à confirmer",
        "nothing_pending_body": "Cette demande a déjà été confirmée ou retirée.",
        "expired_body": "Ce lien de confirmation a expiré. Inscrivez-vous à nouveau pour en "
                        "recevoir un nouveau.",
        "confirm_invalid_body": "Il a peut-être été coupé ou modifié. Ouvrez à nouveau le lien "
                                "complet depuis l'e-mail de confirmation.",
    },
}


def language(settings: Settings, contact_locale: str | None = None,
             accept_language: str | None = None) -> str:
    """The contact's language, else the browser's, else the configured default."""
    wanted = [contact_locale or ""]
    wanted += [part.split(";")[0].strip() for part in (accept_language or "").split(",")]
    wanted.append(settings.default_locale)
    for locale in wanted:
        short = locale.lower()[:2]
        if short in LANGUAGES:
            return short
    return "en"


def purpose_label(settings: Settings, purpose: str, lang: str) -> str:
    spec = settings.purposes.get(purpose)
    if spec is None:
        return purpose
    return spec.descriptions.get(lang) or spec.description or purpose.replace("_", " ").title()


def mask(address: str | None) -> str:
    """Enough of the address for a person to recognise it, not for a stranger to read it
    (a forwarded email carries the link)."""
    if not address:
        return ""
    local, at, domain = address.partition("@")
    if not at:
        return address[:3] + "•" * max(len(address) - 5, 1) + address[-2:]
    return f"{local[:1]}{'•' * max(len(local) - 1, 1)}@{domain}"


def render(template: str, lang: str, settings: Settings, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    text = TEXT[lang]
    html = _ENV.get_template(template).render(
        t=text, lang=lang, company=settings.sender.company, **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def message(lang: str, settings: Settings, title: str, body: str, status_code: int = 200,
            link: str | None = None, link_text: str = "") -> HTMLResponse:
    """A page with a title and one paragraph (done, invalid link, erased…)."""
    return render("message.html", lang, settings, status_code, title=title, body=body,
                  link=link, link_text=link_text)
