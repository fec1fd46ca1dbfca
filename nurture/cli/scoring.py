"""`nurture stage EMAIL STAGE --reason R`: sales move a contact (accept, customer, recycle)."""

from __future__ import annotations

from typing import Annotated

import typer

from nurture.cli.common import app, emit, now, settings
from nurture.engine.build import build_runtime
from nurture.intake import maturity
from nurture.services import contacts
from nurture.vocab import Stage

_STAGES = ", ".join(s.value for s in Stage)


@app.command("stage")
def stage(
    who: Annotated[str, typer.Argument(help="email, E.164 phone or contact id")],
    new_stage: Annotated[str, typer.Argument(metavar="STAGE", help=_STAGES)],
    reason: Annotated[str, typer.Option(help="why (kept; required to recycle)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Set a contact's stage as sales decided: sales_accepted, customer, recycled…"""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        contact = contacts.find_contact(conn, who)
        change = maturity.set_stage(conn, runtime, contact.id, new_stage, reason, now())
    data = {"contact_id": contact.id, "previous": change.old if change else contact.stage,
            "stage": new_stage, "changed": change is not None, "reason": reason}
    if emit(data, as_json):
        return
    if change is None:
        typer.echo(f"{who} is already {new_stage}: no change")
    else:
        typer.echo(f"{who}: {change.old} → {change.new}" + (f" ({reason})" if reason else ""))
