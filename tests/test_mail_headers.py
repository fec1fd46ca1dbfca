"""Mail that lands: the bytes our emails go out as, read the way receiving servers and
spam filters read them (headers, ids in links, the text part, the templates we ship)."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from nurture.compliance.tokens import Links
from nurture.content.context import template_context
from nurture.engine import send
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.providers.memory import MemoryProvider
from nurture.providers.outbox import OutboxProvider, build_email
from nurture.services import contacts
from nurture.store import queries as store
from tests.fakes import add_contact

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Paris
REPO = Path(__file__).resolve().parent.parent
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")
#: what spam filters take for a cryptocurrency address (SpamAssassin's and rspamd's
#: rules are of this shape): Bitcoin/Litecoin base58, bech32, Ethereum
CRYPTO_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9])(?:[13LM][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[ac-hj-np-z02-9]{11,71}"
    r"|0x[0-9a-fA-F]{40})(?![A-Za-z0-9])")
ATTRIBUTES = {"first_name": "Jérôme", "last_name": "Lefèvre", "company": "Boulangeries Müller",
              "role": "Directeur des opérations", "company_size": 120,
              "industry": "Agroalimentaire"}


def header_block(raw: bytes) -> str:
    return raw.split(b"\n\n", 1)[0].decode("ascii")


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def compose(rt: Runtime, cid: int, template: str, locale: str, purpose: str,
            journey: Any = None) -> bytes:
    """One email through the send path's composer, as the outbox (and SMTP) write it."""
    with rt.db.begin() as conn:
        contact = store.load_contacts(conn, [cid])[cid]
    public_id = send.new_public_id(NOW)
    links = {"unsubscribe": rt.links.unsubscribe_url(public_id),
             "preferences": rt.links.unsubscribe_url(public_id),
             "confirm": rt.links.confirm_url(7, "a-nonce")}
    context = template_context(rt.settings, contact, links, public_id, journey)
    composed = send.compose_email(rt.settings, rt.catalog, template=template, contact=contact,
                                  context=context, purpose=purpose, public_id=public_id,
                                  now=NOW, locale=locale)
    return bytes(build_email(composed.message).as_bytes())


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime("", copy_journeys=True)


def french_contact(rt: Runtime, address: str = "jerome@example.com") -> int:
    with rt.db.begin() as conn:
        return contacts.add_contact(conn, rt.settings, NOW, email=address, locale="fr",
                                    attributes=ATTRIBUTES)


# ---- headers --------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_encoded_words_stay_within_75_characters_on_every_shipped_subject(
        rt: Runtime, locale: str) -> None:
    cid = french_contact(rt)
    names = rt.catalog.names("email")
    assert "warm/comparison" in names and "prospect/case-study" in names
    for name in names:
        raw = compose(rt, cid, name, locale, "newsletter")
        headers = header_block(raw)
        words = ENCODED_WORD.findall(headers)
        assert all(len(word) <= 75 for word in words), (name, max(words, key=len))
        # RFC 2047: a line holding an encoded-word is 76 characters at most
        assert all(len(line) <= 76 for line in headers.splitlines()
                   if ENCODED_WORD.search(line)), name
        subject = rt.catalog.render_email(name, locale, template_context(
            rt.settings, store_view(rt, cid), {"unsubscribe": "u", "preferences": "p",
                                               "confirm": "c"}, "id", None)).subject
        assert parsed(raw)["Subject"] == subject  # decoded, as a mail client shows it


def store_view(rt: Runtime, cid: int) -> Any:
    with rt.db.begin() as conn:
        return store.load_contacts(conn, [cid])[cid]


def test_french_subjects_really_are_encoded(rt: Runtime) -> None:
    """The test above would pass on ASCII subjects alone: these two need encoded-words."""
    cid = french_contact(rt)
    for name in ("warm/comparison", "prospect/case-study"):
        assert ENCODED_WORD.search(header_block(compose(rt, cid, name, "fr", "newsletter")))


def test_list_unsubscribe_stays_one_unbroken_ascii_line(rt: Runtime) -> None:
    cid = french_contact(rt)
    headers = header_block(compose(rt, cid, "warm/comparison", "fr", "marketing"))
    [line] = [line for line in headers.splitlines() if line.startswith("List-Unsubscribe:")]
    assert "=?" not in line
    assert re.fullmatch(r"List-Unsubscribe: <https://nurture\.test/u/[\w.-]+>", line), line
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers.splitlines()


def test_list_id_per_purpose_and_feedback_id_on_every_email(rt: Runtime) -> None:
    cid = french_contact(rt)
    newsletter = parsed(compose(rt, cid, "cold/welcome-guide", "en", "newsletter",
                                rt.journeys["cold-education"].journey))
    assert newsletter["List-Id"] == '"Newsletter and educational content" ' \
                                    "<newsletter.list-id.acme.test>"
    assert newsletter["Feedback-ID"] == "cold/welcome-guide:cold-education:newsletter:acme.test"
    sales = parsed(compose(rt, cid, "prospect/case-study", "en", "sales"))
    assert sales["List-Id"] == '"Direct sales outreach" <sales.list-id.acme.test>'
    assert sales["Feedback-ID"] == "prospect/case-study:journey:sales:acme.test"
    # Gmail reads at most four colon-separated fields, the last naming the sender
    assert len(sales["Feedback-ID"].split(":")) == 4
    # a confirmation someone asked for belongs to no list
    confirmation = parsed(compose(rt, cid, "consent/confirm", "en", "transactional"))
    assert "List-Id" not in confirmation and "List-Unsubscribe" not in confirmation
    assert confirmation["Feedback-ID"].endswith(":transactional:acme.test")


def test_an_idn_recipient_gets_an_ascii_to_header(rt: Runtime) -> None:
    cid = french_contact(rt, "jose@münchen.de")
    raw = compose(rt, cid, "cold/welcome-guide", "fr", "newsletter")
    [to] = [line for line in header_block(raw).splitlines() if line.startswith("To:")]
    assert to == "To: jose@xn--mnchen-3ya.de"
    assert parsed(raw)["To"].addresses[0].domain == "xn--mnchen-3ya.de"


def test_an_idn_sender_and_display_names_are_well_formed(rt: Runtime) -> None:
    message = send.OutgoingMessage(
        "id-1", "email", "José Müller <jose@münchen.de>", "Équipe Acme <bonjour@acmé.fr>",
        subject="Bonjour", text="Bonjour", reply_to="reponses@acmé.fr")
    raw = bytes(build_email(message).as_bytes())
    mail = parsed(raw)
    assert mail["To"].addresses[0].display_name == "José Müller"
    assert mail["To"].addresses[0].addr_spec == "jose@xn--mnchen-3ya.de"
    assert mail["From"].addresses[0].addr_spec == "bonjour@xn--acm-dma.fr"
    assert mail["Reply-To"].addresses[0].addr_spec == "reponses@xn--acm-dma.fr"
    assert mail["Message-ID"] == "<id-1@xn--acm-dma.fr>"
    assert "@=?" not in header_block(raw) and not mail.defects


def test_a_journey_email_from_the_daemon_carries_it_all(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    rt = make_runtime("", copy_journeys=True, providers={"email": OutboxProvider(outbox),
                                                         "sms": MemoryProvider()})
    add_contact(rt, NOW, "jose@münchen.de", locale="fr")
    tick(rt, NOW)
    [path] = sorted((outbox / "email").glob("*.eml"))
    raw = path.read_bytes()
    mail = parsed(raw)
    assert mail["To"] == "jose@xn--mnchen-3ya.de"
    assert mail["List-Id"].endswith("<newsletter.list-id.acme.test>")
    assert mail["Feedback-ID"] == "cold/welcome-guide:cold-education:newsletter:acme.test"
    assert all(len(w) <= 75 for w in ENCODED_WORD.findall(header_block(raw)))


# ---- ids and tokens in links ------------------------------------------------------------


def test_no_message_id_or_link_token_reads_as_a_crypto_address() -> None:
    """31 hex digits in a row (the id's old shape) matched in about 1 email in 7."""
    links = Links("a-real-secret-key-0123456789", "https://app.acme.test")
    found = []
    for i in range(3000):
        public_id = send.new_public_id(NOW + timedelta(milliseconds=i))
        url = links.unsubscribe_url(public_id)
        confirm = links.confirm_url(10_000 + i, f"nonce-{public_id}")
        for text in (public_id, url, confirm, f"reply+{public_id}@reply.acme.test"):
            found += CRYPTO_ADDRESS.findall(text)
            # the property that makes it hold whatever the rule: no long runs at all
            assert max(map(len, re.findall(r"[A-Za-z0-9]+", text))) <= 13, text
        assert links.message_id_from(url.rsplit("/", 1)[1]) == public_id
        assert links.request_from(confirm.rsplit("/", 1)[1]) == (10_000 + i, f"nonce-{public_id}")
    assert found == []


def test_ids_stay_time_ordered_and_random() -> None:
    ids = [send.new_public_id(NOW + timedelta(seconds=s)) for s in (0, 0.001, 1, 3600, 1e8)]
    assert ids == sorted(ids)
    assert len({send.new_public_id(NOW) for _ in range(1000)}) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{11}-[0-9a-f]{10}-[0-9a-f]{10}", i) for i in ids)


def test_links_sent_before_still_work() -> None:
    """Unsubscribe links never expire: the ones already in inboxes keep their shape."""
    links = Links("a-real-secret-key-0123456789", "https://app.acme.test")
    old_id = "19cb7f2e3a1b2c3d4e5f60718293a4b"
    old_token = links._unsubscribe.sign(old_id).decode()  # the previous shape: ID.SIGNATURE
    assert links.message_id_from(old_token) == old_id
    old_confirm = links._confirm.dumps([3, "nonce"])
    assert links.request_from(old_confirm) == (3, "nonce")


# ---- the text part and the templates we ship ------------------------------------------


def test_table_cells_stay_apart_in_the_text_part(rt: Runtime) -> None:
    cid = french_contact(rt)
    text = parsed(compose(rt, cid, "warm/comparison", "fr", "marketing")).get_body(
        ("plain",)).get_content()
    assert re.search(r"mercredi\s+\|\s+Toujours", text), text
    assert "Tableur ou Acme Planning, tâche par tâche" in text  # the caption, for context


class _Tables(HTMLParser):
    """Each table of a page: its role and the cells, captions and scopes it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._open.append({"role": dict(attrs).get("role"), "th": [], "caption": False})
            self.tables.append(self._open[-1])
        elif tag == "th" and self._open:
            self._open[-1]["th"].append(dict(attrs).get("scope"))
        elif tag == "caption" and self._open:
            self._open[-1]["caption"] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._open:
            self._open.pop()


def test_only_layout_tables_are_presentational(rt: Runtime) -> None:
    cid = french_contact(rt)
    data_tables = 0
    for name in rt.catalog.names("email"):
        for locale in ("fr", "en"):
            html = parsed(compose(rt, cid, name, locale, "newsletter")).get_body(
                ("html",)).get_content()
            parser = _Tables()
            parser.feed(html)
            for table in parser.tables:
                if table["role"] == "presentation":  # layout: no headers, no caption
                    assert not table["th"] and not table["caption"], name
                else:  # data: a caption, and every header says what it heads
                    data_tables += 1
                    assert table["caption"] and table["th"], name
                    assert set(table["th"]) <= {"col", "row"}, (name, table["th"])
    assert data_tables == 6  # comparison, pricing, handoff notification, in two languages


#: what content filters score in a subject, or in a button
SPAMMY = re.compile(r"\b(free|gratuit\w*|offert\w*|click here|cliquez ici|act now|winner|"
                    r"credit card|carte bancaire|guarantee\w*|risk[- ]free)\b|!|\${2,}|€{2,}",
                    re.IGNORECASE)


def test_shipped_subjects_and_calls_to_action_avoid_what_filters_score(rt: Runtime) -> None:
    cid = french_contact(rt)
    for name in rt.catalog.names("email"):
        for locale in ("fr", "en"):
            mail = parsed(compose(rt, cid, name, locale, "newsletter"))
            subject = str(mail["Subject"])
            assert not SPAMMY.search(subject), (name, locale, subject)
            assert subject == subject.strip() and not subject.isupper()
            html = mail.get_body(("html",)).get_content()
            for button in re.findall(r'class="button"[^>]*>([^<]+)<', html):
                assert not SPAMMY.search(button), (name, locale, button)


def _clear_header_caches() -> None:
    from nurture.providers import outbox

    for cached in (outbox._parsed, outbox._folded, outbox._folded_binary):
        cached.cache_clear()


def test_headers_kept_from_one_message_to_the_next_give_the_same_bytes() -> None:
    """A batch's repeated headers are parsed and folded once: the next message, and one
    built with nothing kept, come out byte for byte as if each were built alone."""
    long_subject = "Votre guide : planifier les équipes du dimanche sans heures sup " * 2
    first, second = (send.OutgoingMessage(
        f"id-{n}", "email", f"Léa {n} <lea{n}@exemple.fr>", "Équipe Acme <bonjour@acmé.fr>",
        subject=long_subject, text="Bonjour", html="<p>Bonjour</p>",
        headers={"List-Id": "Newsletter <newsletter.acme.example>"}) for n in (1, 2))
    _clear_header_caches()
    alone = bytes(build_email(second).as_bytes())
    _clear_header_caches()
    build_email(first).as_bytes()
    after_first = bytes(build_email(second).as_bytes())
    assert after_first == alone
    assert "lea2@exemple.fr" in header_block(after_first)


def test_a_header_value_with_a_line_break_is_still_refused() -> None:
    """Kept headers must not skip the check against header injection."""
    message = send.OutgoingMessage("id-1", "email", "lea@exemple.fr", "bonjour@acme.fr",
                                   subject="Bonjour\r\nBcc: everyone@example.com",
                                   text="Bonjour")
    for _ in range(2):
        with pytest.raises(ValueError):
            build_email(message)
