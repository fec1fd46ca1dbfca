from __future__ import annotations

import hashlib
from collections.abc import Iterator

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from nurture.compliance import hygiene
from nurture.compliance.hygiene import (
    EmailCheck,
    PhoneCheck,
    address_hash,
    check_email,
    check_phone,
    disposable_domain,
    has_mx,
)


class FakeResolver:
    """Stands in for DNS: answers from a dict and records what it was asked."""

    def __init__(self, answers: dict[str, bool]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, domain: str) -> bool:
        self.asked.append(domain)
        return self.answers.get(domain, False)


# --- email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Jean.Dupont@Example.COM", "Jean.Dupont@example.com"),
        ("marie-claire.lefevre@orange.fr", "marie-claire.lefevre@orange.fr"),
        ("john.smith+newsletter@gmail.com", "john.smith+newsletter@gmail.com"),
        ("  paul@free.fr  ", "paul@free.fr"),
        ("élodie@bücher.de", "élodie@bücher.de"),
        ("a@XN--BCHER-KVA.de", "a@bücher.de"),
    ],
)
def test_valid_addresses_are_normalized(raw: str, normalized: str) -> None:
    assert check_email(raw) == EmailCheck(
        normalized=normalized, rejected=None, detail="", role=False
    )


@pytest.mark.parametrize(
    "raw",
    ["", "jean.dupont", "jean@", "@example.com", "jean@@example.com", "jean dupont@example.com",
     "jean@example", "jean@localhost", "jean@foo.test", "jean..dupont@example.com"],
)
def test_syntax_errors_are_rejected(raw: str) -> None:
    result = check_email(raw)
    assert result.rejected == "syntax"
    assert result.normalized is None
    assert result.detail  # email-validator's message, for the import report
    assert result.role is False


@pytest.mark.parametrize(
    ("raw", "listed"),
    [
        ("someone@mailinator.com", "mailinator.com"),
        ("someone@MAILINATOR.COM", "mailinator.com"),
        ("someone@inbox.mailinator.com", "mailinator.com"),
        ("someone@a.b.mailinator.com", "mailinator.com"),
        ("quelquun@yopmail.fr", "yopmail.fr"),
    ],
)
def test_disposable_domains_and_their_subdomains_are_rejected(raw: str, listed: str) -> None:
    result = check_email(raw)
    assert result.rejected == "disposable"
    assert result.normalized is None
    assert listed in result.detail


def test_lookalike_of_a_disposable_domain_is_not_rejected() -> None:
    assert disposable_domain("xmailinator.fr") is None
    assert disposable_domain("mailinator.com.acme.fr") is None
    assert check_email("x@gmail.com").rejected is None


@pytest.mark.parametrize(
    "raw",
    ["info@acme.fr", "Contact@Acme.fr", "CONTACT@acme.fr", "no-reply@acme.com", "no_reply@acme.com",
     "noreply@acme.com", "support+fr@acme.com", "service.client@acme.fr", "rh@acme.fr",
     "compta@acme.fr", "accueil@mairie.fr", "sales@acme.com"],
)
def test_role_accounts_are_flagged_not_rejected(raw: str) -> None:
    result = check_email(raw)
    assert result.role is True
    assert result.rejected is None
    assert result.normalized is not None
    assert result.detail == "role account"


@pytest.mark.parametrize("raw", ["jean.info@acme.fr", "information@acme.fr", "contacts2@acme.fr"])
def test_personal_addresses_are_not_role_accounts(raw: str) -> None:
    assert check_email(raw).role is False


def test_role_flag_survives_a_rejection_for_disposable() -> None:
    result = check_email("info@mailinator.com")
    assert (result.rejected, result.role) == ("disposable", True)


def test_mx_check_accepts_a_domain_with_mx() -> None:
    resolver = FakeResolver({"acme.fr": True})
    result = check_email("jean@Acme.FR", check_mx=True, resolver=resolver)
    assert result.rejected is None
    assert result.normalized == "jean@acme.fr"
    assert resolver.asked == ["acme.fr"]


def test_mx_check_rejects_a_domain_without_mx() -> None:
    resolver = FakeResolver({})
    result = check_email("jean@no-mail-here.fr", check_mx=True, resolver=resolver)
    assert result == EmailCheck(
        normalized=None,
        rejected="no_mx",
        detail="no-mail-here.fr accepts no mail (no usable MX record)",
        role=False,
    )


def test_mx_check_asks_with_the_ascii_domain() -> None:
    resolver = FakeResolver({"xn--bcher-kva.de": True})
    assert check_email("a@bücher.de", check_mx=True, resolver=resolver).rejected is None
    assert resolver.asked == ["xn--bcher-kva.de"]


def test_resolver_is_not_called_without_check_mx() -> None:
    resolver = FakeResolver({})
    assert check_email("jean@acme.fr", resolver=resolver).rejected is None
    assert resolver.asked == []


def test_resolver_is_not_called_for_refused_addresses() -> None:
    resolver = FakeResolver({})
    check_email("not an address", check_mx=True, resolver=resolver)
    check_email("x@mailinator.com", check_mx=True, resolver=resolver)
    assert resolver.asked == []


# --- the default MX resolver (dnspython's resolve is the outside world: replaced) ------


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """Maps domain -> list of MX texts, or an exception instance to raise."""
    zone: dict[str, object] = {}
    calls: list[str] = []

    def resolve(domain: str, rdtype: str, lifetime: float) -> list[dns.rdata.Rdata]:
        assert (rdtype, lifetime) == ("MX", 3)
        calls.append(domain)
        entry = zone.get(domain, dns.resolver.NXDOMAIN())
        if isinstance(entry, Exception):
            raise entry
        assert isinstance(entry, list)
        return [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.MX, t) for t in entry]

    hygiene._cached_mx.cache_clear()
    monkeypatch.setattr(dns.resolver, "resolve", resolve)
    zone["__calls__"] = calls
    yield zone
    hygiene._cached_mx.cache_clear()


def test_has_mx_true_for_real_mx_records(fake_dns: dict[str, object]) -> None:
    fake_dns["acme.fr"] = ["10 mx1.acme.fr.", "20 mx2.acme.fr."]
    assert has_mx("acme.fr") is True
    assert has_mx("ACME.fr.") is True  # same cache entry
    assert fake_dns["__calls__"] == ["acme.fr"]


@pytest.mark.parametrize(
    "entry",
    [["0 ."], dns.resolver.NoAnswer(), dns.resolver.NXDOMAIN()],
    ids=["null-mx", "no-answer", "nxdomain"],
)
def test_has_mx_false_and_cached_for_definitive_answers(
    fake_dns: dict[str, object], entry: object
) -> None:
    fake_dns["nomail.fr"] = entry
    assert has_mx("nomail.fr") is False
    assert has_mx("nomail.fr") is False
    assert fake_dns["__calls__"] == ["nomail.fr"]


@pytest.mark.parametrize(
    "error", [dns.resolver.LifetimeTimeout(timeout=3.0, errors=[]), dns.resolver.NoNameservers()]
)
def test_has_mx_false_but_not_cached_for_transient_failures(
    fake_dns: dict[str, object], error: dns.exception.DNSException
) -> None:
    fake_dns["slow.fr"] = error
    assert has_mx("slow.fr") is False
    fake_dns["slow.fr"] = ["10 mx.slow.fr."]
    assert has_mx("slow.fr") is True
    assert fake_dns["__calls__"] == ["slow.fr", "slow.fr"]


def test_check_email_uses_has_mx_by_default(fake_dns: dict[str, object]) -> None:
    fake_dns["acme.fr"] = ["10 mx.acme.fr."]
    assert check_email("jean@acme.fr", check_mx=True).rejected is None
    assert check_email("jean@gone.fr", check_mx=True).rejected == "no_mx"


# --- phone -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country"),
    [
        ("06 12 34 56 78", "FR", "+33612345678", "FR"),
        ("06.12.34.56.78", "FR", "+33612345678", "FR"),
        ("0033 6 12 34 56 78", "FR", "+33612345678", "FR"),
        ("+33 (0)6 12 34 56 78", "FR", "+33612345678", "FR"),
        ("01 23 45 67 89", "FR", "+33123456789", "FR"),
        ("+1 415 555 2671", "FR", "+14155552671", "US"),
        ("(415) 555-2671", "US", "+14155552671", "US"),
        ("+32 470 12 34 56", "FR", "+32470123456", "BE"),
        ("0470 12 34 56", "BE", "+32470123456", "BE"),
    ],
)
def test_valid_phones_become_e164(raw: str, region: str, e164: str, country: str) -> None:
    assert check_phone(raw, default_region=region) == PhoneCheck(
        e164=e164, rejected=None, detail="", country=country
    )


@pytest.mark.parametrize(
    "raw", ["06 12 34", "+33 6 12 34 56 78 9", "00 00 00 00 00", "+1 123 456 7890"]
)
def test_invalid_numbers_are_rejected(raw: str) -> None:
    result = check_phone(raw)
    assert (result.rejected, result.e164, result.country) == ("invalid", None, None)
    assert raw in result.detail


@pytest.mark.parametrize("raw", ["", "   ", "abc", "jean@example.com", "+999 1234", "n/a"])
def test_garbage_is_a_syntax_error(raw: str) -> None:
    result = check_phone(raw)
    assert (result.rejected, result.e164, result.country) == ("syntax", None, None)
    assert result.detail


# --- address_hash ------------------------------------------------------------------------


def test_address_hash_is_sha256_of_the_prefixed_key() -> None:
    assert address_hash("jean@acme.fr") == hashlib.sha256(b"email:jean@acme.fr").hexdigest()
    assert address_hash("+33612345678") == hashlib.sha256(b"sms:+33612345678").hexdigest()


def test_address_hash_is_stable_and_case_and_space_insensitive_for_email() -> None:
    expected = address_hash("jean.dupont@example.com")
    assert len(expected) == 64
    assert address_hash("Jean.Dupont@Example.COM") == expected
    assert address_hash("  JEAN.DUPONT@EXAMPLE.COM\n") == expected
    assert address_hash("jean.dupont @example.com") == expected
    # pinned: a change here orphans every stored suppression
    assert expected == "2f93509a51a2b4974b6cd65a2c7e375348ce538263a9dfe23cac683fed1e0e15"


def test_address_hash_matches_check_email_normalized_form() -> None:
    raw = "Élodie@XN--BCHER-KVA.DE"
    normalized = check_email(raw).normalized
    assert normalized == "Élodie@bücher.de"
    assert address_hash(raw) == address_hash(normalized) == address_hash("élodie@bücher.de")


def test_address_hash_keeps_plus_tags_distinct() -> None:
    assert address_hash("jean+promo@acme.fr") != address_hash("jean@acme.fr")


def test_address_hash_for_phones_and_channels_do_not_collide() -> None:
    e164 = check_phone("06 12 34 56 78").e164
    assert e164 is not None
    assert address_hash(e164) == address_hash("+33 6 12 34 56 78")
    assert address_hash(e164) == address_hash("+33.6.12.34.56.78")
    assert address_hash("+33612345678") != address_hash("+33612345679")


@pytest.mark.parametrize("raw", ["0612345678", "not an address", "", "+0123"])
def test_address_hash_refuses_what_it_cannot_key(raw: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        address_hash(raw)
