"""`nurture plan`, `apply`, `journey pause|resume`, `retry`, `enroll`, `unenroll`, and `run`
refusing to start before anything is applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import run as run_cli
from tests.conftest import write_project

HELLO = """
id: hello
name: Hello
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 3d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
"""


@pytest.fixture
def nurture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    config = write_project(tmp_path / "p", journeys={"hello": HELLO})
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *args)

    run.journeys = config.parent / "journeys"  # type: ignore[attr-defined]
    return run


def test_run_refuses_to_start_before_anything_is_applied(nurture) -> None:
    assert nurture("contact", "add", "camille@example.com")[0] == 0
    code, out, err = nurture("run", "--once")
    assert (code, out) == (3, "")
    assert err.splitlines() == [
        "error: no journey is applied yet: run `nurture plan`, then `nurture apply`"]


def test_plan_then_apply_then_run(nurture) -> None:
    nurture("contact", "add", "camille@example.com")
    nurture("consent", "grant", "camille@example.com", "--channel", "email", "--purpose",
            "newsletter")
    code, out, _ = nurture("plan")
    assert code == 0
    assert "+ hello: added" in out and "1 contact(s) would newly enter" in out
    code, out, _ = nurture("plan", "--json")
    [hello] = json.loads(out)["journeys"]
    assert (hello["status"], hello["newly_entering"], hello["applied_version"]) == (
        "added", 1, None)
    code, out, _ = nurture("apply")
    assert code == 0 and out.startswith(f"created journey hello: {hello['file_version'][:8]}")
    assert "nothing to apply" in nurture("plan")[1]
    code, out, _ = nurture("run", "--once")
    assert code == 0 and "entered=1" in out and "sent=1" in out


def test_apply_refuses_a_stranding_edit_and_a_removal_with_contacts(nurture) -> None:
    nurture("contact", "add", "camille@example.com")
    nurture("apply")
    nurture("run", "--once")  # camille waits in `pause`, next at `article`
    journey = nurture.journeys / "hello.yaml"
    journey.write_text(HELLO.replace(
        "  - { id: article, type: send, channel: email, template: cold/article-best-practices }\n",
        ""))
    code, out, _ = nurture("plan")
    assert code == 0
    assert "- step article" in out
    assert "1 contact(s) at removed step 'article': NOT MAPPED: add migrate" in out
    assert "apply would refuse: journey hello: 1 contact(s) at step 'article'" in out
    code, out, err = nurture("apply")
    assert code == 1 and "1 contact(s) are waiting at step 'article'" in out + err

    journey.unlink()
    code, out, _ = nurture("plan", "--json")
    data = json.loads(out)
    assert [(j["journey"], j["status"], j["live_contacts"]) for j in data["journeys"]] == [
        ("hello", "removed", 1)]
    assert data["refusals"] == [
        "journey hello is removed from journeys/ but 1 contact(s) are in it: "
        "`nurture apply --remove-live` makes them exit ('journey removed')"]
    assert nurture("apply")[0] == 1
    code, out, _ = nurture("apply", "--remove-live", "--json")
    assert code == 0 and json.loads(out) == {
        "journeys": [], "removed": ["hello"], "created": 0, "updated": 0, "unchanged": 0,
        "exited": 1, "migrated": 0, "resumed": 0}
    shown = json.loads(nurture("contact", "show", "camille@example.com", "--json")[1])
    assert [(e["state"], e["end_reason"]) for e in shown["enrollments"]] == [
        ("exited", "journey removed")]


def test_operators_commands(nurture) -> None:
    nurture("contact", "add", "camille@example.com")
    nurture("apply")
    code, out, _ = nurture("journey", "pause", "hello", "--json")
    assert (code, json.loads(out)) == (0, {"journey": "hello", "paused": True,
                                           "change": "updated"})
    code, out, _ = nurture("run", "--once")
    assert "entered=1" in out and "processed=0" in out   # held while paused
    assert nurture("journey", "resume", "hello")[1] == "updated journey hello: running\n"
    assert "processed=1" in nurture("run", "--once")[1]
    code, out, _ = nurture("unenroll", "camille@example.com", "hello", "--reason", "asked")
    assert code == 0 and out == ("updated enrollment 1: camille@example.com left hello at "
                                 "step article: asked\n")
    code, out, _ = nurture("enroll", "camille@example.com", "hello", "--json")
    assert code == 0 and json.loads(out)["reason"] == "enrolled by hand"
    code, out, _ = nurture("enroll", "camille@example.com", "hello")
    assert code == 0 and out.startswith("unchanged enrollment 2: camille@example.com is "
                                        "already in hello (at step welcome")
    code, out, _ = nurture("retry", "--journey", "hello", "--json")
    assert json.loads(out) == {"resumed": 0, "journey": "hello", "step": None,
                               "change": "unchanged"}
    code, _, err = nurture("retry", "--step", "welcome")
    assert code == 1 and err == "error: --step needs --journey\n"
    code, _, err = nurture("journey", "pause", "nope")
    assert code == 1 and "journey 'nope' is not applied" in err
