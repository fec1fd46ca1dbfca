"""`nurture contact export` (GDPR access) and `nurture contact forget` (erasure)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import contact_app, now, settings
from nurture.engine.build import build_runtime
from nurture.errors import NurtureError
from nurture.services import contacts, gdpr


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@contact_app.command("export")
def contact_export(
    who: Annotated[str, typer.Argument(metavar="CONTACT", help="email, E.164 phone or contact id")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="write the JSON here (default: stdout)")]
    = None,
) -> None:
    """Everything held about a contact, as JSON: profile, events, messages, consent
    history, score and stage changes, enrollments, handoffs (GDPR access)."""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = gdpr.export_contact(conn, contacts.find_contact(conn, who))
    text = json.dumps(data, default=_json_default, ensure_ascii=False, indent=2)
    if output is None:
        typer.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    typer.echo(f"exported {who} to {output}", err=True)


@output.shape("contact forget")
class ContactForgotten(output.Shape):
    """A contact erased everywhere (GDPR erasure)."""

    contact_id: int = Field(description="the id it had")
    deleted: dict[str, int] = Field(description="rows deleted, by table")
    rows: int = Field(description="rows deleted in all")
    outbox_files: int = Field(description="outbox copies of its messages deleted")
    suppressed: int = Field(description="address hashes newly put on the suppression list "
                            "(0 when they were there already)")


@contact_app.command("forget")
def contact_forget(
    who: Annotated[str, typer.Argument(metavar="CONTACT",
                                       help="email, E.164 phone or contact id")],
    yes: Annotated[bool, typer.Option("--yes", help="confirm the erasure (it cannot be "
                                                    "undone)")] = False,
    as_json: output.AsJson = False,
) -> None:
    """Erase a contact everywhere (GDPR erasure). Only a hash of its addresses stays, on
    the suppression list, so it is never imported or mailed again."""
    if not yes:
        raise NurtureError("erasure cannot be undone: add --yes to erase this contact")
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        erasure = gdpr.forget_contact(conn, contacts.find_contact(conn, who), now())
    files = gdpr.erase_outbox_files(runtime.settings.outbox_path, erasure.message_ids)
    rows = sum(erasure.deleted.values())
    data = {"contact_id": erasure.contact_id, "deleted": erasure.deleted, "rows": rows,
            "outbox_files": files, "suppressed": erasure.suppressed}
    if output.emit("contact forget", data, as_json):
        return
    typer.echo(f"contact {erasure.contact_id} erased: {rows} rows and {files} outbox files "
               f"deleted; its addresses are on the suppression list")
