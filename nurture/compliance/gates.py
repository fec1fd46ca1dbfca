"""Send gates: small guards composed in order; each lets a send through or says why not.

A refused send is a value (`Skipped`, recorded with its reason) or a `Deferred` time
(outside the send window: the step waits for the window's next opening).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nurture.compliance import consent, windows
from nurture.compliance.hygiene import address_hash
from nurture.config.settings import FrequencyCap, Settings, WindowRule
from nurture.views import ContactView
from nurture.vocab import ALL_PURPOSES, SkipReason


@dataclass(frozen=True)
class Skipped:
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class Deferred:
    until: datetime
    detail: str = ""


GateResult = Skipped | Deferred | None

#: how long a send waits for a pending double opt-in, and how often it looks again
PENDING_WAIT = timedelta(days=14)
PENDING_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class SendRequest:
    contact: ContactView
    channel: str
    purpose: str
    now: datetime
    #: journey-level windows for this channel (config windows always apply too)
    journey_windows: Sequence[WindowRule] = ()


@dataclass
class GateState:
    """What the gates need for one batch, prefetched in bulk, updated as sends are made."""

    #: (contact id, channel, purpose) → latest consent decision
    consents: Mapping[tuple[int, str, str], consent.ConsentStatus]
    #: address hashes on the suppression list
    suppressed: set[str]
    #: (contact id, cap index) → messages already counted in that cap's window
    cap_counts: Counter[tuple[int, int]] = field(default_factory=Counter)

    def record_send(self, contact_id: int, channel: str, caps: Sequence[FrequencyCap]) -> None:
        for index, cap in enumerate(caps):
            if cap.channel in ("any", channel):
                self.cap_counts[(contact_id, index)] += 1


Gate = Callable[[SendRequest, GateState, Settings], GateResult]


def address_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    if not req.contact.address(req.channel):
        return Skipped(SkipReason.NO_ADDRESS, f"no {req.channel} address")
    return None


def consent_verdict(state: GateState, settings: Settings, contact_id: int, channel: str,
                    purpose: str) -> Skipped | None:
    """None when consent for this channel × purpose counts now (the send path's last
    look before each provider call asks the same question)."""
    specific = state.consents.get((contact_id, channel, purpose))
    channel_wide = state.consents.get((contact_id, channel, ALL_PURPOSES))
    spec = settings.purposes.get(purpose)
    bases = spec.bases if spec else ["consent"]
    if consent.may_send(specific, channel_wide, bases):
        return None
    return Skipped(SkipReason.NO_CONSENT,
                   f"{channel}/{purpose}: {consent.describe(specific, channel_wide, bases)}")


def consent_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    refused = consent_verdict(state, settings, req.contact.id, req.channel, req.purpose)
    if refused is None:
        return None
    specific = state.consents.get((req.contact.id, req.channel, req.purpose))
    status = refused.detail.rpartition(": ")[2]
    if status == "pending" and specific is not None and req.now - specific.at < PENDING_WAIT:
        # a double opt-in not yet confirmed: the step waits for it rather than being lost
        return Deferred(req.now + PENDING_RETRY, f"{req.channel}/{req.purpose}: awaiting "
                        "double opt-in confirmation")
    return refused


def suppression_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    hashed = req.contact.address_hashes.get(req.channel)
    if hashed is None:
        hashed = address_hash(req.contact.address(req.channel) or "")
    if hashed in state.suppressed:
        return Skipped(SkipReason.SUPPRESSED, "address on the suppression list")
    return None


def role_account_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    purpose = settings.purposes.get(req.purpose)
    marketing = purpose.marketing if purpose else True
    if (req.channel == "email" and req.contact.role_account and marketing
            and not settings.allow_role_accounts):
        return Skipped(SkipReason.ROLE_ACCOUNT, "role account kept out of marketing")
    return None


def frequency_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    for index, cap in enumerate(settings.frequency_caps):
        if cap.channel not in ("any", req.channel):
            continue
        if state.cap_counts[(req.contact.id, index)] >= cap.max:
            return Skipped(SkipReason.FREQUENCY_CAP,
                           f"{cap.max} per {cap.per} on {cap.channel} reached")
    return None


def contact_zones(req: SendRequest, settings: Settings) -> tuple[str, ...]:
    """Where the contact's hours are counted: its own zone; for an SMS to a contact whose
    zone was never given (it holds the default), the zones its number may be in — legal
    hours (TCPA) must hold in all of them."""
    phone = req.contact.phone
    if req.channel != "sms" or not phone or req.contact.timezone != settings.default_timezone:
        return (req.contact.timezone,)
    return windows.phone_zones(phone) or (req.contact.timezone,)


def window_gate(req: SendRequest, state: GateState, settings: Settings) -> GateResult:
    rules = [settings.window(req.channel, req.contact.country), *req.journey_windows]
    zones = contact_zones(req, settings)
    if len(zones) == 1:
        opening = windows.next_opening(rules, zones[0], req.contact.country, req.now)
    else:
        opening = windows.next_opening_everywhere(rules, zones, req.contact.country, req.now)
    if opening > req.now:
        return Deferred(opening, "outside the send window")
    return None


DEFAULT_GATES: tuple[Gate, ...] = (
    address_gate, consent_gate, suppression_gate, role_account_gate, frequency_gate, window_gate,
)


#: a retry was counted against the caps when first recorded: the other gates again
RETRY_GATES: tuple[Gate, ...] = (
    address_gate, consent_gate, suppression_gate, role_account_gate, window_gate,
)


def check(req: SendRequest, state: GateState, settings: Settings,
          gates: Sequence[Gate] = DEFAULT_GATES) -> GateResult:
    """Run the gates in order; the first refusal wins."""
    for gate in gates:
        result = gate(req, state, settings)
        if result is not None:
            return result
    return None
