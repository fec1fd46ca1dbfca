"""Pacing: at most `rate` segments per second per sender (a long code takes 1/s).

`LocalPacer` paces one process; `SharedPacer` books each sender's time in the database,
so a fleet of daemons on one PostgreSQL database never exceeds the rate together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from nurture.store import pacing
from nurture.store.database import Database


class Pacer(Protocol):
    def wait(self, sender: str, segments: int) -> None:
        """Return when this sender may send `segments` more segments."""
        ...


class LocalPacer:
    """The first message goes at once; each one then books the sender for
    segments / rate seconds. Clock and sleep are injected so tests never wait."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._free_at: dict[str, float] = {}

    def wait(self, sender: str, segments: int) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        start = max(now, self._free_at.get(sender, now))
        if start > now:
            self.sleep(start - now)
            # woken late (a loaded machine): the next message counts from this one
            start = max(start, self.clock())
        self._free_at[sender] = start + segments / self.rate


class SharedPacer:
    """Each message books segments / rate seconds of its sender's time in the database
    (one short transaction), then sleeps until its slot.

    A daemon woken past its slot (a loaded machine, a paused process) does not send late:
    its slot may by then sit next to the ones other daemons took after it, and together
    they would go faster than the rate. It books a new slot instead (the missed one stays
    unused), so every message leaves within `LATE_SLOTS` of a slot of its own."""

    #: how late, in slots, a message may still leave in its slot
    LATE_SLOTS = 0.25

    def __init__(self, rate: float, database: Database,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.database = database
        self.sleep = sleep
        self.clock = clock

    def wait(self, sender: str, segments: int) -> None:
        if self.rate <= 0:
            return
        while True:
            with self.database.begin() as conn:
                delay = pacing.book(conn, sender, segments / self.rate)
            due = self.clock() + delay
            if delay > 0:
                self.sleep(delay)
            if self.clock() - due <= self.LATE_SLOTS / self.rate:
                return
