"""Address hygiene: is an email address or phone number worth importing or recording consent for?

Pure checks built on email-validator, disposable-email-domains and phonenumbers. The one
piece of I/O, the MX lookup, is injected: tests pass a fake function, import passes
`has_mx`, whose definitive answers are cached for the life of the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import dns.exception
import dns.name
import dns.resolver
import phonenumbers
from disposable_email_domains import blocklist as _DISPOSABLE
from email_validator import EmailNotValidError, validate_email

#: local parts of shared mailboxes (FR + EN): flagged, not refused; marketing to them is a
#: config decision (SkipReason.ROLE_ACCOUNT). Compared case-insensitively, ignoring a
#: "+tag" and the separators ".", "-", "_" (so no_reply and service.client match too).
ROLE_LOCAL_PARTS: frozenset[str] = frozenset({
    # English
    "abuse", "admin", "administrator", "billing", "careers", "contact", "do-not-reply",
    "donotreply", "enquiries", "hello", "help", "hostmaster", "hr", "info", "inquiries",
    "jobs", "legal", "mailer-daemon", "marketing", "newsletter", "no-reply", "noreply",
    "office", "postmaster", "press", "privacy", "sales", "security", "support", "team",
    "webmaster",
    # French
    "accueil", "administrateur", "bonjour", "commercial", "compta", "comptabilite",
    "contact-presse", "direction", "dpo", "facturation", "juridique", "presse",
    "recrutement", "rh", "sav", "secretariat", "service-client", "serviceclient",
})

_SEPARATORS = re.compile(r"[.\-_]")
_ROLE_KEYS = frozenset(_SEPARATORS.sub("", p) for p in ROLE_LOCAL_PARTS)
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class EmailCheck:
    #: the address as email-validator normalizes it (domain lowercased); None when rejected
    normalized: str | None
    #: why it was refused: "syntax", "disposable" or "no_mx"; None when accepted
    rejected: str | None
    #: human-readable explanation (email-validator's message for syntax errors)
    detail: str
    #: a shared mailbox (info@, contact@…): a flag, never a rejection
    role: bool


@dataclass(frozen=True)
class PhoneCheck:
    #: the number in E.164 (+33612345678); None when rejected
    e164: str | None
    #: why it was refused: "syntax" (not a phone number) or "invalid"; None when accepted
    rejected: str | None
    detail: str
    #: ISO 3166 region of the number ("FR"); None when rejected
    country: str | None


def check_email(
    raw: str, *, check_mx: bool = False, resolver: Callable[[str], bool] | None = None
) -> EmailCheck:
    """Check syntax, then disposable domains, then (only when asked) that the domain takes mail.

    `resolver(ascii_domain) -> bool` answers the MX question; it defaults to `has_mx` and is
    never called when `check_mx` is false or the address was already refused.
    """
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        return EmailCheck(normalized=None, rejected="syntax", detail=str(e), role=False)
    role = is_role_local_part(valid.local_part)
    domain = valid.ascii_domain
    disposable = disposable_domain(domain)
    if disposable is not None:
        detail = f"{disposable} is a disposable-address provider"
        return EmailCheck(normalized=None, rejected="disposable", detail=detail, role=role)
    if check_mx and not (resolver or has_mx)(domain):
        detail = f"{domain} accepts no mail (no usable MX record)"
        return EmailCheck(normalized=None, rejected="no_mx", detail=detail, role=role)
    detail = "role account" if role else ""
    return EmailCheck(normalized=valid.normalized, rejected=None, detail=detail, role=role)


def is_role_local_part(local_part: str) -> bool:
    key = local_part.casefold().split("+", 1)[0]
    return key in ROLE_LOCAL_PARTS or _SEPARATORS.sub("", key) in _ROLE_KEYS


def disposable_domain(domain: str) -> str | None:
    """The listed disposable domain that `domain` is or belongs to (sub.mailinator.com), if any."""
    labels = domain.lower().rstrip(".").split(".")
    for i in range(len(labels) - 1):  # never look up the bare TLD
        candidate = ".".join(labels[i:])
        if candidate in _DISPOSABLE:
            return candidate
    return None


class _TransientDNSError(Exception):
    """A lookup that failed for a reason that may not last (timeout, SERVFAIL): not cached."""


def has_mx(domain: str) -> bool:
    """True when `domain` publishes at least one usable MX record.

    NXDOMAIN, no MX answer and a null MX (RFC 7505 "0 .") are False, and cached. Timeouts
    and other resolver failures are False too, so a flaky resolver refuses addresses, but
    they are not cached: the next call asks again. We do not fall back to A/AAAA records
    (RFC 5321 implicit MX): for marketing lists a domain without MX is not worth mailing.
    """
    try:
        return _cached_mx(domain.lower().rstrip("."))
    except _TransientDNSError:
        return False


@lru_cache(maxsize=4096)
def _cached_mx(domain: str) -> bool:
    try:
        answer = dns.resolver.resolve(domain, "MX", lifetime=3)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False
    except dns.exception.DNSException as e:  # timeout, no nameservers, bad name…
        raise _TransientDNSError(str(e)) from e
    return any(record.exchange != dns.name.root for record in answer)


def check_phone(raw: str, *, default_region: str = "FR") -> PhoneCheck:
    """Parse with `default_region` for national numbers (06…) and keep valid ones as E.164.

    Validity comes from phonenumbers' metadata (length and prefix ranges per country); it
    says nothing about whether the number can receive SMS (a landline is "valid").
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as e:
        return PhoneCheck(e164=None, rejected="syntax", detail=str(e), country=None)
    if not phonenumbers.is_valid_number(number):
        detail = f"{raw!r} is not a valid phone number (country code +{number.country_code})"
        return PhoneCheck(e164=None, rejected="invalid", detail=detail, country=None)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number)
    return PhoneCheck(e164=e164, rejected=None, detail="", country=region)


def address_hash(address: str) -> str:
    """SHA-256 hex of "email:<key>" or "sms:<E.164>": the suppression list's lookup key.

    The suppression list outlives GDPR erasure, so a forgotten person is never re-imported
    and mailed; the hash must therefore be stable forever. Do not change the normalization
    without migrating stored hashes.

    Email key: all whitespace removed, Unicode NFC, punycode (xn--) domain labels decoded to
    Unicode (so both spellings of an IDN match, like email-validator's `normalized`), then
    the WHOLE address lowercased. The local part is case-sensitive in RFC 5321, but no real
    provider treats it so, and over-matching is the safe side for suppression. "+tags" and
    Gmail dots are kept: they are separate addresses, and folding them is provider-specific.

    Phone key: the number must already be E.164 (from `check_phone`); spaces, dots, dashes
    and parentheses are removed. No phonenumbers metadata is involved, so library upgrades
    cannot change a hash. Anything else raises ValueError.

    Note: an unkeyed hash of an address is pseudonymous, not anonymous (addresses can be
    guessed and hashed); it proves only that the address was suppressed.
    """
    text = "".join(address.split())
    if "@" in text:
        key = "email:" + _email_key(text)
    else:
        phone = re.sub(r"[.\-()]", "", text)
        if not _E164.match(phone):
            raise ValueError(f"not an email address or an E.164 phone number: {address!r}")
        key = "sms:" + phone
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _email_key(address: str) -> str:
    local, _, domain = unicodedata.normalize("NFC", address).rpartition("@")
    labels = []
    for label in domain.rstrip(".").split("."):
        if label.lower().startswith("xn--"):
            with contextlib.suppress(UnicodeError):  # invalid punycode: hash it as written
                label = label.lower().encode("ascii").decode("idna")
        labels.append(label)
    return f"{local}@{'.'.join(labels)}".lower()
