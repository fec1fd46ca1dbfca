"""`nurture stage EMAIL STAGE --reason R`: sales move a contact (accept, customer, recycle)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import app, now, settings
from nurture.engine.build import build_runtime
from nurture.intake import maturity
from nurture.services import contacts
from nurture.vocab import Stage

_STAGES = ", ".join(s.value for s in Stage)


@output.shape("stage")
class StageSet(output.Shape):
    """A contact's stage as sales set it."""

    contact_id: int
    previous: Stage = Field(description="the stage before")
    stage: Stage
    change: Literal["updated", "unchanged"] = Field(
        description="updated: it moved (journeys it no longer fits are left); unchanged: it "
                    "was already there")
    reason: str = Field(description="why, as given (`--reason`)")


@app.command("stage")
def stage(
    who: Annotated[str, typer.Argument(metavar="CONTACT",
                                       help="email, E.164 phone or contact id")],
    new_stage: Annotated[str, typer.Argument(metavar="STAGE", help=_STAGES)],
    reason: Annotated[str, typer.Option(help="why (kept; required to recycle)")] = "",
    as_json: output.AsJson = False,
) -> None:
    """Set a contact's stage as sales decided: sales_accepted, customer, recycled…"""
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        contact = contacts.find_contact(conn, who)
        change = maturity.set_stage(conn, runtime, contact.id, new_stage, reason, now())
    data = {"contact_id": contact.id, "previous": change.old if change else contact.stage,
            "stage": new_stage, "change": "updated" if change else "unchanged",
            "reason": reason}
    if output.emit("stage", data, as_json):
        return
    if change is None:
        typer.echo(f"unchanged contact {contact.id}: {who} is already {new_stage}")
    else:
        typer.echo(f"updated contact {contact.id}: stage {change.old} → {change.new}"
                   + (f" ({reason})" if reason else ""))
