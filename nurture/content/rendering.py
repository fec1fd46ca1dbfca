"""Sandboxed Jinja2 rendering of marketer-written email and SMS templates.

Templates are written by marketers, not trusted code: they run in an immutable sandbox
with a budget of work and size per render (nurture/content/sandbox.py), see only the
names in `CONTEXT_NAMES`, and fail loudly (StrictUndefined) instead of sending "Hello ,"
to 100k contacts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2.runtime import new_context

from nurture.content.sandbox import BoundedSandbox, budgeted
from nurture.errors import TemplateError

CONTACT_CORE_FIELDS: tuple[str, ...] = (
    "email", "phone", "locale", "timezone", "country", "stage", "temperature", "score",
)
#: the attributes templates may read on each top-level name (`contact` adds config attributes)
CONTEXT_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "contact": frozenset(CONTACT_CORE_FIELDS),
    "sender": frozenset({"company", "postal_address", "email_from"}),
    "links": frozenset({"unsubscribe", "preferences", "confirm"}),
    "message": frozenset({"id"}),
    "journey": frozenset({"id", "name"}),
}
CONTEXT_NAMES: frozenset[str] = frozenset(CONTEXT_ATTRIBUTES)

# GSM 03.38 (3GPP TS 23.038) default alphabet, in code-point order 0x00-0x7F (0x1B is ESC).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each is sent as ESC + char, so it costs 2 septets.
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM_ALL = _GSM_BASIC | _GSM_EXTENSION

_STOP_WORD = re.compile(r"\bSTOP\b", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")
_CHANNEL_PARTS = {"email": ("subject", "html"), "sms": ("txt",)}
_OPTIONAL_PARTS = {"email": ("txt",), "sms": ()}
#: the text part: links shown, table cells kept apart by a visible separator (runs of
#: spaces alone get collapsed on the way, and two cells then read as one word)
_TEXT_CONFIG = ParserConfig(display_links=True, table_cell_separator=" | ")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale: str


@dataclass(frozen=True)
class RenderedSms:
    text: str
    segments: int
    #: "GSM-7" or "UCS-2"
    encoding: str
    locale: str


#: a character outside the basic GSM table (the common text has none: one septet each)
_NOT_GSM_BASIC = re.compile("[^" + "".join(re.escape(c) for c in sorted(_GSM_BASIC)) + "]")


def sms_segments(text: str) -> tuple[int, str]:
    """Count the segments an SMS is billed as, and the encoding that forces it."""
    if _NOT_GSM_BASIC.search(text) is None:
        return _count(len(text), None, 160, 153), "GSM-7"
    if _GSM_ALL.issuperset(text):
        extended = 0 if _GSM_EXTENSION.isdisjoint(text) else sum(
            text.count(c) for c in _GSM_EXTENSION)
        # an ESC + char pair is never split across two concatenated segments
        units = [2 if c in _GSM_EXTENSION else 1 for c in text] if extended else None
        return _count(len(text) + extended, units, 160, 153), "GSM-7"
    utf16 = len(text.encode("utf-16-le")) // 2
    # a surrogate pair (emoji) is never split across two concatenated segments
    units = [2 if ord(c) > 0xFFFF else 1 for c in text] if utf16 != len(text) else None
    return _count(utf16, units, 70, 67), "UCS-2"


def non_gsm_characters(text: str) -> str:
    """The characters that force an SMS into UCS-2, for error messages."""
    return "".join(sorted(set(text) - _GSM_ALL))


_LEGAL_FORM = re.compile(r"[\s,]+(sas|sasu|sarl|sa|eurl|snc|sci|scop|selarl|s\.a\.s\.?|s\.a\.?"
                         r"|inc\.?|ltd\.?|llc|llp|plc|corp\.?|gmbh|ag|bv|nv|sl|srl)$", re.I)


@lru_cache(maxsize=16)
def _brand(company: str) -> str:
    company = company.strip()
    return (_LEGAL_FORM.sub("", company) or company).casefold()


def with_sender(text: str, company: str) -> str:
    """The advertiser must be identifiable in every SMS (L34-5 CPCE): prefix the company
    name unless the text already names it (with or without its legal form, e.g. SAS)."""
    if not company.strip() or _brand(company) in text.casefold():
        return text
    return f"{company.strip()}: {text}"


def mentions_stop(text: str) -> bool:
    # every case-insensitive match of STOP casefolds to "stop": most texts stop here
    return "stop" in text.casefold() and _STOP_WORD.search(text) is not None


def _count(total: int, units: list[int] | None, single: int, part: int) -> int:
    if total <= single:
        return 1
    if units is None:
        return math.ceil(total / part)
    segments, used = 1, 0
    for size in units:
        if used + size > part:
            segments, used = segments + 1, 0
        used += size
    return segments


@dataclass(frozen=True)
class ResolvedTemplate:
    locale: str
    #: part ("subject", "html", "txt") -> path relative to the templates root
    files: Mapping[str, str]


class TemplateCatalog:
    """The templates under one root, compiled once and rendered many times."""

    def __init__(
        self,
        root: Path,
        *,
        default_locale: str,
        locales: Sequence[str],
        attribute_names: Iterable[str] = (),
        sender: str = "",
    ) -> None:
        self.root = Path(root)
        #: the advertiser's name, put in front of every SMS that does not name it
        self.sender = sender
        self.default_locale = default_locale
        self.locales = tuple(locales)
        self.attribute_names = tuple(attribute_names)
        self.known_attributes: Mapping[str, frozenset[str]] = {
            **CONTEXT_ATTRIBUTES,
            "contact": CONTEXT_ATTRIBUTES["contact"] | set(self.attribute_names),
        }
        self.environment = BoundedSandbox(
            loader=jinja2.FileSystemLoader(self.root),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: name is not None and name.endswith(".html"),
            auto_reload=False,
        )
        # remote stylesheets would let a template make the renderer fetch any URL
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
        self._resolved: dict[tuple[str, str, str], ResolvedTemplate] = {}
        #: path → the compiled template and its globals, flattened
        self._compiled: dict[str, tuple[jinja2.Template, dict[str, Any]]] = {}

    def path(self, relative: str) -> str:
        """The path of a template file as shown in errors (`templates/email/x.fr.html`)."""
        return os.path.normpath(os.path.join(self.root, relative))

    def resolve(self, channel: str, name: str, locale: str) -> str:
        """The locale actually used (unlocalized files count as the default locale)."""
        return self.resolve_files(channel, name, locale).locale

    def resolve_files(self, channel: str, name: str, locale: str) -> ResolvedTemplate:
        """The files (relative to the root) rendering `name` in `locale` would use."""
        key = (channel, name, locale)
        if key not in self._resolved:
            self._resolved[key] = self._find(channel, name, locale)
        return self._resolved[key]

    def _find(self, channel: str, name: str, locale: str) -> ResolvedTemplate:
        if channel not in _CHANNEL_PARTS:
            raise TemplateError(f"unknown channel {channel!r} (known: email, sms)")
        if not _NAME.fullmatch(name):
            raise TemplateError(f"invalid {channel} template name {name!r}")
        tried: list[str] = []
        for candidate in self._candidates(locale):
            suffix = f".{candidate}" if candidate else ""
            files = {p: f"{channel}/{name}{suffix}.{p}" for p in _CHANNEL_PARTS[channel]}
            present = {p: self._exists(rel) for p, rel in files.items()}
            if all(present.values()):
                for part in _OPTIONAL_PARTS[channel]:
                    if self._exists(rel := f"{channel}/{name}{suffix}.{part}"):
                        files[part] = rel
                return ResolvedTemplate(candidate or self.default_locale, files)
            if any(present.values()):
                missing = ", ".join(self.path(files[p]) for p, ok in present.items() if not ok)
                raise TemplateError(f"{channel} template {name!r} is incomplete: {missing} missing")
            tried.extend(self.path(rel) for rel in files.values())
        raise TemplateError(
            f"no {channel} template {name!r} for locale {locale!r} (tried: {', '.join(tried)})"
        )

    def _candidates(self, locale: str) -> list[str | None]:
        """Requested locale, its language ("fr" for "fr-CA"), default, then unlocalized."""
        wanted: list[str | None] = []
        if locale and _LOCALE.fullmatch(locale):
            wanted += [locale, re.split("[-_]", locale)[0]]
        wanted += [self.default_locale, None]
        return list(dict.fromkeys(wanted))

    def _exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def _render(self, relative: str, context: Mapping[str, Any]) -> str:
        try:
            return self._render_fast(relative, context)
        except jinja2.TemplateSyntaxError as e:
            where = self.path(e.name) if e.name else self.path(relative)
            raise TemplateError(f"{where}:{e.lineno}: {e.message}") from e
        except jinja2.TemplateNotFound as e:
            raise TemplateError(f"{self.path(relative)}: template {e.name!r} not found") from e
        except Exception as e:  # marketer code: any failure is a template failure
            path, line = self.locate(e, relative)
            raise TemplateError(f"{path}:{line or 1}: {type(e).__name__}: {e}") from e

    def _render_fast(self, relative: str, context: Mapping[str, Any]) -> str:
        """`Template.render`, minus its per-call work: the template is looked up once and
        its globals (a ChainMap, slow to copy: about a third of an SMS render) flattened
        once; the render's variables are one dict, built once."""
        compiled = self._compiled.get(relative)
        if compiled is None:
            template = self.environment.get_template(relative)
            compiled = self._compiled[relative] = (template, dict(template.globals))
        template, flat = compiled
        try:
            with budgeted():  # bounded work and size (nurture/content/sandbox.py)
                ctx = new_context(self.environment, template.name, template.blocks,
                                  {**flat, **context}, True, flat)
                return self.environment.concat(template.root_render_func(ctx))
        except Exception:
            self.environment.handle_exception()  # re-raises with template file:line frames

    def locate(self, error: BaseException, relative: str) -> tuple[str, int | None]:
        """The template file and line an exception was raised from (Jinja rewrites tracebacks)."""
        if isinstance(error, jinja2.TemplateSyntaxError):
            return self.path(error.name or relative), error.lineno
        root = self.root.resolve()
        found: tuple[str, int | None] = (self.path(relative), None)
        tb = error.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            template = not filename.endswith(".py") and not filename.startswith("<")
            if template and Path(filename).resolve().is_relative_to(root):
                found = (os.path.normpath(filename), tb.tb_lineno)
            tb = tb.tb_next
        return found

    @staticmethod
    def _only_context(context: Mapping[str, Any]) -> Mapping[str, Any]:
        """The names templates may see (the render copies them: the context is not)."""
        if context.keys() <= CONTEXT_NAMES:
            return context
        return {k: context[k] for k in CONTEXT_NAMES if k in context}

    def render_email(self, name: str, locale: str, context: Mapping[str, Any]) -> RenderedEmail:
        resolved = self.resolve_files("email", name, locale)
        ctx = self._only_context(context)
        subject = _one_line(self._render(resolved.files["subject"], ctx))
        try:
            html = self._inliner.inline(self._render(resolved.files["html"], ctx))
        except css_inline.InlineError as e:
            raise TemplateError(f"{self.path(resolved.files['html'])}: CSS: {e}") from e
        if "txt" in resolved.files:
            text = self._render(resolved.files["txt"], ctx)
        else:
            text = get_text(html, _TEXT_CONFIG)
        return RenderedEmail(subject, html, _tidy_text(text), resolved.locale)

    def render_sms(
        self,
        name: str,
        locale: str,
        context: Mapping[str, Any],
        *,
        stop_mention: str | None = None,
    ) -> RenderedSms:
        resolved = self.resolve_files("sms", name, locale)
        text = self._render(resolved.files["txt"], self._only_context(context)).rstrip()
        text = with_sender(text, self.sender)
        if stop_mention and not mentions_stop(text):
            text = f"{text} {stop_mention}" if text else stop_mention
        segments, encoding = sms_segments(text)
        return RenderedSms(text, segments, encoding, resolved.locale)

    def sample_context(
        self, locale: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A realistic context for previews and validation; `overrides` merge into contact."""
        french = locale.lower().startswith("fr")
        contact: dict[str, Any] = {
            "email": "camille.martin@example.com",
            "phone": "+33612345678",
            "locale": locale,
            "timezone": "Europe/Paris",
            "country": "FR",
            "stage": "lead",
            "temperature": "warm",
            "score": 42,
        }
        samples = _SAMPLE_ATTRIBUTES_FR if french else _SAMPLE_ATTRIBUTES_EN
        for attribute in self.attribute_names:
            contact.setdefault(attribute, samples.get(attribute, f"sample {attribute}"))
        contact.update(overrides or {})
        return {
            "contact": contact,
            "sender": {
                "company": "Acme Planning SAS",
                "postal_address": "12 rue de la Paix, 75002 Paris, France",
                "email_from": "Acme Planning <bonjour@acme-planning.example>",
            },
            "links": {
                "unsubscribe": "https://example.invalid/u/SAMPLE-UNSUBSCRIBE",
                "preferences": "https://example.invalid/p/SAMPLE-PREFERENCES",
                "confirm": "https://example.invalid/c/SAMPLE-CONFIRM",
            },
            "message": {"id": "SAMPLE-MESSAGE"},
            "journey": {"id": "sample-journey", "name": "Sample journey"},
        }

    def names(self, channel: str) -> list[str]:
        """Template names present on disk for a channel (localized or not)."""
        base = self.root / channel
        suffixes = (".subject", ".html") if channel == "email" else (".txt",)
        found: set[str] = set()
        for file in base.rglob("*") if base.is_dir() else ():
            if file.is_file() and file.suffix in suffixes:
                stem = file.relative_to(base).with_suffix("").as_posix()
                head, dot, tail = stem.rpartition(".")
                found.add(head if dot and _LOCALE.fullmatch(tail) else stem)
        return sorted(found)


def _one_line(text: str) -> str:
    """Join lines with a space; str.split() would also eat French non-breaking spaces."""
    return " ".join(filter(None, (line.strip(" \t") for line in text.splitlines())))


def _tidy_text(text: str) -> str:
    """Right-strip lines and collapse runs of blank lines (inscriptis keeps layout spacing)."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_SAMPLE_ATTRIBUTES_EN: Mapping[str, Any] = {
    "first_name": "Camille",
    "last_name": "Martin",
    "company": "Martin Logistics",
    "role": "Operations manager",
    "company_size": "50-200",
    "country": "FR",
    "industry": "Logistics",
}
_SAMPLE_ATTRIBUTES_FR: Mapping[str, Any] = {
    **_SAMPLE_ATTRIBUTES_EN,
    "company": "Martin Logistique",
    "role": "Responsable des opérations",
    "industry": "Logistique",
}
