"""`contact show` tells the path each enrollment took: the branch case chosen, the
wait_for outcome (event or timeout) and its times, in the contact's zone, named."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from nurture.cli.main import main
from nurture.engine.tick import tick
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from tests.test_engine import add

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

FLOW = """
id: flow
name: Flow
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: ask, type: wait_for, event: content.downloaded, timeout: 3d, on_event: check,
      on_timeout: nudge }
  - { id: nudge, type: send, channel: email, template: cold/guide-reminder }
  - id: check
    type: branch
    cases:
      - { if: "score >= 1000", goto: done }
      - { if: "events.content.downloaded.count >= 1", goto: thanks }
    else: done
  - { id: thanks, type: send, channel: email, template: cold/newsletter-digest }
  - { id: done, type: exit, reason: finished }
"""


def show(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config: str,
         *args: str) -> str:
    monkeypatch.setenv("NURTURE_CONFIG", config)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(sys, "argv", ["nurture", "contact", "show", *args])
    try:
        main()
    except SystemExit as e:
        assert not e.code
    return capsys.readouterr().out


def test_the_path_shows_branch_cases_and_wait_for_outcomes_in_the_contacts_zone(
        make_runtime, monkeypatch, capsys):
    rt = make_runtime("", {"flow": FLOW})
    camille = add(rt, "camille@example.com", MONDAY, timezone="Europe/Paris")
    add(rt, "james@example.com", MONDAY, timezone="America/New_York")
    tick(rt, MONDAY)
    downloaded = MONDAY + timedelta(hours=5)
    with rt.db.begin() as conn:
        ingest(conn, rt, IncomingEvent("content.downloaded", "test", downloaded, camille),
               downloaded)
    tick(rt, downloaded)
    tick(rt, MONDAY + timedelta(days=3))
    config = str(rt.settings.root_path / "config.toml")

    data = json.loads(show(monkeypatch, capsys, config, "camille@example.com", "--json"))
    [enrollment] = data["enrollments"]
    assert [(s["step_id"], s["kind"], s["outcome"], s["at"], s["until"])
            for s in enrollment["steps"]] == [
        ("ask", "wait_for", "waiting", "2026-12-07T09:00:00Z", "2026-12-10T09:00:00Z"),
        ("ask", "wait_for", "event", "2026-12-07T14:00:00Z", None),
        ("check", "branch", "case 2", "2026-12-07T14:00:00Z", None),
        ("thanks", "send", "sent", "2026-12-07T14:00:00Z", None),
        ("done", "exit", "exit step", "2026-12-07T14:00:00Z", None)]
    assert enrollment["steps"][2]["detail"] == "events.content.downloaded.count >= 1 -> thanks"

    data = json.loads(show(monkeypatch, capsys, config, "james@example.com", "--json"))
    assert [(s["step_id"], s["outcome"], s["at"]) for s in data["enrollments"][0]["steps"]] == [
        ("ask", "waiting", "2026-12-07T09:00:00Z"),
        ("ask", "timeout", "2026-12-10T09:00:00Z"),
        ("nudge", "sent", "2026-12-10T09:00:00Z"),
        ("check", "else", "2026-12-10T09:00:00Z"),
        ("done", "exit step", "2026-12-10T09:00:00Z")]

    text = show(monkeypatch, capsys, config, "camille@example.com")
    assert "Path in flow" in text and "times in Europe/Paris" in text
    assert "2026-12-07 15:00 CET" in text               # the event, 14:00 UTC
    assert "waiting until 2026-12-10 10:00 CET" in text  # the timeout it waited for
    assert "case 2" in text and "14:00 UTC" not in text
    text = show(monkeypatch, capsys, config, "james@example.com")
    assert "times in America/New_York" in text and "2026-12-10 04:00 EST" in text
    assert "timeout" in text and "else" in text
