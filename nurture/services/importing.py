"""`nurture import FILE`: contacts in bulk, with list hygiene and consent evidence.

Rows are checked first (`import_rows`: syntax, disposable domains, role accounts, phones
to E.164, typed attributes), then the optional MX check asks once per domain (`mx`),
then duplicates are merged — within the file (email compared case-insensitively; a row
with a phone only joins the row holding that number) and against the store. Each chunk
of contacts is then written in one transaction, set-based: suppressed and erased
addresses refused, new contacts inserted (due for journey evaluation at once), changed
ones updated, unchanged ones left alone, consent appended with the file's name and row
as evidence, the ledger version bumped once. Re-importing a file changes nothing.

Consent from a file never overrides a withdrawal already recorded (the person's
unsubscribe or STOP is newer evidence than a list), and a number that texted STOP stays
opted out for a contact that takes it (`ledger.inherit_number_opt_out`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from nurture.config.settings import Settings
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError
from nurture.services.import_columns import consent_pair, map_columns
from nurture.services.import_files import Table, read_table
from nurture.services.import_rows import Candidate, Reason, Rejection, rows_of
from nurture.services.import_writer import ChunkWriter, ConsentTerms, ImportReport
from nurture.services.mx import MxChecker
from nurture.vocab import LegalBasis

#: contacts written per transaction
CHUNK = 2000


class Progress(Protocol):
    """How long work shows itself (the CLI's rich bar); the default shows nothing."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int) -> None:
        return None

    def advance(self, count: int) -> None:
        return None


@dataclass(frozen=True)
class ImportOptions:
    #: column → field (`--map`); other columns map by header
    mapping: Mapping[str, str] = field(default_factory=dict)
    #: "channel:purpose" every row consented to (`--consent`)
    consents: Sequence[str] = ()
    source: str = "import"
    evidence: Mapping[str, Any] = field(default_factory=dict)
    basis: str = LegalBasis.CONSENT
    check_mx: bool = False
    mx: MxChecker | None = None
    dry_run: bool = False
    chunk: int = CHUNK
    encoding: str = "utf-8-sig"


class _DryRun(Exception):
    """Raised at the end of a dry run's chunk: its transaction rolls back."""


def import_contacts(rt: Runtime, path: Path, options: ImportOptions, now: datetime,
                    progress: Progress | None = None) -> ImportReport:
    """Import the file; see the module doc. NurtureError for a file that cannot be read
    or mapped (nothing is written then)."""
    progress = progress or NoProgress()
    settings = rt.settings
    table = read_table(path, options.encoding)
    columns = map_columns(table.header, options.mapping, settings)
    wide = [consent_pair(spec, settings) for spec in options.consents]
    _check_basis(settings, options.basis, [*wide, *(t.consent for t in columns.targets
                                                   if t.kind == "consent")])
    report = ImportReport(str(path), options.dry_run, rows=len(table.rows),
                          ignored_columns=columns.unknown)
    checked = _check(table, columns, settings, progress, report)
    if options.check_mx:
        checked = _check_mx(checked, options.mx or MxChecker(), report)
    groups = merge(checked)
    report.merged = len(checked) - len(groups)
    report.role_accounts = sum(g.role for g in groups)
    terms = ConsentTerms(options.source, options.basis, options.evidence, wide,
                         {"file": path.name, "file_sha256": table.sha256})
    writer = ChunkWriter(settings, now, terms, report)
    progress.phase("writing", len(groups))
    for start in range(0, len(groups), max(1, options.chunk)):
        part = groups[start:start + options.chunk]
        try:
            with rt.db.begin() as conn:
                writer.write(conn, part)
                if options.dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        progress.advance(len(part))
    report.rejected.sort(key=lambda r: r.row)
    if not options.dry_run:
        report.rejected_file = write_rejected(path, table, report.rejected)
    return report


def _check_basis(settings: Settings, basis: str, pairs: Sequence[tuple[str, str]]) -> None:
    if basis not in {b.value for b in LegalBasis}:
        raise NurtureError(f"unknown legal basis {basis!r} (consent, legitimate_interest, "
                           "contract)")
    for _, purpose in pairs:
        if basis not in settings.purposes[purpose].bases:
            raise NurtureError(f"purpose {purpose!r} does not accept the basis {basis!r} "
                               f"(config: {', '.join(settings.purposes[purpose].bases)})")


def _check(table: Table, columns: Any, settings: Settings, progress: Progress,
           report: ImportReport) -> list[Candidate]:
    progress.phase("checking", len(table.rows))
    checked: list[Candidate] = []
    for index, result in enumerate(rows_of(table, columns, settings), start=1):
        if isinstance(result, Rejection):
            report.rejected.append(result)
        else:
            checked.append(result)
        if index % 1000 == 0:
            progress.advance(1000)
    progress.advance(len(table.rows) % 1000)
    return checked


def _check_mx(checked: list[Candidate], checker: MxChecker,
              report: ImportReport) -> list[Candidate]:
    answers = checker.check({c.email.rpartition("@")[2] for c in checked if c.email})
    kept = []
    for candidate in checked:
        domain = candidate.email.rpartition("@")[2] if candidate.email else None
        verdict = answers.get(domain) if domain else True
        if verdict is False:
            report.rejected.append(Rejection(candidate.row, Reason.NO_MX,
                                             f"{domain} accepts no mail (no usable MX record)"))
            continue
        report.mx_unchecked += verdict is None
        kept.append(candidate)
    report.mx_given_up = checker.given_up
    return kept


def merge(checked: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per person, in file order: rows with the same email (already
    lowercase) are one; a row with only a phone joins the row holding that number."""
    by_email: dict[str, Candidate] = {}
    by_phone: dict[str, Candidate] = {}
    groups: list[Candidate] = []
    phone_only: list[Candidate] = []
    for candidate in checked:
        if candidate.email is None:
            phone_only.append(candidate)
            continue
        found = by_email.get(candidate.email)
        if found is None:
            by_email[candidate.email] = candidate
            groups.append(candidate)
        else:
            found.merge(candidate)
    for group in groups:
        if group.phone:
            by_phone.setdefault(group.phone, group)
    for candidate in phone_only:
        found = by_phone.get(candidate.phone or "")
        if found is None:
            by_phone[candidate.phone or ""] = candidate
            groups.append(candidate)
        else:
            found.merge(candidate)
    groups.sort(key=lambda g: g.row)
    return groups


def write_rejected(path: Path, table: Table, rejected: Sequence[Rejection]) -> str | None:
    """FILE.rejected.csv beside the file: each refused row as it was, with its row
    number, reason and detail first. Without rejected rows, an earlier one is removed."""
    target = path.with_name(path.name + ".rejected.csv")
    if not rejected:
        target.unlink(missing_ok=True)
        return None
    values = dict(table.rows)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["_row", "_reason", "_detail", *table.header])
        for item in rejected:
            out.writerow([item.row, str(item.reason), item.detail, *values.get(item.row, [])])
    return str(target)


