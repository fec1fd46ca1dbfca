from __future__ import annotations

import os
from pathlib import Path

import pytest

from nurture.content.rendering import TemplateCatalog
from nurture.content.template_checks import check, missing_translations
from nurture.errors import Problem

ATTRIBUTES = ("first_name", "company")
STOP = {"fr": "STOP au 36111", "en": "Reply STOP to opt out"}
LAYOUT = """<html><body>
{% block content %}{% endblock %}
<p>{{ sender.company }}, {{ sender.postal_address }}</p>
{% block unsubscribe %}<a href="{{ links.unsubscribe }}">Unsubscribe</a>{% endblock %}
</body></html>
"""
CONTENT = '{% extends "layouts/email.html" %}\n{% block content %}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    (root / "layouts").mkdir(parents=True)
    (root / "layouts/email.html").write_text(LAYOUT, encoding="utf-8")
    return root


def catalog(root: Path, files: dict[str, str]) -> TemplateCatalog:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return TemplateCatalog(root, default_locale="en", locales=["en", "fr"],
                           attribute_names=ATTRIBUTES)


def email(name: str, body: str, subject: str = "Hello") -> dict[str, str]:
    return {
        f"email/{name}.subject": subject,
        f"email/{name}.html": CONTENT + body + "\n{% endblock %}\n",
    }


def at(root: Path, relative: str) -> str:
    return os.path.normpath(root / relative)


def check_email(c: TemplateCatalog, name: str, marketing: bool = True) -> list[Problem]:
    return check(c, "email", name, marketing=marketing, max_sms_segments=3)


def messages(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems]


def test_a_clean_email_has_no_problems(root: Path) -> None:
    body = """{% set greeting = "Hi" %}{% macro button(url, label) %}<a href="{{ url }}">
{{ label }}</a>{% endmacro %}{% set ns = namespace(n=0) %}
{% for item in range(3) %}{{ loop.index }}{{ cycler("a", "b").next() }}{% endfor %}
{{ greeting }} {{ contact.first_name or "" }} {{ contact["company"]|d("") }} {{ contact.score }}
{{ button(links.preferences, "Preferences") }} {{ message.id }} {{ journey.name|upper }}"""
    c = catalog(root, email("ok", body, subject="{{ sender.company }}: {{ contact.email }}"))
    assert check_email(c, "ok") == []


def test_missing_everywhere_is_one_problem(root: Path) -> None:
    problems = check_email(catalog(root, {}), "nope")
    assert len(problems) == 1
    assert problems[0].path == at(root, "email/nope")
    assert "email/nope.en.html" in problems[0].message
    assert "email/nope.html" in problems[0].message


def test_missing_default_locale_with_no_fallback(root: Path) -> None:
    c = catalog(root, {"sms/ping.fr.txt": "Ping"})
    problems = check(c, "sms", "ping", marketing=False, max_sms_segments=1)
    assert messages(problems) == [
        f"no sms template 'ping' for locale 'en' (tried: {at(root, 'sms/ping.en.txt')}, "
        f"{at(root, 'sms/ping.txt')})"
    ]


def test_syntax_error_is_reported_at_its_line(root: Path) -> None:
    c = catalog(root, email("bad", "<p>\n{% if contact.first_name %}\n<p>"))
    problems = check_email(c, "bad")
    # Jinja notices the unclosed `if` at the `endblock` that follows it, on line 6
    assert [(p.path, p.line) for p in problems] == [(at(root, "email/bad.html"), 6)]
    assert problems[0].message.startswith("syntax error: Encountered unknown tag 'endblock'")
    assert "The innermost block that needs to be closed is 'if'" in problems[0].message


def test_every_undefined_variable_is_reported_with_its_line(root: Path) -> None:
    body = "<p>{{ customer.name }}</p>\n<p>{{ contact.nickname }}</p>\n{{ links.unsub }}"
    c = catalog(root, {
        **email("undef", body, subject="{{ contact['title'] }}"),
        "layouts/email.html": LAYOUT.replace("{{ sender.company }}", "{{ sender.phone }}"),
    })
    problems = check_email(c, "undef")
    html, subject, layout = (at(root, f) for f in
                             ("email/undef.html", "email/undef.subject", "layouts/email.html"))
    assert [(p.path, p.line) for p in problems] == [
        (subject, 1), (html, 3), (html, 4), (html, 5), (layout, 3),
    ]
    assert messages(problems) == [
        "undefined variable 'contact.title' (known: company, country, email, first_name, "
        "locale, phone, score, stage, temperature, timezone)",
        "undefined variable 'customer' (known: contact, journey, links, message, sender)",
        "undefined variable 'contact.nickname' (known: company, country, email, first_name, "
        "locale, phone, score, stage, temperature, timezone)",
        "undefined variable 'links.unsub' (known: confirm, preferences, unsubscribe)",
        "undefined variable 'sender.phone' (known: company, email_from, postal_address)",
    ]


def test_missing_layout_and_unknown_filter(root: Path) -> None:
    c = catalog(root, {
        "email/a.subject": "{{ contact.email|shout }}",
        "email/a.html": '<p>Hi</p>\n{% include "layouts/footer.html" %}',
    })
    assert [(p.path, p.line, p.message) for p in check_email(c, "a", marketing=False)] == [
        (at(root, "email/a.subject"), 1, "unknown filter 'shout'"),
        (at(root, "email/a.html"), 2, "template 'layouts/footer.html' not found"),
    ]


def test_marketing_email_needs_the_unsubscribe_link(root: Path) -> None:
    c = catalog(root, email("promo", "<p>Buy</p>\n{% endblock %}{% block unsubscribe %}"))
    problem = Problem(at(root, "email/promo.html"), None,
                      "marketing email has no unsubscribe link ({{ links.unsubscribe }})")
    assert check_email(c, "promo") == [problem]
    assert check_email(c, "promo", marketing=False) == []


def test_marketing_email_text_part_needs_the_unsubscribe_link(root: Path) -> None:
    c = catalog(root, {**email("promo", "<p>Buy</p>"), "email/promo.txt": "Buy"})
    assert [(p.path, p.message) for p in check_email(c, "promo")] == [
        (at(root, "email/promo.txt"),
         "marketing email has no unsubscribe link ({{ links.unsubscribe }})"),
    ]


def test_sms_over_the_segment_limit(root: Path) -> None:
    c = catalog(root, {"sms/long.fr.txt": "Votre essai est prêt, " * 3, "sms/long.en.txt": "ok"})
    problems = check(c, "sms", "long", marketing=True, max_sms_segments=1, stop_mention=STOP)
    assert [(p.path, p.message) for p in problems] == [(
        at(root, "sms/long.fr.txt"),
        "SMS is 2 segments (UCS-2, because of 'ê') with the sample contact and STOP mention; "
        "the limit is 1",
    )]


def test_stop_mention_counts_towards_the_segment_limit(root: Path) -> None:
    c = catalog(root, {"sms/edge.txt": "a" * 150})
    assert check(c, "sms", "edge", marketing=False, max_sms_segments=1) == []
    problems = check(c, "sms", "edge", marketing=True, max_sms_segments=1, stop_mention=STOP)
    assert messages(problems) == [
        "SMS is 2 segments (GSM-7) with the sample contact and STOP mention; the limit is 1"
    ]


def test_marketing_sms_without_a_stop_mention_for_its_locale(root: Path) -> None:
    c = catalog(root, {"sms/promo.fr.txt": "Promo", "sms/promo.en.txt": "Promo"})
    problems = check(c, "sms", "promo", marketing=True, max_sms_segments=1,
                       stop_mention={"de": "STOP an 12345"})
    assert messages(problems) == [
        "marketing SMS has no STOP mention (en)", "marketing SMS has no STOP mention (fr)",
    ]


@pytest.mark.parametrize(("source", "error"), [
    ("Hi\n{{ ''.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe."),
    ("Hi\n{{ 1 // 0 }}", "integer division or modulo by zero"),
])
def test_render_failure_with_the_sample_contact(root: Path, source: str, error: str) -> None:
    c = catalog(root, {"sms/boom.txt": source})
    problems = check(c, "sms", "boom", marketing=False, max_sms_segments=1)
    assert [(p.path, p.line) for p in problems] == [(at(root, "sms/boom.txt"), 2)]
    assert problems[0].message == f"does not render with the sample contact: {error}"


def test_a_fallback_shared_by_two_locales_is_reported_once(root: Path) -> None:
    c = catalog(root, email("shared", "{{ contact.nickname }}"))
    problems = check_email(c, "shared")
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (3, "undefined variable 'contact.nickname'"),
    ]


def test_attribute_names_extend_the_contact_fields(root: Path) -> None:
    files = email("attr", "{{ contact.industry | default('your trade') }}")
    strict = catalog(root, files)
    assert messages(check_email(strict, "attr"))[0].startswith(
        "undefined variable 'contact.industry'")
    relaxed = TemplateCatalog(root, default_locale="en", locales=["en"],
                              attribute_names=["industry"])
    assert check_email(relaxed, "attr") == []


# --- attributes printed with nothing for a contact who has none ------------------------------


def warnings(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(p.line, p.message.split(" prints nothing")[0]) for p in problems
            if p.severity == Problem.WARNING]


def test_an_attribute_printed_bare_is_a_warning_at_its_line(root: Path) -> None:
    """"Thanks for joining, !" went out: an empty first name printed as it is."""
    body = """<p>Thanks for joining, {{ contact.first_name }}!</p>
<p>{{ contact.company|upper }} {{ "Hi " ~ contact["first_name"] }}</p>"""
    c = catalog(root, email("bare", body, subject="Hi {{ contact.first_name }}"))
    problems = check_email(c, "bare")
    assert warnings(problems) == [
        (1, "{{ contact.first_name }}"),
        (3, "{{ contact.first_name }}"), (4, "{{ contact.company }}"),
        (4, "{{ contact.first_name }}"),
    ]
    assert all(p.is_error is False for p in problems)
    assert problems[0].message == (
        "{{ contact.first_name }} prints nothing for a contact without first_name: write "
        "{{ contact.first_name | default('...') }} or put it inside "
        "{% if contact.first_name %}...{% endif %}")
    assert str(problems[0]).startswith(f"{at(root, 'email/bare.subject')}:1: warning: ")


def test_a_fallback_or_a_test_of_the_attribute_is_enough(root: Path) -> None:
    body = """{% if contact.first_name %}Hi {{ contact.first_name|title }}{% endif %}
{{ contact.first_name or "there" }} {{ contact.company | default("your team") }}
{{ contact.company|d("you") }} {{ contact.company if contact.company else "you" }}
{% if not contact.company %}Hello{% else %}{{ contact.company }}{% endif %}
{% if contact.score > 3 %}{% elif contact.first_name %}{{ contact.first_name }}{% endif %}
{{ [contact.first_name, contact.company]|select|join(" ") }} {{ contact.email }}"""
    c = catalog(root, email("fine", body))
    assert warnings(check_email(c, "fine")) == []


def test_the_wrong_branch_of_a_test_is_still_a_warning(root: Path) -> None:
    body = """{% if contact.first_name %}Hi{% else %}Hi {{ contact.first_name }}{% endif %}
{% if contact.company %}{{ contact.first_name }}{% endif %}"""
    c = catalog(root, email("wrong", body))
    assert warnings(check_email(c, "wrong")) == [(3, "{{ contact.first_name }}"),
                                                 (4, "{{ contact.first_name }}")]


# --- every declared locale -------------------------------------------------------------------


def test_a_locale_falling_back_to_another_language_is_a_missing_translation(root: Path) -> None:
    c = catalog(root, {**email("guide.en", "<p>Hi</p>"), **email("plain", "<p>Hi</p>"),
                       "sms/ping.en.txt": "Ping", "sms/ping.fr.txt": "Ping"})
    assert missing_translations(c, "email", "guide") == [
        "email template 'guide' has no 'fr' version: contacts in 'fr' get the 'en' one (add "
        "templates/email/guide.fr.subject and templates/email/guide.fr.html)"]
    # an unlocalized template is written for every locale; a complete one misses nothing
    assert missing_translations(c, "email", "plain") == []
    assert missing_translations(c, "sms", "ping") == []


# --- SMS with a name outside GSM-7 -----------------------------------------------------------

WEBINAR = ("Hi{% if contact.first_name %} {{ contact.first_name }}{% endif %}, our planning "
           "webinar is on Tuesday at 10:00: an hour on rotas, leave and part-time staff. "
           "Seats: acme.example/w")


def test_an_sms_within_budget_for_camille_may_not_be_for_jerome(root: Path) -> None:
    c = catalog(root, {"sms/webinar.txt": WEBINAR})
    assert check(c, "sms", "webinar", marketing=False, max_sms_segments=2) == []
    problems = check(c, "sms", "webinar", marketing=False, max_sms_segments=1)
    assert [(p.severity, p.message) for p in problems] == [(Problem.WARNING, (
        "SMS is 2 segments (UCS-2) for a contact with a name outside GSM-7 (contact.first_name "
        "= 'Jérôme'); the limit is 1, so such contacts get no SMS (too_long): shorten the "
        "text"))]
    # already over for Camille: that error says it, once
    c = catalog(root, {"sms/webinar.txt": WEBINAR + " " + WEBINAR})
    problems = check(c, "sms", "webinar", marketing=False, max_sms_segments=1)
    assert [p.severity for p in problems] == [Problem.ERROR]


def test_an_sms_without_personalisation_has_no_name_to_fear(root: Path) -> None:
    c = catalog(root, {"sms/static.txt": "a" * 150})
    assert check(c, "sms", "static", marketing=False, max_sms_segments=1) == []
