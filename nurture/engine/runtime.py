"""What the engine works with (`Runtime`), and the typed event hooks it runs.

Built once by an entry point (`engine.build.build_runtime`); everything below takes it
as a parameter, with `now`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection

from nurture.authoring.loader import LoadedJourney
from nurture.compliance.tokens import Links
from nurture.config.settings import Settings
from nurture.content.rendering import TemplateCatalog
from nurture.intake.events import IncomingEvent
from nurture.providers.base import Provider
from nurture.store.database import Database
from nurture.views import ContactView

#: a run of freshly stored events: (event id, event), in order
EventRun = Sequence[tuple[int, IncomingEvent]]


class EventHook(Protocol):
    """What runs for newly stored events (scoring, reply effects), in the runtime's order.

    `single_types`: the event types this hook applies one event at a time, each in a run
    of its own (a reply's effects depend on where the earlier events left the contact);
    every other event reaches `on_run` with the events around it."""

    single_types: frozenset[str]

    def on_run(self, conn: Connection, rt: Runtime, run: EventRun,
               now: datetime) -> Mapping[int, ContactView]:
        """Apply a run of events; may return the contacts as it left them (written and
        flagged for re-evaluation already) to spare a reload."""
        ...

    def on_event(self, conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
                 now: datetime) -> None:
        """Apply one event of `single_types`."""
        ...


class NoHook:
    """An `EventHook` that does nothing: subclass it and fill in what you need."""

    single_types: frozenset[str] = frozenset()

    def on_run(self, conn: Connection, rt: Runtime, run: EventRun,
               now: datetime) -> Mapping[int, ContactView]:
        return {}

    def on_event(self, conn: Connection, rt: Runtime, event_id: int, event: IncomingEvent,
                 now: datetime) -> None:
        return None


@dataclass
class Runtime:
    """What the engine works with, built once by an entry point."""

    settings: Settings
    db: Database
    #: the current applied version of each journey (`engine.versions`): new entries take it
    journeys: dict[str, LoadedJourney]
    catalog: TemplateCatalog
    providers: Mapping[str, Provider]
    links: Links
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    event_hooks: list[EventHook] = field(default_factory=list)
    #: (journey, version) → the applied versions loaded so far: enrollments run theirs
    versions: dict[tuple[str, str], LoadedJourney] = field(default_factory=dict)
    #: journeys an operator paused: none of their steps run, entries wait at the door
    paused: frozenset[str] = frozenset()
    #: the applied journeys' generation `journeys` was loaded at (-1: not loaded)
    generation: int = -1

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)
