"""Which column of an import holds what: by header or by `--map HEADER=FIELD`.

Headers compare case-insensitively, spaces and dashes as `_` (`header_key`): `email`,
`e-mail`, `courriel`, `phone`, `mobile`, `téléphone`…, any attribute declared in
`[attributes]`, `consent.CHANNEL.PURPOSE`, `evidence.KEY`. Columns whose header starts
with `_` (the `_row`, `_reason`, `_detail` of a rejected file) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nurture.config.settings import Settings
from nurture.errors import NurtureError
from nurture.services.import_files import header_key
from nurture.vocab import Channel

FIELDS = ("email", "phone", "locale", "timezone", "country")
_ALIASES = {
    "email": ("email", "e_mail", "mail", "email_address", "e_mail_address", "courriel",
              "adresse_email", "adresse_e_mail", "adresse_mail"),
    "phone": ("phone", "phone_number", "mobile", "mobile_phone", "cell", "telephone",
              "téléphone", "tel", "tél", "portable", "numero", "numéro", "sms"),
    "locale": ("locale", "language", "lang", "langue"),
    "timezone": ("timezone", "time_zone", "tz", "fuseau_horaire"),
    "country": ("country", "country_code", "pays"),
}


@dataclass(frozen=True)
class Target:
    """What a column holds: a contact field, an attribute, a consent, evidence, nothing."""

    kind: str  # field | attribute | consent | evidence | ignore
    name: str = ""
    #: (channel, purpose), for a consent column
    consent: tuple[str, str] = ("", "")


@dataclass
class ColumnMap:
    targets: list[Target]
    #: headers that map to nothing (reported, never silently dropped)
    unknown: list[str]

    def has(self, name: str) -> bool:
        return any(t.kind == "field" and t.name == name for t in self.targets)


def map_columns(header: Sequence[str], overrides: Mapping[str, str],
                settings: Settings) -> ColumnMap:
    """Each column's target; NurtureError for a mapping that cannot work."""
    by_key = {header_key(h): h for h in header}
    for column in overrides:
        if header_key(column) not in by_key:
            raise NurtureError(f"--map {column!r}: no such column (columns: "
                               f"{', '.join(header)})")
    wanted = {header_key(c): v for c, v in overrides.items()}
    targets: list[Target] = []
    unknown: list[str] = []
    for column in header:
        key = header_key(column)
        target = (_target(wanted[key], settings, f"--map {column}={wanted[key]}")
                  if key in wanted else _guess(key, settings))
        if target is None:
            unknown.append(column)
            target = Target("ignore")
        targets.append(target)
    seen: dict[tuple[str, str, tuple[str, str]], str] = {}
    for column, target in zip(header, targets, strict=True):
        ident = (target.kind, target.name, target.consent)
        if target.kind != "ignore" and ident in seen:
            raise NurtureError(f"columns {seen[ident]!r} and {column!r} both hold "
                               f"{target.name or ':'.join(target.consent)}: map one of them "
                               f"with --map COLUMN=ignore")
        seen[ident] = column
    mapped = ColumnMap(targets, unknown)
    if not (mapped.has("email") or mapped.has("phone")):
        raise NurtureError(f"no email or phone column among {', '.join(header)} "
                           "(name one with --map COLUMN=email or --map COLUMN=phone)")
    return mapped


def _guess(key: str, settings: Settings) -> Target | None:
    if key.startswith("_"):
        return Target("ignore")
    for name, aliases in _ALIASES.items():
        if key in aliases:
            return Target("field", name)
    try:
        return _target(key, settings, "column")
    except NurtureError:
        return None


def _target(spec: str, settings: Settings, where: str) -> Target:
    key = header_key(spec)
    if key == "ignore":
        return Target("ignore")
    if key in FIELDS:
        return Target("field", key)
    for prefix in ("attributes.", "attribute.", "attr."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key in settings.attributes:
        return Target("attribute", key)
    parts = re.split(r"[.:]", key)
    if parts[0] == "consent" and len(parts) == 3:
        return Target("consent", consent=consent_pair(f"{parts[1]}:{parts[2]}", settings))
    if parts[0] == "evidence" and len(parts) >= 2 and key[len("evidence."):]:
        return Target("evidence", key[len("evidence."):])
    declared = ", ".join(sorted(settings.attributes)) or "none"
    raise NurtureError(f"{where}: {spec!r} is not a contact field ({', '.join(FIELDS)}), a "
                       f"declared attribute ({declared}), consent.CHANNEL.PURPOSE, "
                       "evidence.KEY or ignore")


def consent_pair(spec: str, settings: Settings) -> tuple[str, str]:
    """`email:newsletter` → ("email", "newsletter"), checked against config."""
    channel, sep, purpose = spec.strip().partition(":")
    if not sep or channel not in {c.value for c in Channel}:
        raise NurtureError(f"consent {spec!r}: expected CHANNEL:PURPOSE with channel email "
                           "or sms")
    if purpose not in settings.purposes:
        raise NurtureError(f"consent {spec!r}: unknown purpose {purpose!r} (declared: "
                           f"{', '.join(sorted(settings.purposes))})")
    return channel, purpose
