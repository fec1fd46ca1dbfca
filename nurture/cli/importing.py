"""`nurture import FILE` (contacts) and `nurture event` (one event, `--at` a past time, or
`event import FILE` for many)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import Field
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from nurture.cli import output
from nurture.cli.common import app, now, pairs, settings
from nurture.engine.build import build_runtime
from nurture.errors import NurtureError
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.services import contacts
from nurture.services.event_import import (
    EventImportOptions,
    EventImportReport,
    import_events,
    record_history,
)
from nurture.services.event_rows import parse_time
from nurture.services.importing import ImportOptions, import_contacts
from nurture.services.mx import MxChecker


class _Bar:
    """The services' `Progress`, as a rich bar on stderr (stdout stays for results)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, count: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, count)


@contextmanager
def _progress(quiet: bool) -> Iterator[_Bar | None]:
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Bar(progress)


class RejectedRow(output.Shape):
    """A row refused, as written to FILE.rejected.csv."""

    row: int = Field(description="its number in the file (the `_row` column)")
    reason: str = Field(description="why, a word (the `_reason` column): no_address, "
                        "bad_email, disposable…")
    detail: str


@output.shape("import")
class ContactImport(output.Shape):
    """What a contact import did (or would do, with `--dry-run`)."""

    file: str
    dry_run: bool = Field(description="true: checked and counted, nothing written")
    rows: int = Field(description="data rows read")
    imported_rows: int = Field(description="rows not rejected")
    created: int = Field(description="contacts created")
    updated: int = Field(description="existing contacts that took new values")
    unchanged: int = Field(description="existing contacts that had the row's values already")
    duplicates_merged: int = Field(description="rows merged into an earlier row about the "
                                   "same person")
    role_accounts: int = Field(description="info@, contact@…: kept out of marketing")
    rejected: int
    rejected_by_reason: dict[str, int]
    consent_recorded: dict[str, int] = Field(description="ledger entries appended, by "
                                             "CHANNEL:PURPOSE:ACTION")
    consent_kept_withdrawn: int = Field(description="grants not recorded: the person had "
                                        "withdrawn (or texted STOP) already")
    consent_without_address: int = Field(description="grants not recorded: no address on "
                                         "that channel")
    number_opt_outs_inherited: int = Field(description="contacts that took a number which "
                                           "texted STOP: SMS withdrawn for them too")
    mx_unchecked: int = Field(description="addresses whose MX could not be checked")
    mx_resolver_given_up: bool = Field(description="the resolver failed too often: MX "
                                       "checks stopped")
    ignored_columns: list[str] = Field(description="columns not mapped to any field")
    rejected_file: str | None = Field(description="where the refused rows were written")
    rejected_rows: list[RejectedRow]


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV (`,` `;` or tab) or "
                                         "XLSX, one contact a row, a header row first")],
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="COLUMN=FIELD, repeatable: FIELD is email, phone, locale, timezone, "
                      "country, a declared attribute, consent.CHANNEL.PURPOSE, "
                      "evidence.KEY or ignore")] = None,
    consent: Annotated[list[str] | None, typer.Option(
        help="CHANNEL:PURPOSE every row consented to, repeatable (email:newsletter)")] = None,
    source: Annotated[str, typer.Option(help="the consent's source in the ledger")] = "import",
    evidence: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE kept with every consent, repeatable (wording_version=v3)")] = None,
    basis: Annotated[str, typer.Option(help="lawful basis: consent | legitimate_interest "
                                            "| contract")] = "consent",
    check_mx: Annotated[bool | None, typer.Option(
        "--check-mx/--no-check-mx", help="refuse domains without MX (default: config "
                                         "check_mx)")] = None,
    mx_timeout: Annotated[float, typer.Option(help="seconds per MX lookup")] = 2.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and count, write "
                                                            "nothing")] = False,
    encoding: Annotated[str, typer.Option(help="the CSV's text encoding")] = "utf-8-sig",
    as_json: output.AsJson = False,
) -> None:
    """Import contacts: list hygiene, duplicates merged, consent with its evidence.

    Refused rows go to FILE.rejected.csv; re-importing a file changes nothing (the
    summary counts contacts created, updated and unchanged).

    Example: nurture import crm.csv --consent email:newsletter --evidence wording_version=v3
    """
    runtime = build_runtime(settings())
    mapping = {k: str(v) for k, v in pairs(map_, "--map").items()}
    mx = runtime.settings.check_mx if check_mx is None else check_mx
    options = ImportOptions(
        mapping=mapping, consents=list(consent or []), source=source,
        evidence=pairs(evidence, "--evidence"), basis=basis, check_mx=mx,
        mx=MxChecker(timeout=mx_timeout) if mx else None, dry_run=dry_run, encoding=encoding)
    with _progress(as_json) as bar:
        report = import_contacts(runtime, file, options, now(), bar)
    data = report.as_dict()
    if output.emit("import", data, as_json):
        return
    _summary(data)


def _summary(data: dict[str, Any]) -> None:
    title = f"import of {data['file']}" + (" (dry run: nothing written)" if data["dry_run"]
                                           else "")
    rows: list[tuple[str, int]] = []
    for label, key in (("rows", "rows"), ("contacts created", "created"),
                       ("contacts updated", "updated"), ("contacts unchanged", "unchanged"),
                       ("duplicate rows merged", "duplicates_merged"),
                       ("role accounts (kept out of marketing)", "role_accounts")):
        rows.append((label, data[key]))
    for name, count in data["consent_recorded"].items():
        rows.append((f"consent {name}", count))
    for label, key in (("consent not recorded: withdrawn earlier", "consent_kept_withdrawn"),
                       ("consent not recorded: no address", "consent_without_address"),
                       ("numbers opted out earlier (SMS withdrawn)",
                        "number_opt_outs_inherited"),
                       ("MX not checked (resolver)", "mx_unchecked")):
        if data[key]:
            rows.append((label, data[key]))
    rows.append(("rejected", data["rejected"]))
    rows += [(f"  {reason}", count) for reason, count in data["rejected_by_reason"].items()]
    items: list[Any] = [output.table(title, ["", "count"], rows, right=["count"])]
    if data["ignored_columns"]:
        items.append(escape(f"ignored columns: {', '.join(data['ignored_columns'])} "
                            "(map them with --map COLUMN=FIELD)"))
    if data["rejected_file"]:
        items.append(escape(f"rejected rows: {data['rejected_file']}"))
    output.show(*items)


# ---- events ---------------------------------------------------------------------------


class _EventCommands(TyperGroup):
    """`nurture event WHO TYPE …` is `nurture event record WHO TYPE …`: only `import`
    (and `record`) are subcommands."""

    # typed loosely: Typer keeps its own copy of click's types
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "record", self.commands["record"], args
        return super().resolve_command(ctx, args)


event_app = typer.Typer(cls=_EventCommands, no_args_is_help=True,
                        help="Record an event (`nurture event WHO TYPE`), or load past "
                             "events from a file (`nurture event import FILE`).")
app.add_typer(event_app, name="event")


@output.shape("event", "event record")
class EventRecorded(output.Shape):
    """One event recorded for a contact, or found recorded already (same `--id`)."""

    event_id: int | None = Field(description="the stored event's id; null when nothing was "
                                 "stored (a replay) or for a past event (`--at`)")
    contact_id: int
    type: str
    source: Literal["cli"] = Field(description="events recorded here have source cli")
    source_event_id: str | None = Field(description="`--id`: with the source, what makes "
                                        "a replay")
    occurred_at: datetime
    past: bool = Field(description="recorded with `--at`: scored as of then, resumes no "
                       "wait and triggers no journey")
    change: Literal["created", "unchanged"] = Field(
        description="created: stored and applied; unchanged: already recorded (same --id), "
                    "nothing done")


@event_app.command("record")
def event_record(
    who: Annotated[str, typer.Argument(metavar="CONTACT",
                                       help="email, E.164 phone or contact id")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="page.viewed, "
                                                                   "content.downloaded…")],
    prop: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    source_id: Annotated[str | None, typer.Option("--id", help="source event id")] = None,
    at: Annotated[str | None, typer.Option(
        help="when it happened (ISO 8601 with a zone): scored as of then, with decay "
             "since; a past event resumes no wait and triggers no journey")] = None,
    as_json: output.AsJson
    = False,
) -> None:
    """Record an event for a contact (scores, resumes waits, may change stage)."""
    runtime = build_runtime(settings())
    clock = now()
    occurred = _past(at, clock) if at else clock
    with runtime.db.begin() as conn:
        contact = contacts.find_contact(conn, who)
        event = IncomingEvent(type=event_type, source="cli", occurred_at=occurred,
                              contact_id=contact.id, source_event_id=source_id,
                              properties=pairs(prop, "--prop"))
        event_id = None if at else ingest(conn, runtime, event, clock)
    if at:
        report = EventImportReport(file="", dry_run=False)
        record_history(runtime, [(0, event)], clock, EventImportOptions(source="cli"),
                       report)
        created = report.stored > 0
    else:
        created = event_id is not None
    data = {"event_id": event_id, "contact_id": contact.id, "type": event_type,
            "source": "cli", "source_event_id": source_id, "occurred_at": occurred,
            "past": bool(at), "change": "created" if created else "unchanged"}
    if output.emit("event", data, as_json):
        return
    if not created:
        typer.echo(f"unchanged event {source_id}: already recorded for {who} (same --id): "
                   "no change")
        return
    stored = f"created event {event_id}" if event_id else "created event"
    as_of = (f" as of {output.when(occurred, output.zone_named(contact.timezone))}, scored "
             "as of then" if at else "")
    typer.echo(f"{stored}: {event_type} for {who}{as_of}")


def _past(text: str, clock: datetime) -> datetime:
    found = parse_time(text)
    if isinstance(found, str):
        raise NurtureError(f"--at: {found.replace('occurred_at ', '')}")
    if found > clock:
        raise NurtureError(f"--at {text}: in the future")
    return found


@output.shape("event import")
class EventImport(output.Shape):
    """What an event import did (or would do, with `--dry-run`)."""

    file: str
    dry_run: bool = Field(description="true: checked and counted, nothing written")
    rows: int = Field(description="data rows (or lines) read")
    created: int = Field(description="events stored and scored")
    updated: int = Field(description="always 0: a stored event is never changed")
    unchanged: int = Field(description="events stored already (same source and id): "
                           "nothing done")
    late: int = Field(description="events older than their contact's last decay: their "
                      "points count in full from it")
    contacts: int = Field(description="contacts whose events were stored")
    opt_outs: int = Field(description="opt-outs (STOP, unsubscribe) among them")
    by_type: dict[str, int] = Field(description="events stored, by type")
    rejected: int
    rejected_by_reason: dict[str, int]
    rejected_file: str | None = Field(description="where the refused rows were written")
    rejected_rows: list[RejectedRow]


def event_counts(data: dict[str, Any]) -> dict[str, Any]:
    """`EventImportReport.as_dict()` as `EventImport` counts it (created / unchanged)."""
    found = {k: v for k, v in data.items() if k not in ("stored", "replays")}
    return {**found, "created": data["stored"], "updated": 0, "unchanged": data["replays"]}


@event_app.command("import")
def event_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV/XLSX (email|phone|"
                                         "contact_id, type, occurred_at, id, prop.KEY…) or "
                                         "JSON lines")],
    source: Annotated[str, typer.Option(help="the events' source: with their ids, what "
                                             "makes a replay")] = "import",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and count, write "
                                                            "nothing")] = False,
    encoding: Annotated[str, typer.Option(help="the file's text encoding")] = "utf-8-sig",
    as_json: output.AsJson = False,
) -> None:
    """Load past events: stored once, scored in time order as of their own time.

    Points decay between a contact's events and up to now; refused rows go to
    FILE.rejected.csv."""
    runtime = build_runtime(settings())
    options = EventImportOptions(source=source, dry_run=dry_run, encoding=encoding)
    with _progress(as_json) as bar:
        report = import_events(runtime, file, options, now(), bar)
    data = event_counts(report.as_dict())
    if output.emit("event import", data, as_json):
        return
    rows: list[tuple[str, int]] = [
        ("rows", data["rows"]), ("created (stored)", data["created"]),
        ("unchanged (stored already)", data["unchanged"]), ("late", data["late"]),
        ("contacts", data["contacts"]), ("opt-outs", data["opt_outs"])]
    rows += [(f"  {name}", count) for name, count in data["by_type"].items()]
    rows.append(("rejected", data["rejected"]))
    rows += [(f"  {reason}", count) for reason, count in data["rejected_by_reason"].items()]
    title = f"events from {data['file']}" + (" (dry run: nothing written)" if dry_run else "")
    items: list[Any] = [output.table(title, ["", "count"], rows, right=["count"])]
    if data["rejected_file"]:
        items.append(escape(f"rejected rows: {data['rejected_file']}"))
    output.show(*items)
