"""`nurture import FILE` (contacts) and `nurture event` (one event, `--at` a past time, or
`event import FILE` for many)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from nurture.cli.common import app, console, emit, now, pairs, settings
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


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="CSV (`,` `;` or tab) or XLSX, one contact "
                                              "a row, a header row first")],
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Import contacts: list hygiene, duplicates merged, consent with its evidence.

    Refused rows go to FILE.rejected.csv; re-importing a file changes nothing."""
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
    if emit(data, as_json):
        return
    _summary(data)


def _summary(data: dict[str, Any]) -> None:
    title = f"import of {data['file']}" + (" (dry run: nothing written)" if data["dry_run"]
                                           else "")
    table = Table(title=title)
    table.add_column("")
    table.add_column("count", justify="right")
    for label, key in (("rows", "rows"), ("contacts created", "created"),
                       ("contacts updated", "updated"), ("contacts unchanged", "unchanged"),
                       ("duplicate rows merged", "duplicates_merged"),
                       ("role accounts (kept out of marketing)", "role_accounts")):
        table.add_row(label, str(data[key]))
    for name, count in data["consent_recorded"].items():
        table.add_row(f"consent {name}", str(count))
    for label, key in (("consent not recorded: withdrawn earlier", "consent_kept_withdrawn"),
                       ("consent not recorded: no address", "consent_without_address"),
                       ("numbers opted out earlier (SMS withdrawn)",
                        "number_opt_outs_inherited"),
                       ("MX not checked (resolver)", "mx_unchecked")):
        if data[key]:
            table.add_row(label, str(data[key]))
    table.add_row("rejected", str(data["rejected"]))
    for reason, count in data["rejected_by_reason"].items():
        table.add_row(f"  {reason}", str(count))
    console.print(table)
    if data["ignored_columns"]:
        console.print(f"ignored columns: {', '.join(data['ignored_columns'])} "
                      "(map them with --map COLUMN=FIELD)")
    if data["rejected_file"]:
        console.print(f"rejected rows: {data['rejected_file']}")


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


@event_app.command("record")
def event_record(
    who: Annotated[str, typer.Argument(help="email, E.164 phone or contact id")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="page.viewed, "
                                                                   "content.downloaded…")],
    prop: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    source_id: Annotated[str | None, typer.Option("--id", help="source event id")] = None,
    at: Annotated[str | None, typer.Option(
        help="when it happened (ISO 8601 with a zone): scored as of then, with decay "
             "since; a past event resumes no wait and triggers no journey")] = None,
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
    if not at:
        typer.echo(f"event {event_id}" if event_id else
                   "already recorded (same --id): no change")
        return
    report = EventImportReport(file="", dry_run=False)
    record_history(runtime, [(0, event)], clock, EventImportOptions(source="cli"), report)
    typer.echo(f"event recorded as of {occurred.isoformat()}" if report.stored else
               "already recorded (same --id): no change")


def _past(text: str, clock: datetime) -> datetime:
    found = parse_time(text)
    if isinstance(found, str):
        raise NurtureError(f"--at: {found.replace('occurred_at ', '')}")
    if found > clock:
        raise NurtureError(f"--at {text}: in the future")
    return found


@event_app.command("import")
def event_import(
    file: Annotated[Path, typer.Argument(help="CSV/XLSX (email|phone|contact_id, type, "
                                              "occurred_at, id, prop.KEY…) or JSON lines")],
    source: Annotated[str, typer.Option(help="the events' source: with their ids, what "
                                             "makes a replay")] = "import",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and count, write "
                                                            "nothing")] = False,
    encoding: Annotated[str, typer.Option(help="the file's text encoding")] = "utf-8-sig",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Load past events: stored once, scored in time order as of their own time.

    Points decay between a contact's events and up to now; refused rows go to
    FILE.rejected.csv."""
    runtime = build_runtime(settings())
    options = EventImportOptions(source=source, dry_run=dry_run, encoding=encoding)
    with _progress(as_json) as bar:
        report = import_events(runtime, file, options, now(), bar)
    data = report.as_dict()
    if emit(data, as_json):
        return
    table = Table(title=f"events from {data['file']}" + (" (dry run)" if dry_run else ""))
    table.add_column("")
    table.add_column("count", justify="right")
    for label in ("rows", "stored", "replays", "late", "contacts", "opt_outs", "rejected"):
        table.add_row(label.replace("_", "-"), str(data[label]))
    for name, count in data["by_type"].items():
        table.add_row(f"  {name}", str(count))
    for reason, count in data["rejected_by_reason"].items():
        table.add_row(f"  rejected: {reason}", str(count))
    console.print(table)
    if data["rejected_file"]:
        console.print(f"rejected rows: {data['rejected_file']}")
