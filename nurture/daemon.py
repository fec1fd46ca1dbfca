"""`nurture run`: one periodic tick under APScheduler, stopped cleanly by SIGTERM/SIGINT.

One job queries due rows each tick (APScheduler job stores are per process and one job
per contact would not scale); several daemons share work through the database claims.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from nurture.engine.runtime import Runtime
from nurture.engine.tick import TickReport, tick
from nurture.store import daemons

log = logging.getLogger("nurture.daemon")


def utcnow() -> datetime:
    return datetime.now(UTC)


def settle_memory() -> None:
    """After start-up: move what is loaded for good (journeys, compiled templates, config)
    out of the garbage collector's sight, so the collections a batch triggers stay short."""
    gc.collect()
    gc.freeze()


class Daemon:
    """Runs ticks until asked to stop; a stop lets the current batch finish."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime] = utcnow,
                 on_tick: Callable[[TickReport], None] | None = None) -> None:
        self.runtime = runtime
        self.clock = clock
        self.on_tick = on_tick
        self.stopping = threading.Event()
        #: held while a tick runs, so a stop can wait for the batch in flight
        self.busy = threading.Lock()
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.started_at = clock()
        #: when the last tick began (its `now`)
        self.last_tick_at: datetime | None = None
        settle_memory()

    def run_once(self) -> TickReport:
        now = self.last_tick_at = self.clock()
        report = tick(self.runtime, now, should_stop=self.stopping.is_set, clock=self.clock)
        log.info("tick: %s", summary(report))
        with self.runtime.db.begin() as conn:  # `nurture status` shows each daemon's beat
            daemons.beat(conn, self.runtime.worker, self.started_at, now, report.as_dict())
        if self.on_tick:
            self.on_tick(report)
        return report

    def _job(self) -> None:
        if self.stopping.is_set():
            return
        try:
            with self.busy:
                self.run_once()
        except Exception:  # a bad tick is logged; the daemon lives on to the next one
            log.exception("tick failed")
        if self.stopping.is_set():
            self.scheduler.shutdown(wait=False)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        log.info("stopping after the current batch (signal %s)", signum)
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        seconds = self.runtime.settings.tick_seconds
        # a tick longer than the interval is normal under load: the runs it skips (one
        # tick at a time, by design) are not worth a warning at every interval
        logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)
        self.scheduler.add_job(self._job, "interval", seconds=seconds, max_instances=1,
                               coalesce=True, next_run_time=self.clock(), id="tick")
        log.info("nurture daemon %s: a tick every %ss", self.runtime.worker, seconds)
        self.scheduler.start()
        with self.busy:  # the tick in flight (if any) has finished its batch
            log.info("stopped")


def summary(report: TickReport) -> str:
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(report.skipped.items())) or "none"
    return (f"entered={report.entered} processed={report.processed} sent={report.sent} "
            f"deferred={report.deferred} failed={report.failed} unknown={report.unknown} "
            f"blocked={report.blocked} retried={report.retried} skipped: {skipped}"
            f"; messages failed: {_causes(report.messages_failed)}"
            f"; retrying: {_causes(report.messages_retrying)}")


def _causes(found: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(found.items())) or "none"
