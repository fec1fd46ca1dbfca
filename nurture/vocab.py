"""The fixed vocabulary shared by every layer."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

#: what a command (or the service under it) did to the one thing it names
WhatChanged = Literal["created", "updated", "unchanged"]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Stage(StrEnum):
    #: interacted once, nurtured by journeys
    LEAD = "lead"
    #: qualified (fit + engaged, or a strong signal): handed to sales
    PROSPECT = "prospect"
    #: sales accepted the prospect and works it
    SALES_ACCEPTED = "sales_accepted"
    #: converted
    CUSTOMER = "customer"
    #: sent back to nurture by sales (reason kept)
    RECYCLED = "recycled"


class Temperature(StrEnum):
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


class EnrollmentState(StrEnum):
    #: due at next_run_at
    ACTIVE = "active"
    #: waiting for an event (or its timeout at next_run_at)
    WAITING = "waiting"
    #: paused by a human reply (stop-on-reply)
    PAUSED = "paused"
    #: reached the end or an exit step
    COMPLETED = "completed"
    #: left because exit_when / goal held, or moved to another journey
    EXITED = "exited"
    #: stopped by an error recorded in last_error
    FAILED = "failed"
    #: held at its step by an error a person can fix (last_error says which); resumes
    #: there once the fix is applied (`nurture apply`) or `nurture retry` is run
    BLOCKED = "blocked"


LIVE_ENROLLMENT_STATES = (EnrollmentState.ACTIVE, EnrollmentState.WAITING, EnrollmentState.PAUSED,
                          EnrollmentState.BLOCKED)


class MessageState(StrEnum):
    #: recorded, handed to the provider; outcome not yet known
    SENDING = "sending"
    #: the provider accepted it
    SENT = "sent"
    #: the provider failed in a retryable way; retried at next_attempt_at
    RETRYING = "retrying"
    DELIVERED = "delivered"
    #: permanent provider failure (invalid address, opted out…)
    FAILED = "failed"
    BOUNCED = "bounced"
    #: a gate refused it; skip_reason says why
    SKIPPED = "skipped"
    #: a crash happened between record and provider answer: never resent
    UNKNOWN = "unknown"


#: states that count as "a message went (or may have gone) out" for frequency caps
PRESSURE_STATES = (
    MessageState.SENDING,
    MessageState.SENT,
    MessageState.RETRYING,
    MessageState.DELIVERED,
    MessageState.UNKNOWN,
)


class SkipReason(StrEnum):
    #: no recorded consent / lawful basis for this channel and purpose
    NO_CONSENT = "no_consent"
    #: the address is on the suppression list (bounce, complaint, erasure)
    SUPPRESSED = "suppressed"
    #: the frequency cap for this contact is reached
    FREQUENCY_CAP = "frequency_cap"
    #: the contact has no address for this channel
    NO_ADDRESS = "no_address"
    #: role account (info@, contact@…) kept out of marketing by config
    ROLE_ACCOUNT = "role_account"
    #: the template failed to render for this contact
    RENDER_ERROR = "render_error"
    #: the rendered SMS needs more segments than `[sms] max_segments` allows
    TOO_LONG = "too_long"
    #: no sender identity may send to this number (alphanumeric sender to +1)
    NO_SENDER = "no_sender"


class MessageKind(StrEnum):
    #: a journey's send step: needs consent for its channel and purpose
    JOURNEY = "journey"
    #: a double opt-in confirmation the person asked for (no marketing consent needed)
    CONFIRMATION = "confirmation"
    #: an email to our own team (sales handoff notification)
    NOTIFICATION = "notification"


class ConsentAction(StrEnum):
    #: consent (or another lawful basis) granted
    GRANTED = "granted"
    #: double opt-in requested, not yet confirmed: does not count
    PENDING = "pending"
    #: double opt-in confirmed: counts from now
    CONFIRMED = "confirmed"
    #: consent withdrawn (or objection made)
    WITHDRAWN = "withdrawn"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    #: B2B prospection, soft opt-in of existing customers
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


#: the purpose wildcard: a withdrawal for ALL_PURPOSES covers every purpose of a channel
ALL_PURPOSES = "*"


class EventType:
    """The normalized event vocabulary (strings, open to custom `x.*` types)."""

    #: the provider accepted the email
    EMAIL_PROCESSED = "email.processed"
    #: the email reached the recipient's server
    EMAIL_DELIVERED = "email.delivered"
    #: delivery delayed, still being tried
    EMAIL_DEFERRED = "email.deferred"
    #: the provider dropped the email (suppressed, invalid)
    EMAIL_DROPPED = "email.dropped"
    #: the recipient opened the email
    EMAIL_OPENED = "email.opened"
    #: the recipient clicked a link (property `url`)
    EMAIL_CLICKED = "email.clicked"
    #: hard bounce (property `bounce_type`: bounce | blocked)
    EMAIL_BOUNCED = "email.bounced"
    #: spam complaint
    EMAIL_COMPLAINED = "email.complained"
    #: the recipient unsubscribed
    EMAIL_UNSUBSCRIBED = "email.unsubscribed"
    #: the recipient re-subscribed (group resubscribe)
    EMAIL_RESUBSCRIBED = "email.resubscribed"
    #: the SMS reached the handset
    SMS_DELIVERED = "sms.delivered"
    #: the SMS failed or was undelivered (property `error_code`)
    SMS_FAILED = "sms.failed"
    #: a human reply by SMS or email (properties `channel`, `text`, `intent`)
    REPLY_RECEIVED = "reply.received"
    #: a page viewed on the web site (properties `url`, `seconds`)
    PAGE_VIEWED = "page.viewed"
    #: content downloaded (property `content`)
    CONTENT_DOWNLOADED = "content.downloaded"
    #: a form submitted (property `form`)
    FORM_SUBMITTED = "form.submitted"
    #: a demo request: a strong signal
    DEMO_REQUESTED = "demo.requested"
    #: a quote request: a strong signal
    QUOTE_REQUESTED = "quote.requested"
    #: an explicit contact request: a strong signal
    CONTACT_REQUESTED = "contact.requested"
    #: a trial started
    TRIAL_STARTED = "trial.started"
    #: a purchase: the contact becomes a customer
    PURCHASE_COMPLETED = "purchase.completed"
    #: a webhook item we could not map (the raw payload is kept)
    UNKNOWN = "unknown"


KNOWN_EVENT_TYPES: frozenset[str] = frozenset(
    v for k, v in vars(EventType).items() if k.isupper() and isinstance(v, str)
)


def is_valid_event_type(name: str) -> bool:
    """Known types, or custom ones in the `x.` namespace."""
    return name in KNOWN_EVENT_TYPES or (name.startswith("x.") and len(name) > 2)
