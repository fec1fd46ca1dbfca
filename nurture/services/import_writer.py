"""The writing half of `nurture import`: one chunk of merged candidates per transaction,
set-based (`store.imports`), and what it did, counted in an `ImportReport`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from nurture.compliance.consent import COUNTING_ACTIONS
from nurture.compliance.hygiene import address_hash
from nurture.config.settings import Settings
from nurture.intake import ledger, maturity
from nurture.scoring import rules as scoring
from nurture.services.import_rows import Candidate, Reason, Rejection, unicode_address
from nurture.store import imports
from nurture.store import maturity as ms
from nurture.store import queries as store
from nurture.vocab import ALL_PURPOSES, Channel, ConsentAction


@dataclass
class ImportReport:
    file: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: rows merged into an earlier row about the same person
    merged: int = 0
    role_accounts: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    #: "channel:purpose:action" → ledger entries appended
    consents: Counter[str] = field(default_factory=Counter)
    #: grants not recorded: the person had withdrawn (or texted STOP) already
    kept_withdrawn: int = 0
    #: grants not recorded: the row has no address on that channel
    no_address: int = 0
    #: contacts that took a number which texted STOP: SMS withdrawn for them too
    number_opt_outs: int = 0
    mx_unchecked: int = 0
    mx_given_up: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    rejected_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        by_reason = Counter(str(r.reason) for r in self.rejected)
        return {
            "file": self.file, "dry_run": self.dry_run, "rows": self.rows,
            "imported_rows": self.rows - len(self.rejected), "created": self.created,
            "updated": self.updated, "unchanged": self.unchanged,
            "duplicates_merged": self.merged, "role_accounts": self.role_accounts,
            "rejected": len(self.rejected), "rejected_by_reason": dict(sorted(by_reason.items())),
            "consent_recorded": dict(sorted(self.consents.items())),
            "consent_kept_withdrawn": self.kept_withdrawn,
            "consent_without_address": self.no_address,
            "number_opt_outs_inherited": self.number_opt_outs,
            "mx_unchecked": self.mx_unchecked, "mx_resolver_given_up": self.mx_given_up,
            "ignored_columns": self.ignored_columns, "rejected_file": self.rejected_file,
            "rejected_rows": [{"row": r.row, "reason": str(r.reason), "detail": r.detail}
                              for r in self.rejected],
        }


@dataclass(frozen=True)
class ConsentTerms:
    """How the file's rows consented: what the ledger entries say besides the rows'
    own columns."""

    source: str
    basis: str
    evidence: Mapping[str, Any]
    #: (channel, purpose) every row consented to (`--consent`)
    wide: Sequence[tuple[str, str]]
    #: the file's name and SHA-256, kept with each entry (with the row number)
    file: Mapping[str, str]


class ChunkWriter:
    """Writes chunks of merged candidates (one transaction each)."""

    def __init__(self, settings: Settings, now: datetime, terms: ConsentTerms,
                 report: ImportReport) -> None:
        self.settings, self.now, self.terms, self.report = settings, now, terms, report

    def write(self, conn: Connection, groups: Sequence[Candidate]) -> None:
        kept = self._refuse_suppressed(conn, groups)
        existing = self._existing(conn, kept)
        new = [g for g in kept if id(g) not in existing]
        ids = self._insert(conn, new)
        changed, profiled, numbers = self._update(conn, kept, existing)
        ids.update({id(g): contact.id for g in kept if (contact := existing.get(id(g)))})
        numbers.update({ids[id(g)]: g.phone for g in new if g.phone})
        profiled.update(ids[id(g)] for g in new if g.attributes)
        self.report.number_opt_outs += self._inherit_opt_outs(conn, numbers)
        consented = self._consent(conn, [(g, ids[id(g)]) for g in kept])
        later = sorted(consented - changed - {ids[id(g)] for g in new})
        imports.update_contacts(conn, [{"id": cid, "updated_at": self.now,
                                        "evaluate_at": self.now} for cid in later])
        if self.settings.scoring.fit:
            self._assess(conn, profiled)

    def _refuse_suppressed(self, conn: Connection,
                           groups: Sequence[Candidate]) -> list[Candidate]:
        hashes = {g_id: [(ch, address_hash(a)) for ch, a in
                         ((Channel.EMAIL, g.email), (Channel.SMS, g.phone)) if a]
                  for g_id, g in ((id(g), g) for g in groups)}
        reasons = imports.suppression_reasons(conn, [h for pairs in hashes.values()
                                                     for _, h in pairs])
        kept = []
        for group in groups:
            found = [(ch, reasons[h]) for ch, h in hashes[id(group)] if h in reasons]
            if not found:
                kept.append(group)
                continue
            channel, why = found[0]
            reason = Reason.ERASED if why == "erased" else Reason.SUPPRESSED
            detail = (f"the {channel} address belongs to an erased contact (GDPR)"
                      if reason == Reason.ERASED else
                      f"the {channel} address is on the suppression list ({why})")
            self.report.rejected.extend(Rejection(row, reason, detail) for row in group.rows)
        return kept

    def _existing(self, conn: Connection,
                  groups: Sequence[Candidate]) -> dict[int, imports.StoredContact]:
        forms = {g.email: unicode_address(g.email) for g in groups if g.email}
        by_email = imports.contacts_by_email(conn, {f for pair in forms.items() for f in pair})
        by_phone = imports.contacts_by_phone(conn, [g.phone for g in groups
                                                    if g.email is None and g.phone])
        found: dict[int, imports.StoredContact] = {}
        for group in groups:
            if group.email:
                match = by_email.get(group.email) or by_email.get(forms[group.email])
            else:
                match = by_phone.get(group.phone or "")
            if match is not None:
                found[id(group)] = match
        return found

    def _insert(self, conn: Connection, new: Sequence[Candidate]) -> dict[int, int]:
        settings, now = self.settings, self.now
        rows = [{
            "email": g.email, "phone": g.phone,
            "locale": g.fields.get("locale", settings.default_locale),
            "timezone": g.fields.get("timezone", settings.default_timezone),
            "country": g.fields.get("country"), "attributes": dict(g.attributes),
            "stage": "lead", "temperature": "cold", "score": 0.0, "fit": 0.0,
            "role_account": g.role, "created_at": now, "updated_at": now,
            "evaluate_at": now, "decay_at": None, "stage_changed_at": None,
        } for g in new]
        imports.insert_contacts(conn, rows)
        self.report.created += len(rows)
        by_email = ms.contact_ids_by_email(conn, [g.email for g in new if g.email])
        phones = [g.phone for g in new if not g.email and g.phone]
        by_phone = imports.contacts_by_phone(conn, phones, without_email=True)
        return {id(g): by_email[g.email] if g.email else by_phone[g.phone or ""].id for g in new}

    def _update(self, conn: Connection, groups: Sequence[Candidate],
                existing: Mapping[int, imports.StoredContact]
                ) -> tuple[set[int], set[int], dict[int, str]]:
        """Changed contacts written; returns them, those whose attributes changed, and
        those that took a new number (id → number)."""
        rows, profiled, numbers = [], set(), {}
        for group in groups:
            stored = existing.get(id(group))
            if stored is None:
                continue
            changes = _changes(stored, group)
            if not changes:
                self.report.unchanged += 1
                continue
            if "attributes" in changes:
                profiled.add(stored.id)
            if "phone" in changes:
                numbers[stored.id] = changes["phone"]
            rows.append({**changes, "updated_at": self.now, "evaluate_at": self.now,
                         "id": stored.id})
        imports.update_contacts(conn, rows)
        self.report.updated += len(rows)
        return {r["id"] for r in rows}, profiled, numbers

    def _inherit_opt_outs(self, conn: Connection, numbers: Mapping[int, str]) -> int:
        """`ledger.inherit_number_opt_out` for the contacts that took a number, asked
        only for the numbers some contact opted out (one query finds them)."""
        opted_out = imports.opted_out_numbers(conn, numbers.values())
        inherited = 0
        for contact_id, phone in sorted(numbers.items()):
            if phone in opted_out:
                inherited += ledger.inherit_number_opt_out(
                    conn, self.now, contact_id=contact_id, phone=phone) is not None
        return inherited

    def _consent(self, conn: Connection, contacts: Sequence[tuple[Candidate, int]]) -> set[int]:
        """Append the file's consent decisions that change something; the contacts they
        were recorded for."""
        statuses = store.consent_statuses(conn, [cid for _, cid in contacts])
        rows: list[tuple[Any, ...]] = []
        for group, cid in contacts:
            grant = (ConsentAction.GRANTED, group.row, group.evidence)
            wanted: dict[tuple[str, str], tuple[str, int, dict[str, str]]] = {
                pair: grant for pair in self.terms.wide}
            wanted.update(group.consents)
            for (channel, purpose), (action, row, evidence) in sorted(wanted.items()):
                address = group.email if channel == Channel.EMAIL else group.phone
                if not self._needed(statuses, cid, channel, purpose, action, address):
                    continue
                basis = self.terms.basis if action == ConsentAction.GRANTED else "consent"
                proof = {**self.terms.evidence, **evidence, **self.terms.file, "row": row}
                rows.append((cid, channel, purpose, action, basis, self.terms.source, address,
                             proof, self.now))
                self.report.consents[f"{channel}:{purpose}:{action}"] += 1
        if rows:
            imports.append_consents(conn, rows, self.terms.source, self.now)
            store.bump_ledger_version(conn)
        return {row[0] for row in rows}

    def _needed(self, statuses: Mapping[tuple[int, str, str], Any], cid: int, channel: str,
                purpose: str, action: str, address: str | None) -> bool:
        current = statuses.get((cid, channel, purpose))
        if action == ConsentAction.WITHDRAWN:  # a "no": only ends a decision that counts
            return current is not None and current.action != ConsentAction.WITHDRAWN \
                and address is not None
        if address is None:
            self.report.no_address += 1
            return False
        wide = statuses.get((cid, channel, ALL_PURPOSES))
        if (current is not None and current.action == ConsentAction.WITHDRAWN) or (
                wide is not None and wide.action == ConsentAction.WITHDRAWN):
            self.report.kept_withdrawn += 1
            return False
        return not (current is not None and current.action in COUNTING_ACTIONS
                    and current.legal_basis == self.terms.basis)

    def _assess(self, conn: Connection, contact_ids: set[int]) -> None:
        """Fit (and what follows from it) derived for the contacts whose profile is new
        or changed, each change recorded with the rule that decided (`maturity.reassess`,
        for a chunk)."""
        if not contact_ids:
            return
        contacts, decay_at = ms.lock_contacts(conn, contact_ids)
        writes = maturity.Writes(self.now)
        for contact in contacts.values():
            changes = scoring.assess(contact, self.settings.scoring)
            if changes:
                writes.add(contact, changes)
        writes.flush(conn, self.settings, decay_at)


def _changes(stored: imports.StoredContact, group: Candidate) -> dict[str, Any]:
    """What the row changes of the stored contact (nothing it leaves empty)."""
    changes: dict[str, Any] = {}
    if group.phone and group.phone != stored.phone:
        changes["phone"] = group.phone
    for name in ("locale", "timezone", "country"):
        value = group.fields.get(name)
        if value and value != getattr(stored, name):
            changes[name] = value
    if group.email and group.role != stored.role_account:
        changes["role_account"] = group.role
    merged = {**stored.attributes, **group.attributes}
    if merged != stored.attributes:
        changes["attributes"] = merged
    return changes
