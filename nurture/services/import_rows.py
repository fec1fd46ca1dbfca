"""The rows of a contact import, checked one by one: addresses normalized (hygiene),
fields and attributes typed, consent columns read. Pure: no database, no clock;
`nurture.services.importing` merges the checked rows and writes them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email

from nurture.compliance.hygiene import EmailCheck, check_email, check_phone, is_role_local_part
from nurture.compliance.windows import zone
from nurture.config.settings import AttributeSpec, Settings
from nurture.services.import_columns import ColumnMap
from nurture.services.import_files import Table, header_key
from nurture.vocab import ConsentAction


class Reason(StrEnum):
    """Why a row was not imported (the `_reason` column of FILE.rejected.csv)."""

    #: neither an email nor a phone number
    NO_ADDRESS = "no_address"
    #: the email address is not valid (email-validator's message in `_detail`)
    BAD_EMAIL = "bad_email"
    #: the domain gives out throwaway addresses
    DISPOSABLE = "disposable"
    #: the domain accepts no mail (only with the MX check)
    NO_MX = "no_mx"
    #: not a valid phone number for its country (or the default region)
    BAD_PHONE = "bad_phone"
    #: a value that does not fit its attribute's declared type
    BAD_ATTRIBUTE = "bad_attribute"
    #: a locale that is not one of config's `locales`
    BAD_LOCALE = "bad_locale"
    #: not an IANA time zone name
    BAD_TIMEZONE = "bad_timezone"
    #: not an ISO 3166 alpha-2 country code
    BAD_COUNTRY = "bad_country"
    #: a consent column holding something else than yes/no
    BAD_CONSENT = "bad_consent"
    #: the address is on the suppression list (bounced, complained, refused by a provider)
    SUPPRESSED = "suppressed"
    #: the person was erased (GDPR): only a hash of the address remains, to refuse it
    ERASED = "erased"


_GRANTS = frozenset({"yes", "y", "true", "1", "oui", "o", "x", "granted", "opt_in", "optin"})
_REFUSALS = frozenset({"no", "n", "false", "0", "non", "withdrawn", "opt_out", "optout"})
_TRUE = frozenset({"true", "yes", "y", "1", "oui", "vrai"})
_FALSE = frozenset({"false", "no", "n", "0", "non", "faux"})



@dataclass
class Candidate:
    """A checked row (or rows, once duplicates are merged): what to import."""

    row: int
    email: str | None
    phone: str | None
    role: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    #: (channel, purpose) → (action, the row that said so, that row's evidence columns)
    consents: dict[tuple[str, str], tuple[str, int, dict[str, str]]] = field(
        default_factory=dict)
    #: every row merged into this one, first first
    rows: list[int] = field(default_factory=list)
    #: the row's `evidence.KEY` columns (kept with the consent it gives)
    evidence: dict[str, str] = field(default_factory=dict)

    def merge(self, later: Candidate) -> None:
        """A later row about the same person: its values win, nothing it leaves empty
        is lost."""
        self.email = self.email or later.email
        self.phone = later.phone or self.phone
        self.role = self.role or later.role
        self.fields.update(later.fields)
        self.attributes.update(later.attributes)
        self.consents.update(later.consents)
        self.rows.extend(later.rows)
        self.evidence.update(later.evidence)


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: Reason
    detail: str


#: an unquoted local part (RFC 5322 dot-atom), which email-validator takes as it is
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class EmailChecks:
    """`hygiene.check_email` for the rows of one file. A list holds thousands of
    addresses per domain, and the domain is most of email-validator's work: once a full
    check has accepted a domain (or found it disposable), an address on it whose part
    before the @ is a plain dot-atom gets the same answer without checking the domain
    again. Anything else goes through `check_email` itself."""

    def __init__(self) -> None:
        self.domains: dict[str, EmailCheck] = {}

    def __call__(self, raw: str) -> EmailCheck:
        text = raw.strip()
        local, _, domain = text.rpartition("@")
        known = self.domains.get(domain.lower())
        if (known is not None and 0 < len(local) <= 64 and len(text) <= 254
                and _DOT_ATOM.fullmatch(local)):
            role = is_role_local_part(local)
            if known.normalized is None:
                return EmailCheck(None, known.rejected, known.detail, role)
            normalized = f"{local}@{known.normalized.rpartition('@')[2]}"
            return EmailCheck(normalized, None, "role account" if role else "", role)
        checked = check_email(text)
        if checked.normalized is not None or checked.rejected == "disposable":
            self.domains[domain.lower()] = checked
        return checked


def check_row(number: int, values: Sequence[str], columns: ColumnMap,
              settings: Settings, emails: EmailChecks | None = None) -> Candidate | Rejection:
    """One row checked: addresses normalized (email lowercase, IDN domain in ASCII;
    phone in E.164), fields and attributes typed, consent columns read."""
    email = phone = None
    fields: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    consents: dict[tuple[str, str], str] = {}
    evidence: dict[str, str] = {}
    role = False
    for raw, target in zip(values, columns.targets, strict=True):
        value = raw.strip()
        if not value or target.kind == "ignore":
            continue
        if target.kind == "attribute":
            spec = settings.attributes[target.name]
            try:
                attributes[target.name] = typed(spec, value)
            except ValueError as e:
                return Rejection(number, Reason.BAD_ATTRIBUTE, f"{target.name}: {e}")
        elif target.kind == "consent":
            action = consent_value(value)
            if action is None:
                return Rejection(number, Reason.BAD_CONSENT, f"consent.{'.'.join(target.consent)}"
                                 f" = {value!r}: expected yes/no (oui/non, true/false, 1/0)")
            consents[target.consent] = action
        elif target.kind == "evidence":
            evidence[target.name] = value
        elif target.name == "email":
            checked = (emails or check_email)(value)
            if checked.normalized is None:
                reason = Reason.DISPOSABLE if checked.rejected == "disposable" else Reason.BAD_EMAIL
                return Rejection(number, reason, checked.detail)
            email, role = ascii_address(checked.normalized), checked.role
        elif target.name == "phone":
            number_check = check_phone(value, default_region=settings.default_region)
            if number_check.e164 is None:
                return Rejection(number, Reason.BAD_PHONE, number_check.detail)
            phone = number_check.e164
            if number_check.country:
                fields.setdefault("country", number_check.country)
        else:
            problem = _field(target.name, value, settings, fields)
            if problem is not None:
                return Rejection(number, *problem)
    if email is None and phone is None:
        return Rejection(number, Reason.NO_ADDRESS, "neither an email nor a phone number")
    return Candidate(number, email, phone, role, fields, attributes,
                     {pair: (action, number, evidence) for pair, action in consents.items()},
                     [number], evidence)


def _field(name: str, value: str, settings: Settings,
           fields: dict[str, str]) -> tuple[Reason, str] | None:
    if name == "locale":
        found = locale_of(value, settings.locales)
        if found is None:
            return Reason.BAD_LOCALE, f"{value!r} is not one of {', '.join(settings.locales)}"
        fields["locale"] = found
    elif name == "timezone":
        if zone(value).key != value:
            return Reason.BAD_TIMEZONE, f"{value!r} is not an IANA time zone (Europe/Paris…)"
        fields["timezone"] = value
    elif name == "country":
        if not (len(value) == 2 and value.isascii() and value.isalpha()):
            return Reason.BAD_COUNTRY, f"{value!r} is not an ISO 3166 code (FR, US…)"
        fields["country"] = value.upper()  # over the phone's region
    return None


def ascii_address(normalized: str) -> str:
    """Lowercase, with an internationalized domain in its ASCII (xn--) form; a
    non-ASCII local part has no ASCII form and stays as it is."""
    address = normalized.lower()
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        ascii_domain = validate_email(address, check_deliverability=False).ascii_domain
    except EmailNotValidError:  # normalized already: cannot happen, keep it readable
        return address
    return f"{local}@{ascii_domain}"


def unicode_address(address: str) -> str:
    """The address with its xn-- domain labels in Unicode, as `contact add` stores it."""
    if "xn--" not in address.rpartition("@")[2]:
        return address
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return address


def locale_of(value: str, locales: Sequence[str]) -> str | None:
    """`fr`, `FR`, `fr-FR`, `fr_CA` → `fr` when `fr` is one of `locales`."""
    key = value.strip().replace("_", "-").lower()
    for candidate in (key, key.split("-", 1)[0]):
        if candidate in locales:
            return candidate
    return None


def consent_value(value: str) -> str | None:
    key = header_key(value)
    if key in _GRANTS:
        return ConsentAction.GRANTED
    if key in _REFUSALS:
        return ConsentAction.WITHDRAWN
    return None


def typed(spec: AttributeSpec, value: str) -> Any:
    """The value as its declared type says: a string stays as written (`01000`)."""
    if spec.type == "string":
        return value
    if spec.type == "bool":
        key = value.casefold()
        if key in _TRUE or key in _FALSE:
            return key in _TRUE
        raise ValueError(f"{value!r} is not true or false")
    number = value.replace("\u00a0", "").replace(" ", "")
    if "," in number and "." not in number:
        number = number.replace(",", ".")  # a decimal comma (12,5)
    if spec.type == "int":
        try:
            return int(number)
        except ValueError:
            pass  # 120.0 (a spreadsheet's whole number) is still an int
    try:
        found = float(number)
    except ValueError:
        raise ValueError(f"{value!r} is not a number ({spec.type})") from None
    if not math.isfinite(found):
        raise ValueError(f"{value!r} is not a number ({spec.type})")
    if spec.type == "float":
        return found
    if not found.is_integer():
        raise ValueError(f"{value!r} is not a whole number (int)")
    return int(found)


def rows_of(table: Table, columns: ColumnMap,
            settings: Settings) -> Iterator[Candidate | Rejection]:
    emails = EmailChecks()
    for number, values in table.rows:
        yield check_row(number, values, columns, settings, emails)
