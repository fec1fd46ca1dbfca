"""Pure consent decisions over the ledger's current state.

The ledger (`ConsentRecord`) is append-only; `ConsentState` keeps the latest record per
(contact, channel, purpose). A purpose-specific grant counts when it is newer than any
channel-wide (`*`) withdrawal, such as an SMS STOP; a later channel-wide re-opt-in
(START) lifts that withdrawal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.vocab import ALL_PURPOSES, ConsentAction

COUNTING_ACTIONS = frozenset({ConsentAction.GRANTED, ConsentAction.CONFIRMED})


@dataclass(frozen=True)
class ConsentStatus:
    """The latest ledger entry for one (channel, purpose)."""

    action: str
    legal_basis: str
    at: datetime


def may_send(specific: ConsentStatus | None, channel_wide: ConsentStatus | None,
             accepted_bases: Sequence[str]) -> bool:
    """True when the latest purpose decision grants, under an accepted lawful basis,
    and no later channel-wide withdrawal overrides it."""
    if specific is None or specific.action not in COUNTING_ACTIONS:
        return False
    if specific.legal_basis not in accepted_bases:
        return False
    return not (channel_wide is not None and channel_wide.action == ConsentAction.WITHDRAWN
                and channel_wide.at >= specific.at)


def describe(specific: ConsentStatus | None, channel_wide: ConsentStatus | None,
             accepted_bases: Sequence[str]) -> str:
    """One word for a person: granted, pending, withdrawn or none."""
    if may_send(specific, channel_wide, accepted_bases):
        return "granted"
    if specific is None:
        return "none"
    if specific.action == ConsentAction.PENDING:
        return "pending"
    return "withdrawn"


def is_channel_wide(purpose: str) -> bool:
    return purpose == ALL_PURPOSES
