"""After a crash mid-batch: messages whose outcome is unknown are settled where the
provider can tell (the outbox writes atomically: presence means handed over), and
outcomes are recorded a chunk at a time, so few are ever unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.config.settings import load_settings
from nurture.engine import send
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.providers.base import OutgoingMessage, SendResult
from nurture.providers.memory import MemoryProvider
from nurture.providers.outbox import OutboxProvider
from tests.conftest import applied_runtime
from tests.fakes import add_contact, messages, project_settings

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SERIES = """
id: welcome
name: Welcome
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
"""


class Crash(BaseException):
    """The process dies (kill -9): nothing after this point runs."""


class CrashingOutbox(OutboxProvider):
    def __init__(self, directory: Path, after: int) -> None:
        super().__init__(directory)
        self.after, self.calls = after, 0

    def send(self, message: OutgoingMessage) -> SendResult:
        self.calls += 1
        if self.calls > self.after:
            raise Crash()
        return super().send(message)


def runtime(tmp_path: Path, email: Any) -> Runtime:
    folder = tmp_path / "project"
    if (folder / "config.toml").exists():
        settings = load_settings(folder / "config.toml",
                                 env={"NURTURE_SECRET_KEY": "test-secret-key"})
    else:
        settings = project_settings(folder, "lease_seconds = 60\n", {"welcome": SERIES})
    return applied_runtime(settings, providers={"email": email or MemoryProvider(),
                                              "sms": MemoryProvider()})


def test_unknowns_after_a_crash_are_settled_from_the_outbox(tmp_path: Path) -> None:
    first = runtime(tmp_path, None)
    outbox = first.settings.outbox_path
    crashing = CrashingOutbox(outbox, after=7)
    first = runtime(tmp_path, crashing)
    for i in range(12):
        add_contact(first, NOW, f"lead{i:02d}@example.com")
    with pytest.raises(Crash):
        tick(first, NOW)
    assert {m["state"] for m in messages(first)} == {"sending"}  # nothing recorded yet
    assert len(list((outbox / "email").glob("*.eml"))) == 7

    restarted = runtime(tmp_path, OutboxProvider(outbox))
    report = tick(restarted, NOW + timedelta(minutes=2))

    assert report.unknown == 0
    rows = messages(restarted)
    assert [m["state"] for m in rows] == ["sent"] * 12
    files = sorted(p.stem for p in (outbox / "email").glob("*.eml"))
    assert files == sorted(m["public_id"] for m in rows)  # each exactly once
    settled = [m for m in rows if m["error"].startswith("settled after a crash")]
    resent = [m for m in rows if m["attempts"] == 1]  # sent by the retry after the crash
    assert (len(settled), len(resent)) == (7, 5)


def test_a_provider_that_cannot_tell_leaves_them_unknown(tmp_path: Path) -> None:
    class Stuck(MemoryProvider):
        def send(self, message: OutgoingMessage) -> SendResult:
            raise Crash()

    first = runtime(tmp_path, Stuck())
    add_contact(first, NOW, "lead@example.com")
    with pytest.raises(Crash):
        tick(first, NOW)

    restarted = runtime(tmp_path, MemoryProvider())
    assert tick(restarted, NOW + timedelta(minutes=2)).unknown == 1
    [message] = messages(restarted)
    assert message["state"] == "unknown"
    assert restarted.providers["email"].sent == []  # type: ignore[attr-defined]


def test_outcomes_are_recorded_a_chunk_at_a_time(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send, "RESULT_CHUNK", 3)
    first = runtime(tmp_path, None)
    first = runtime(tmp_path, CrashingOutbox(first.settings.outbox_path, after=7))
    for i in range(12):
        add_contact(first, NOW, f"lead{i:02d}@example.com")
    with pytest.raises(Crash):
        tick(first, NOW)

    states = [m["state"] for m in messages(first)]
    assert states.count("sent") == 6  # two chunks of three written before the crash
    assert states.count("sending") == 6
