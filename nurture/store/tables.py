"""SQLModel tables. Every timestamp is timezone-aware UTC (see `UTCDateTime`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from nurture.store.codec import UTCDateTime


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Contact(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, unique=True)
    phone: str | None = Field(default=None, index=True)
    locale: str = "en"
    timezone: str = "Europe/Paris"
    country: str | None = None
    attributes: dict[str, Any] = _json()
    stage: str = Field(default="lead", index=True)
    temperature: str = "cold"
    score: float = 0.0
    fit: float = 0.0
    #: role account (info@…): kept out of marketing unless config allows
    role_account: bool = False
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    stage_changed_at: datetime | None = _ts(nullable=True)
    #: when set and due, the contact's journey entries are (re)evaluated
    evaluate_at: datetime | None = _ts(nullable=True, index=True)
    #: next scheduled score decay
    decay_at: datetime | None = _ts(nullable=True, index=True)


#: a live enrollment holds the contact's place in its journey (blocked ones included: they
#: resume where they stand once the fix is applied)
LIVE_SQL = text("state IN ('active', 'waiting', 'paused', 'blocked')")


class Enrollment(SQLModel, table=True):
    """One contact in one journey: where it stands and when it runs next."""

    __table_args__ = (
        Index("ix_enrollment_contact_journey", "contact_id", "journey_id"),
        # at most one live enrollment per contact and journey, even with several daemons
        Index("uq_enrollment_live", "contact_id", "journey_id", unique=True,
              sqlite_where=LIVE_SQL, postgresql_where=LIVE_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id")
    journey_id: str
    journey_version: str
    purpose: str
    exclusive: bool = True
    step_id: str | None = None
    #: number of steps executed: makes each step run addressable (message idempotency)
    seq: int = 0
    state: str = Field(default="active", index=True)
    #: set only while the enrollment is due at that time (the tick's indexed query)
    next_run_at: datetime | None = _ts(nullable=True, index=True)
    #: the event type a wait_for step waits on
    wait_event: str | None = None
    #: the wait or wait_for step it is waiting in (`nurture plan` counts who waits on a
    #: changed wait; the path trace tells a wait_for's outcome)
    wait_step: str | None = None
    entered_at: datetime = _ts()
    updated_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    end_reason: str = ""
    last_error: str = ""
    claimed_by: str | None = None
    claimed_until: datetime | None = _ts(nullable=True)


SENDING_SQL = text("state = 'sending'")
RETRYING_SQL = text("state = 'retrying'")
HAS_PROVIDER_ID_SQL = text("provider_message_id IS NOT NULL")


class Message(SQLModel, table=True):
    """A message is recorded before the provider call: the at-most-once anchor."""

    __table_args__ = (
        UniqueConstraint("enrollment_id", "seq", name="uq_message_enrollment_seq"),
        Index("ix_message_contact_created", "contact_id", "created_at"),
        # partial indexes: only the few rows in flight or awaiting a retry are indexed,
        # so recording a batch of messages maintains fewer index entries
        Index("ix_message_sending_lease", "lease_until", sqlite_where=SENDING_SQL,
              postgresql_where=SENDING_SQL),
        Index("ix_message_retry_due", "next_attempt_at", sqlite_where=RETRYING_SQL,
              postgresql_where=RETRYING_SQL),
        Index("ix_message_provider_id", "provider_message_id",
              sqlite_where=HAS_PROVIDER_ID_SQL, postgresql_where=HAS_PROVIDER_ID_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: our opaque message id, given to providers (custom args, status callback)
    public_id: str = Field(unique=True)
    contact_id: int = Field(foreign_key="contact.id")
    enrollment_id: int | None = None
    seq: int | None = None
    journey_id: str | None = None
    step_id: str | None = None
    #: journey (a step), confirmation (double opt-in) or notification (to sales)
    kind: str = "journey"
    channel: str
    purpose: str
    template: str
    #: the variant of an A/B-tested send step this message is (its template); else None
    variant: str | None = None
    locale: str = ""
    state: str
    skip_reason: str | None = None
    error: str = ""
    to_address: str = ""
    subject: str = ""
    body_text: str = ""
    segments: int = 0
    provider: str = ""
    provider_message_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    #: the rendered message kept while a retry is pending (provider call failed retryably)
    retry_payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    #: a message still `sending` after this time is marked `unknown`, never resent
    lease_until: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class Event(SQLModel, table=True):
    """A normalized event, stored once per (source, source_event_id)."""

    __table_args__ = (
        UniqueConstraint("source", "source_event_id", name="uq_event_source_id"),
        Index("ix_event_contact_type_time", "contact_id", "type", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    type: str
    source: str
    source_event_id: str | None = None
    occurred_at: datetime = _ts()
    received_at: datetime = _ts()
    message_id: int | None = Field(default=None, index=True)
    properties: dict[str, Any] = _json()
    raw: dict[str, Any] = _json()


class ConsentRecord(SQLModel, table=True):
    """Append-only consent ledger (GDPR art. 7(1)): who, when, how, what they were told."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    channel: str
    #: a purpose, or `*` for every purpose of the channel (e.g. SMS STOP)
    purpose: str
    action: str
    legal_basis: str = "consent"
    source: str
    #: indexed: a STOP speaks for the number, whoever holds it now
    address: str = Field(default="", index=True)
    evidence: dict[str, Any] = _json()
    recorded_at: datetime = _ts()


class ConsentState(SQLModel, table=True):
    """The current decision per (contact, channel, purpose), derived from the ledger."""

    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    channel: str = Field(primary_key=True)
    purpose: str = Field(primary_key=True)
    action: str
    legal_basis: str = "consent"
    record_id: int
    updated_at: datetime = _ts()


class Suppression(SQLModel, table=True):
    """Addresses never to message again, kept only as a hash (survives erasure)."""

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(unique=True)
    reason: str
    detail: str = ""
    created_at: datetime = _ts()


class ContactChange(SQLModel, table=True):
    """Why a score, fit, temperature, stage or attribute changed: rule, event, time."""

    __table_args__ = (Index("ix_change_contact_rule_at", "contact_id", "rule", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id")
    field: str
    old: str = ""
    new: str = ""
    delta: float | None = None
    rule: str = ""
    event_id: int | None = None
    reason: str = ""
    at: datetime = _ts()


class Handoff(SQLModel, table=True):
    """A sales handoff: webhook POST (retried) and optional notification email."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    reason: str
    payload: dict[str, Any] = _json()
    notify: bool = True
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True, index=True)
    last_error: str = ""
    created_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)


class LedgerVersion(SQLModel, table=True):
    """Moves forward in every transaction that changes consent or the suppression list.

    The send path compares it, just before each provider call, with the value it read
    with its snapshot of consent: any withdrawal or suppression committed since then
    makes it look again. A counter updated in the writers' own transactions is seen in
    commit order (a sequence's ids are not, on PostgreSQL)."""

    name: str = Field(primary_key=True)
    version: int = 0


class JourneyVersion(SQLModel, table=True):
    """Each applied version of a journey file (`nurture plan` / `apply`), with its source:
    the daemon runs these, never the files, and an enrollment the version it entered."""

    journey_id: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    path: str = ""
    source: str = ""
    applied_at: datetime = _ts()


class JourneyState(SQLModel, table=True):
    """What is applied of each journey: its current version (None once removed), whether
    an operator paused it, and the entry sweep over every contact still to finish."""

    journey_id: str = Field(primary_key=True)
    version: str | None = None
    paused: bool = False
    #: contacts with a greater id are still to be evaluated against its entry
    sweep_after: int | None = None
    applied_at: datetime = _ts()
    removed_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class StepRun(SQLModel, table=True):
    """One step an enrollment took, with what it decided: the path trace of `contact show`
    (branch case chosen, wait_for outcome and its time, why it blocked)."""

    __table_args__ = (Index("ix_steprun_enrollment", "enrollment_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int
    contact_id: int = Field(index=True)
    journey_id: str
    journey_version: str
    step_id: str | None = None
    #: the step's type (send, wait, branch…), or entry / end / operator
    kind: str
    #: what happened: sent, skipped, waiting, event, timeout, case 1, else, blocked…
    outcome: str
    detail: str = ""
    at: datetime = _ts()
    #: when the wait it started ends (a wait's end, a wait_for's timeout)
    until: datetime | None = _ts(nullable=True)


class SendPace(SQLModel, table=True):
    """When each sender may send next, shared by every daemon (`store.pacing`)."""

    sender: str = Field(primary_key=True)
    #: seconds since the epoch, on the database's clock (a pacing clock, not a date)
    free_at: float = 0.0


class DaemonBeat(SQLModel, table=True):
    """Each daemon's last tick and what it did (`nurture status`, `/healthz`)."""

    worker: str = Field(primary_key=True)
    started_at: datetime = _ts()
    last_tick_at: datetime = _ts()
    last_report: dict[str, Any] = _json()
