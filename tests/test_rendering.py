from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from nurture.content import template_checks
from nurture.content.rendering import (
    CONTACT_CORE_FIELDS,
    CONTEXT_NAMES,
    RenderedEmail,
    TemplateCatalog,
    sms_segments,
)
from nurture.errors import TemplateError

ATTRIBUTES = ("first_name", "last_name", "company", "role", "company_size", "country", "industry")
STOP = {"fr": "STOP au 36111", "en": "Reply STOP to opt out"}
SHIPPED = Path(__file__).resolve().parent.parent / "templates"
LAYOUT = """<html><head><style>p { color: red; } .muted { color: grey; }</style></head>
<body>{% block content %}{% endblock %}
<p class="muted">{{ sender.company }}, {{ sender.postal_address }}
<a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def catalog_with(tmp_path: Path, files: dict[str, str]) -> TemplateCatalog:
    root = write(tmp_path / "templates", {"layouts/email.en.html": LAYOUT, **files})
    return TemplateCatalog(root, default_locale="en", locales=["en", "fr"],
                           attribute_names=ATTRIBUTES)


def email(body: str, subject: str = "Hello {{ contact.first_name }}") -> dict[str, str]:
    return {
        "subject": subject,
        "html": '{% extends "layouts/email.en.html" %}{% block content %}' + body
        + "{% endblock %}",
    }


def email_files(name: str, body: str, **extra: str) -> dict[str, str]:
    return {f"email/{name}.{part}": text for part, text in {**email(body), **extra}.items()}


# --- SMS segments -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("", (1, "GSM-7")),
    ("a" * 160, (1, "GSM-7")),
    ("a" * 161, (2, "GSM-7")),
    ("a" * 306, (2, "GSM-7")),
    ("a" * 307, (3, "GSM-7")),
    ("a" * 459, (3, "GSM-7")),
    ("a" * 460, (4, "GSM-7")),
    ("€" * 80, (1, "GSM-7")),  # 160 septets: extension characters count 2
    ("€" * 80 + "a", (2, "GSM-7")),
    ("{}[]" * 20 + "a", (2, "GSM-7")),
    ("^~|\\" * 20, (1, "GSM-7")),
    ("^~|\\" * 20 + "\f", (2, "GSM-7")),
    ("é" * 160, (1, "GSM-7")),
    ("ê" + "a" * 69, (1, "UCS-2")),
    ("ê" + "a" * 70, (2, "UCS-2")),
    ("ê" + "a" * 133, (2, "UCS-2")),
    ("ê" + "a" * 134, (3, "UCS-2")),
    ("😀" * 35, (1, "UCS-2")),  # an emoji is two UTF-16 code units
    ("😀" * 35 + "a", (2, "UCS-2")),
])
def test_sms_segments_at_the_boundaries(text: str, expected: tuple[int, str]) -> None:
    assert sms_segments(text) == expected


def test_an_escape_pair_is_never_split_between_segments() -> None:
    # 306 septets would fit in 2 × 153, but the € at septet 153 moves to the next segment
    assert sms_segments("a" * 152 + "€" + "a" * 152) == (3, "GSM-7")
    assert sms_segments("a" * 151 + "€" + "a" * 153) == (2, "GSM-7")


def test_a_surrogate_pair_is_never_split_between_segments() -> None:
    assert sms_segments("ê" * 66 + "😀" + "ê" * 66) == (3, "UCS-2")
    assert sms_segments("ê" * 65 + "😀" + "ê" * 67) == (2, "UCS-2")


@pytest.mark.parametrize("char", list("éèùìòÇØøÅåÄÖÑÜ§¿äöñüàÉ£¥ÆæßΔ"))
def test_french_and_european_letters_of_the_gsm_alphabet(char: str) -> None:
    assert sms_segments(f"Caf{char} " * 5) == (1, "GSM-7")


@pytest.mark.parametrize("char", [*"çâêîôûëïœÀÈ", "\u2019", "\u00a0", "«"])
def test_characters_outside_gsm_force_ucs2(char: str) -> None:
    assert sms_segments(f"Bonjour {char}") == (1, "UCS-2")


# --- locale fallback --------------------------------------------------------------------

@pytest.fixture
def localized(tmp_path: Path) -> TemplateCatalog:
    return catalog_with(tmp_path, {
        **email_files("both.fr", "<p>Bonjour</p>"),
        **email_files("both.en", "<p>Hello</p>"),
        **email_files("english", "<p>Hello</p>"),  # unlocalized
        **email_files("only.en", "<p>Hello</p>"),
        "sms/ping.txt": "Ping",
        "email/broken.en.subject": "Subject without a body",
    })


def test_locale_fallback_chain(localized: TemplateCatalog) -> None:
    assert localized.resolve("email", "both", "fr") == "fr"
    assert localized.resolve("email", "both", "fr-CA") == "fr"
    assert localized.resolve("email", "only", "fr") == "en"
    assert localized.resolve("email", "english", "fr") == "en"
    assert localized.resolve("sms", "ping", "fr") == "en"
    rendered = localized.render_email("only", "fr", localized.sample_context("fr"))
    assert rendered.locale == "en" and "Hello" in rendered.html


def test_missing_template_names_every_file_tried(localized: TemplateCatalog) -> None:
    with pytest.raises(TemplateError) as e:
        localized.resolve("email", "nowhere", "fr")
    for tried in ("nowhere.fr.html", "nowhere.en.html", "nowhere.html", "nowhere.subject"):
        assert tried in str(e.value)


def test_incomplete_and_invalid_names_are_errors(localized: TemplateCatalog) -> None:
    with pytest.raises(TemplateError, match="incomplete.*broken.en.html"):
        localized.resolve("email", "broken", "en")
    with pytest.raises(TemplateError, match="invalid"):
        localized.resolve("email", "../layouts/email", "en")


def test_names_lists_localized_and_unlocalized_templates(localized: TemplateCatalog) -> None:
    assert localized.names("email") == ["both", "broken", "english", "only"]
    assert localized.names("sms") == ["ping"]


# --- email rendering --------------------------------------------------------------------

def test_text_part_is_generated_from_the_final_html(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, email_files("a", "<h1>Your guide</h1><p>Read it</p>"))
    rendered = catalog.render_email("a", "en", catalog.sample_context("en"))
    assert isinstance(rendered, RenderedEmail)
    assert "Your guide" in rendered.text and "Read it" in rendered.text
    assert "<p" not in rendered.text and "color" not in rendered.text
    assert "https://example.invalid/u/SAMPLE-UNSUBSCRIBE" in rendered.text  # links are kept


def test_text_part_template_is_used_when_present(tmp_path: Path) -> None:
    files = email_files("a", "<p>HTML</p>", txt="Plain {{ contact.first_name }} & co")
    catalog = catalog_with(tmp_path, files)
    rendered = catalog.render_email("a", "en", catalog.sample_context("en"))
    assert rendered.text == "Plain Camille & co"


def test_css_is_inlined_and_remote_stylesheets_are_not_fetched(tmp_path: Path) -> None:
    body = '<link rel="stylesheet" href="http://127.0.0.1:9/x.css"><p>Hi</p>'
    catalog = catalog_with(tmp_path, email_files("a", body))
    html = catalog.render_email("a", "en", catalog.sample_context("en")).html
    assert '<p style="color: red;">Hi</p>' in html
    assert 'class="muted" style="color: grey;"' in html
    assert "<style>" not in html


def test_html_is_escaped_but_subject_and_sms_are_not(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, {
        **email_files("a", "<p>Hi {{ contact.first_name }}</p>"),
        "sms/a.txt": "Hi {{ contact.first_name }}",
    })
    context = catalog.sample_context("en", {"first_name": "<script>x</script> & Co"})
    rendered = catalog.render_email("a", "en", context)
    assert "Hi &lt;script&gt;x&lt;/script&gt; &amp; Co" in rendered.html
    assert "<script>" not in rendered.html
    assert rendered.subject == "Hello <script>x</script> & Co"
    assert catalog.render_sms("a", "en", context).text == "Hi <script>x</script> & Co"


def test_subject_is_one_line_and_keeps_non_breaking_spaces(tmp_path: Path) -> None:
    files = email_files("a", "<p>x</p>")
    files["email/a.subject"] = "{{ contact.company }}\u00a0?\n\n  On y va\n"
    catalog = catalog_with(tmp_path, files)
    context = catalog.sample_context("en", {"company": "Acme\r\nBcc: x@example.com"})
    subject = catalog.render_email("a", "en", context).subject
    assert subject == "Acme Bcc: x@example.com\u00a0? On y va"


def test_strict_undefined_and_unknown_context_names(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, {
        "sms/nick.txt": "Hi {{ contact.nickname }}",
        "sms/secret.txt": "{{ secret }}",
    })
    context = {**catalog.sample_context("en"), "secret": "s3cr3t"}
    with pytest.raises(TemplateError, match=r"sms/nick.txt:1: .*nickname") as e:
        catalog.render_sms("nick", "en", context)
    assert isinstance(e.value.__cause__, UndefinedError)
    with pytest.raises(TemplateError, match="'secret' is undefined"):  # only CONTEXT_NAMES pass
        catalog.render_sms("secret", "en", context)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ contact.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ ''.format.__self__ }}",
    "{{ joiner.__call__.__globals__['os'] }}",
    "{% set x = contact.update({'email': 'evil@example.com'}) %}",  # immutable sandbox
])
def test_sandbox_escapes_fail_with_template_error(tmp_path: Path, source: str) -> None:
    catalog = catalog_with(tmp_path, {"sms/evil.txt": "Hi\n" + source})
    with pytest.raises(TemplateError, match=r"sms/evil.txt:2: ") as e:
        catalog.render_sms("evil", "en", catalog.sample_context("en"))
    assert isinstance(e.value.__cause__, SecurityError | UndefinedError)


def test_syntax_error_in_layout_names_the_layout_and_line(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, email_files("a", "<p>x</p>"))
    (catalog.root / "layouts/email.en.html").write_text("<p>\n{% if %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"layouts/email.en.html:2: ") as e:
        catalog.render_email("a", "en", catalog.sample_context("en"))
    assert isinstance(e.value.__cause__, jinja2.TemplateSyntaxError)


# --- SMS rendering ----------------------------------------------------------------------

@pytest.mark.parametrize(("source", "text"), [
    ("Essai prêt  \n\n", "Essai prêt STOP au 36111"),
    ("Nonstop planning", "Nonstop planning STOP au 36111"),  # not the word STOP
    ("Répondez Stop pour arrêter", "Répondez Stop pour arrêter"),
])
def test_stop_mention_is_appended_once(tmp_path: Path, source: str, text: str) -> None:
    catalog = catalog_with(tmp_path, {"sms/a.fr.txt": source})
    sms = catalog.render_sms("a", "fr", catalog.sample_context("fr"), stop_mention=STOP["fr"])
    assert (sms.text, sms.locale) == (text, "fr")
    assert (sms.segments, sms.encoding) == (1, "UCS-2" if "ê" in text else "GSM-7")


def test_templates_compile_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = catalog_with(tmp_path, {"sms/a.txt": "Hi {{ contact.first_name }}"})
    loads: list[str] = []
    original = jinja2.FileSystemLoader.get_source

    def counting(self: jinja2.FileSystemLoader, env: jinja2.Environment, name: str):  # type: ignore[no-untyped-def]
        loads.append(name)
        return original(self, env, name)

    monkeypatch.setattr(jinja2.FileSystemLoader, "get_source", counting)
    for first_name in ("Camille", "Lou", "Inès"):
        context = catalog.sample_context("en", {"first_name": first_name})
        assert catalog.render_sms("a", "en", context).text == f"Hi {first_name}"
    assert loads == ["sms/a.txt"]
    assert catalog.environment.cache is not None and len(catalog.environment.cache) == 1


# --- sample context ---------------------------------------------------------------------

def test_sample_context_has_every_name_and_attribute(tmp_path: Path) -> None:
    catalog = TemplateCatalog(tmp_path, default_locale="en", locales=["en", "fr"],
                              attribute_names=[*ATTRIBUTES, "loyalty_tier"])
    context = catalog.sample_context("fr", {"first_name": "Inès", "plan": "pro"})
    assert set(context) == CONTEXT_NAMES
    assert set(CONTACT_CORE_FIELDS) | {*ATTRIBUTES, "loyalty_tier"} <= set(context["contact"])
    assert context["contact"]["first_name"] == "Inès"
    assert context["contact"]["last_name"] == "Martin"
    assert context["contact"]["plan"] == "pro"
    assert context["contact"]["locale"] == "fr"
    assert context["links"]["unsubscribe"].startswith("https://example.invalid/u/SAMPLE")
    assert set(context["links"]) == {"unsubscribe", "preferences", "confirm"}


# --- the templates we ship --------------------------------------------------------------

SHIPPED_EMAILS = {
    "cold/welcome-guide": True, "cold/article-best-practices": True,
    "cold/newsletter-digest": True, "cold/guide-reminder": True,
    "warm/comparison": True, "warm/webinar-invite": True,
    "hot/trial-offer": True, "hot/pricing-guide": True,
    "prospect/case-study": True, "prospect/testimonials": True, "prospect/trial-offer": True,
    "consent/confirm": False, "sales/handoff-notification": False,
}
SHIPPED_SMS = ("hot/trial-reminder", "prospect/call-me")


def test_shipped_templates_pass_validation_and_render() -> None:
    catalog = TemplateCatalog(SHIPPED, default_locale="en", locales=["en", "fr"],
                              attribute_names=ATTRIBUTES)
    assert catalog.names("email") == sorted(SHIPPED_EMAILS)
    assert catalog.names("sms") == sorted(SHIPPED_SMS)
    problems = [
        *(p for name, marketing in SHIPPED_EMAILS.items()
          for p in template_checks.check(catalog, "email", name, marketing=marketing,
                                         max_sms_segments=3)),
        *(p for name in SHIPPED_SMS
          for p in template_checks.check(catalog, "sms", name, marketing=True, max_sms_segments=3,
                                 stop_mention=STOP)),
    ]
    assert problems == []
    for locale in ("en", "fr"):
        context = catalog.sample_context(locale)
        for name, marketing in SHIPPED_EMAILS.items():
            rendered = catalog.render_email(name, locale, context)
            assert rendered.locale == locale
            assert f'lang="{locale}"' in rendered.html and "Acme Planning SAS" in rendered.html
            assert rendered.subject and "\n" not in rendered.subject
            assert (context["links"]["unsubscribe"] in rendered.html) is marketing
        for name in SHIPPED_SMS:
            sms = catalog.render_sms(name, locale, context, stop_mention=STOP[locale])
            assert (sms.segments, sms.encoding) == (1, "GSM-7"), sms.text
            assert sms.text.endswith(STOP[locale]) and "Acme Planning" in sms.text


def test_double_opt_in_links_to_the_confirmation_url() -> None:
    catalog = TemplateCatalog(SHIPPED, default_locale="en", locales=["en", "fr"],
                              attribute_names=ATTRIBUTES)
    for locale in ("en", "fr"):
        rendered = catalog.render_email("consent/confirm", locale, catalog.sample_context(locale))
        assert 'href="https://example.invalid/c/SAMPLE-CONFIRM"' in rendered.html


@pytest.mark.parametrize("expression", ["'a' * 10**9", "10 ** 100000", "[1] * 200000"])
def test_templates_cannot_exhaust_memory_or_cpu(tmp_path: Path, expression: str) -> None:
    sms = tmp_path / "sms"
    sms.mkdir()
    (sms / "boom.en.txt").write_text("{{ " + expression + " }}")
    catalog = TemplateCatalog(tmp_path, default_locale="en", locales=["en"])
    with pytest.raises(TemplateError, match="SecurityError"):
        catalog.render_sms("boom", "en", catalog.sample_context("en"))


def test_small_products_still_work(tmp_path: Path) -> None:
    sms = tmp_path / "sms"
    sms.mkdir()
    (sms / "ok.en.txt").write_text("{{ '-' * 3 }}{{ 2 ** 3 }}")
    catalog = TemplateCatalog(tmp_path, default_locale="en", locales=["en"])
    assert catalog.render_sms("ok", "en", catalog.sample_context("en")).text == "---8"


def test_a_missing_number_attribute_printed_bare_renders_nothing(tmp_path: Path) -> None:
    """`{{ contact.company_size }}` for a contact without one: empty, not "None"."""
    from nurture.content.sandbox import BoundedSandbox

    env = BoundedSandbox()
    assert env.from_string("[{{ size }}]").render(size=None) == "[]"
    assert env.from_string("[{{ size }}]").render(size=0) == "[0]"
