"""`nurture contact add|show` and `nurture consent grant|withdraw`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from pydantic import Field

from nurture.cli import output
from nurture.cli.common import consent_app, contact_app, now, pairs, settings
from nurture.engine.build import build_runtime
from nurture.intake import ledger
from nurture.services import contacts
from nurture.views import shown_score
from nurture.vocab import (
    Channel,
    ConsentAction,
    EnrollmentState,
    LegalBasis,
    MessageKind,
    MessageState,
    Stage,
    Temperature,
)

Change = output.Change

Who = Annotated[str, typer.Argument(metavar="CONTACT",
                                   help="email, E.164 phone or contact id")]
Channel_ = Annotated[str, typer.Option("--channel", help="email or sms")]
Purpose = Annotated[str, typer.Option(help="a purpose from config (granted one at a time)")]
AnyPurpose = Annotated[str, typer.Option(help="a purpose from config, or * for the whole "
                                              "channel")]
Source = Annotated[str, typer.Option(help="where it came from: form id, cli, import…")]
Evidence = Annotated[list[str] | None, typer.Option(help="key=value, repeatable")]


def fields_of(model: type[output.Shape], row: dict[str, Any]) -> dict[str, Any]:
    """The row's values the model shows (a stored row has more columns than it prints)."""
    return {name: row[name] for name in model.model_fields if name in row}


# ---- contact add ------------------------------------------------------------------------


@output.shape("contact add")
class ContactAdded(output.Shape):
    """A contact created, updated or found as it was."""

    contact_id: int
    email: str | None = Field(description="the stored (normalized) address")
    phone: str | None = Field(description="the stored E.164 number")
    change: Change = Field(description="created: a new contact; updated: the contact with "
                           "this email (or phone) took new values; unchanged: it had them "
                           "already (nothing was written)")
    fields: list[str] = Field(description="the fields that changed (`attributes.KEY` for an "
                              "attribute); empty unless updated")


@contact_app.command("add")
def contact_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="the contact's email address "
                                         "(the contact with it is updated if there is one)")],
    phone: Annotated[str | None, typer.Option(help="mobile number, E.164 (+33612345678) or "
                                              "national for the default region")] = None,
    locale: Annotated[str | None, typer.Option(help="a locale from config: fr, en…")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone for send windows, e.g. "
                                                 "Europe/Paris")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166 country code, e.g. FR")] = None,
    attr: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    as_json: output.AsJson = False,
) -> None:
    """Add a contact (or update the one with this email), and say which: created,
    updated (naming the fields that changed) or unchanged.

    Example: nurture contact add camille@example.com --locale fr --attr first_name=Camille
    """
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        saved = contacts.save_contact(conn, runtime.settings, now(), email=email, phone=phone,
                                      locale=locale, timezone=timezone, country=country,
                                      attributes=pairs(attr, "--attr"))
        row = contacts.find_contact(conn, str(saved.contact_id))
    data = {"contact_id": saved.contact_id, "email": row.email, "phone": row.phone,
            "change": saved.change, "fields": list(saved.fields)}
    if output.emit("contact add", data, as_json):
        return
    what = ", ".join(saved.fields) if saved.change == "updated" else row.email or row.phone
    typer.echo(f"{saved.change} contact {saved.contact_id}: {what}")


# ---- contact show -----------------------------------------------------------------------


class Profile(output.Shape):
    """The contact's profile and where it stands."""

    id: int
    email: str | None
    phone: str | None = Field(description="E.164")
    locale: str
    timezone: str = Field(description="IANA zone: send windows, and the zone its times "
                          "are shown in for people")
    country: str | None = Field(description="ISO 3166 code")
    attributes: dict[str, Any] = Field(description="the declared attributes it has (open)")
    stage: Stage
    temperature: Temperature
    score: float = Field(description="engagement score, one decimal")
    fit: float = Field(description="profile fit, one decimal")
    role_account: bool = Field(description="info@, contact@…: kept out of marketing")
    created_at: datetime
    updated_at: datetime
    stage_changed_at: datetime | None
    evaluate_at: datetime | None = Field(description="when journeys' entry is next checked")
    decay_at: datetime | None = Field(description="when its score next decays")


class FieldChange(output.Shape):
    """One explained change of score, fit, temperature, stage or an attribute."""

    id: int
    field: str = Field(description="score, fit, temperature, stage or attributes.KEY")
    old: str
    new: str
    delta: float | None = Field(description="points added (score and fit)")
    rule: str = Field(description="the scoring rule, `qualification`, `sales`… that made it")
    event_id: int | None = Field(description="the event that caused it")
    reason: str
    at: datetime


class StepRun(output.Shape):
    """One step an enrollment took."""

    step_id: str | None
    kind: str = Field(description="the step's type: send, wait, branch, wait_for…")
    outcome: str = Field(description="what it did: the branch case, an event or timeout…")
    detail: str
    at: datetime
    until: datetime | None = Field(description="what it waits until, for a wait")
    journey_version: str


class Enrollment(output.Shape):
    """The contact in one journey."""

    id: int
    journey_id: str
    journey_version: str
    purpose: str
    step_id: str | None = Field(description="the step it is at")
    state: EnrollmentState
    next_run_at: datetime | None
    wait_event: str | None = Field(description="the event a wait_for waits for")
    entered_at: datetime
    ended_at: datetime | None
    end_reason: str
    last_error: str
    steps: list[StepRun] = Field(description="the path taken, in order")


class Message(output.Shape):
    """A message sent, being sent, or skipped (with why)."""

    id: int
    public_id: str
    kind: MessageKind
    journey_id: str | None
    step_id: str | None
    channel: Channel
    purpose: str
    template: str
    variant: str | None = Field(description="the A/B variant it was sent in")
    locale: str
    state: MessageState
    skip_reason: str | None = Field(description="why a gate refused it (skipped only)")
    error: str
    subject: str
    segments: int = Field(description="SMS segments (0 for email)")
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None = Field(description="next retry (retrying only)")


class ConsentEntry(output.Shape):
    """One consent ledger record, with its evidence."""

    id: int
    channel: Channel
    purpose: str = Field(description="a purpose from config, or * for the whole channel")
    action: ConsentAction
    legal_basis: LegalBasis
    source: str
    address: str
    evidence: dict[str, Any] = Field(description="what proves it (open: form wording, ip…)")
    recorded_at: datetime


class Event(output.Shape):
    """An event of the contact (newest first, at most 200)."""

    id: int
    type: str
    source: str
    source_event_id: str | None
    occurred_at: datetime
    received_at: datetime
    message_id: int | None = Field(description="the message it is about (opens, clicks…)")
    properties: dict[str, Any] = Field(description="the event's own properties (open)")


@output.shape("contact show")
class ContactShown(output.Shape):
    """Everything a person needs to understand a contact."""

    contact: Profile
    changes: list[FieldChange] = Field(description="why its score, fit, temperature and "
                                       "stage are what they are, oldest first")
    enrollments: list[Enrollment]
    messages: list[Message] = Field(description="newest first, at most 200")
    consent: list[ConsentEntry] = Field(description="the ledger, oldest first")
    events: list[Event]


def shown(data: dict[str, Any]) -> dict[str, Any]:
    """`contacts.describe`'s rows as `ContactShown` has them (scores one decimal)."""
    profile = fields_of(Profile, data["contact"])
    profile.update(score=shown_score(profile["score"]), fit=shown_score(profile["fit"]))
    return {
        "contact": profile,
        "changes": [fields_of(FieldChange, row) for row in data["changes"]],
        "enrollments": [{**fields_of(Enrollment, row),
                         "steps": [fields_of(StepRun, step) for step in row["steps"]]}
                        for row in data["enrollments"]],
        "messages": [fields_of(Message, row) for row in data["messages"]],
        "consent": [fields_of(ConsentEntry, row) for row in data["consent"]],
        "events": [fields_of(Event, row) for row in data["events"]],
    }


@contact_app.command("show")
def contact_show(who: Who, as_json: output.AsJson = False, wide: output.Wide = False) -> None:
    """Profile, score and stage explained, journeys, messages (with skip reasons), consent.

    Times are in the contact's own zone, named (UTC in JSON)."""
    from nurture.cli.explain import print_contact

    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        data = shown(contacts.describe(conn, contacts.find_contact(conn, who)))
    if not output.emit("contact show", data, as_json):
        print_contact(data)


# ---- consent ----------------------------------------------------------------------------


@output.shape("consent grant", "consent withdraw")
class ConsentRecorded(output.Shape):
    """A consent decision appended to the ledger, and what it did to the state in force."""

    record_id: int = Field(description="the ledger record appended (always: a decision "
                           "said again is evidence too)")
    contact_id: int
    channel: Channel
    purpose: str = Field(description="a purpose from config, or * for the whole channel")
    action: ConsentAction
    legal_basis: LegalBasis
    source: str
    change: Change = Field(description="created: the first decision for this channel and "
                           "purpose; updated: the action or basis in force changed; "
                           "unchanged: it already was so")
    previous: ConsentAction | None = Field(description="the action in force before it")


def _consent(command: str, action: str, who: str, channel: str, purpose: str, source: str,
             basis: str, evidence: list[str] | None, as_json: bool) -> None:
    runtime = build_runtime(settings())
    with runtime.db.begin() as conn:
        contact = contacts.find_contact(conn, who)
        recorded = ledger.record(conn, runtime.settings, now(), contact=contact,
                                 channel=channel, purpose=purpose, action=action,
                                 source=source, legal_basis=basis,
                                 evidence=pairs(evidence, "--evidence"))
    data = {"record_id": recorded.record_id, "contact_id": contact.id, "channel": channel,
            "purpose": purpose, "action": action, "legal_basis": basis, "source": source,
            "change": recorded.change, "previous": recorded.previous}
    if output.emit(command, data, as_json):
        return
    said = f"{recorded.change} consent record {recorded.record_id}: {action} {channel}/{purpose}"
    if recorded.change == "unchanged":
        typer.echo(f"{said} for {who} already; appended to the ledger as evidence")
    elif recorded.change == "updated":
        typer.echo(f"{said} for {who} (was {recorded.previous})")
    else:
        typer.echo(f"{said} for {who}")


@consent_app.command("grant")
def consent_grant(who: Who, channel: Channel_, purpose: Purpose, source: Source = "cli",
                  basis: Annotated[str, typer.Option(help="consent | legitimate_interest "
                                                     "| contract")] = "consent",
                  evidence: Evidence = None, as_json: output.AsJson = False) -> None:
    """Record consent (or another lawful basis) for a channel and purpose."""
    _consent("consent grant", "granted", who, channel, purpose, source, basis, evidence,
             as_json)


@consent_app.command("withdraw")
def consent_withdraw(who: Who, channel: Channel_, purpose: AnyPurpose, source: Source = "cli",
                     evidence: Evidence = None, as_json: output.AsJson = False) -> None:
    """Record a withdrawal: nothing more is sent for that channel and purpose."""
    _consent("consent withdraw", "withdrawn", who, channel, purpose, source, "consent",
             evidence, as_json)
