"""The operations commands with `--json` (each output checked against its registered
shape) and what each says it changed; times named in the right zone; the demo's summary
counting what its outbox holds."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.cli.output import SHAPES
from nurture.config.settings import load_settings
from nurture.daemon import Daemon
from nurture.store.database import Database
from tests.cli_support import run, run_json
from tests.conftest import applied_runtime, write_project

HELLO = """
id: hello
name: Hello
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/hello }
  - { id: pause, type: wait, duration: 3d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
"""

MINE = ("init", "validate", "run", "db upgrade", "demo", "plan", "apply", "journey pause",
        "journey resume", "retry", "enroll", "unenroll", "status", "report", "simulate")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose database is not created yet and nothing is applied; `cold/hello`
    is a copy of the welcome guide."""
    config = write_project(tmp_path / "p", journeys={"hello": HELLO})
    folder = config.parent / "templates" / "email" / "cold"
    for path in folder.glob("welcome-guide.*"):
        shutil.copy(path, folder / path.name.replace("welcome-guide", "hello"))
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "200")
    return config


def test_every_operations_command_has_a_registered_shape() -> None:
    assert [name for name in MINE if name not in SHAPES] == []


def test_the_database_and_journeys_say_what_changed(project, monkeypatch, capsys):
    json_of = lambda command, *a, code=0: run_json(  # noqa: E731
        monkeypatch, capsys, command, *a, code=code)
    first = json_of("db upgrade")
    assert (first["from"], first["change"]) == (None, "updated")
    again = json_of("db upgrade")
    assert (again["from"], again["to"], again["change"]) == (first["to"], first["to"],
                                                             "unchanged")
    checked = json_of("validate")
    assert (checked["ok"], checked["errors"], checked["problems"]) == (True, 0, [])

    planned = json_of("plan")
    assert [(j["journey"], j["status"]) for j in planned["journeys"]] == [("hello", "added")]
    created = json_of("apply")
    [row] = created["journeys"]
    assert (row["journey"], row["change"], row["previous_version"]) == ("hello", "created",
                                                                        None)
    assert (created["created"], created["updated"], created["unchanged"]) == (1, 0, 0)
    same = json_of("apply")
    assert [(j["change"], j["version"]) for j in same["journeys"]] == [
        ("unchanged", row["version"])]
    assert same["unchanged"] == 1

    journey = project.parent / "journeys" / "hello.yaml"
    journey.write_text(journey.read_text().replace("duration: 3d", "duration: 4d"))
    code, out, _ = run(monkeypatch, capsys, "apply")
    assert code == 0 and out.startswith(f"updated journey hello: {row['version'][:8]} → ")
    journey.write_text(journey.read_text().replace("duration: 4d", "duration: 5d"))
    updated = json_of("apply")
    [changed] = updated["journeys"]
    assert changed["change"] == "updated" and changed["previous_version"] != changed["version"]
    assert updated["updated"] == 1
    journey.unlink()
    removed = json_of("apply")
    assert (removed["journeys"], removed["removed"], removed["exited"]) == ([], ["hello"], 0)


def test_operators_commands_say_what_changed(project, monkeypatch, capsys):
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    json_of = lambda command, *a, code=0: run_json(  # noqa: E731
        monkeypatch, capsys, command, *a, code=code)
    assert nurture("apply")[0] == 0
    nurture("contact", "add", "camille@example.com", "--locale", "fr",
            "--timezone", "America/New_York")
    nurture("consent", "grant", "camille@example.com", "--channel", "email",
            "--purpose", "newsletter")

    paused = json_of("journey pause", "hello")
    assert (paused["paused"], paused["change"]) == (True, "updated")
    assert json_of("journey pause", "hello")["change"] == "unchanged"
    code, out, _ = nurture("journey", "pause", "hello")
    assert (code, out) == (0, "unchanged journey hello: already paused\n")
    resumed = json_of("journey resume", "hello")
    assert (resumed["paused"], resumed["change"]) == (False, "updated")
    assert json_of("journey resume", "hello")["change"] == "unchanged"

    ticked = json_of("run", "--once")
    assert (ticked["entered"], ticked["processed"], ticked["sent"]) == (1, 1, 1)
    assert ticked["worker"] and ticked["at"].endswith("Z")
    assert json_of("retry", "--journey", "hello")["change"] == "unchanged"
    database = Database(load_settings(project).database_url)
    with database.begin() as conn:  # what a provider's refusal leaves behind
        conn.exec_driver_sql("UPDATE enrollment SET state = 'blocked', "
                             "last_error = '403 sender not verified'")
    database.dispose()
    assert json_of("retry", "--journey", "hello", "--step", "welcome") == {
        "resumed": 0, "journey": "hello", "step": "welcome", "change": "unchanged"}
    retried = json_of("retry", "--journey", "hello")
    assert (retried["resumed"], retried["change"]) == (1, "updated")
    code, out, _ = nurture("retry")
    assert (code, out) == (0, "unchanged: no blocked enrollment\n")

    left = json_of("unenroll", "camille@example.com", "hello", "--reason", "asked")
    assert (left["change"], left["step"], left["reason"]) == ("updated", "article", "asked")
    enrolled = json_of("enroll", "camille@example.com", "hello")
    assert (enrolled["change"], enrolled["step"]) == ("created", "welcome")
    assert enrolled["enrollment_id"] != left["enrollment_id"]
    again = json_of("enroll", "camille@example.com", "hello")
    assert (again["change"], again["enrollment_id"]) == ("unchanged",
                                                         enrolled["enrollment_id"])

    status = json_of("status")
    assert status["enrollments"] == {"hello": {"active": 1, "exited": 1}}
    assert status["messages_by_state"]["sent"] == 1
    [beat] = status["daemons"]
    assert beat["last_tick"]["sent"] == 1 and beat["last_tick_at"].endswith("Z")

    reported = json_of("report", "--journey", "hello")
    [journey] = reported["journeys"]
    assert journey["id"] == "hello" and journey["funnel"]["sent"] == 1
    assert [s["step"] for s in journey["steps"]] == ["welcome", "pause", "article"]

    simulated = json_of("simulate", "--days", "4", "--start", "2026-12-07T14:00:00Z")
    [contact] = simulated["contacts"]
    assert (contact["email"], contact["timezone"]) == ("camille@example.com",
                                                       "America/New_York")
    assert simulated["start"] == "2026-12-07T14:00:00Z"
    assert "email sent" in [m["what"] for m in contact["timeline"]]


def test_run_json_needs_once(project, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "run", "--json")
    assert (code, out) == (1, "")
    assert err == "error: --json needs --once (the daemon itself logs each tick)\n"


def test_init_says_it_created_the_project(tmp_path, monkeypatch, capsys):
    target = tmp_path / "mine"
    done = run_json(monkeypatch, capsys, "init", str(target))
    assert (done["change"], done["journeys_applied"]) == ("created", 4)
    assert (target / "config.toml").is_file()


def test_demo_counts_every_message_its_outbox_holds(tmp_path, monkeypatch, capsys):
    """The sales notification is a message the run sent: one file each, one count."""
    folder = tmp_path / "demo"
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(monkeypatch, capsys, "demo", str(folder), "--days", "14")
    assert code == 0, err
    files = [p for p in (folder / "outbox").rglob("*") if p.is_file()]
    [said] = re.findall(r"^(\d+) message\(s\) sent \(", out, re.MULTILINE)
    assert int(said) == len(files)
    assert f"{len(files)} files in " in out
    assert re.search(r"│ camille\.martin\S* +│ prospect +│ hot +│ +\d+\.\d │", out), out
    data = run_json(monkeypatch, capsys, "demo", str(folder), "--days", "14")
    files = [p for p in (folder / "outbox").rglob("*") if p.is_file()]
    assert data["sent"] == data["outbox_files"] == len(files)
    assert data["sent_by_kind"]["notification"] == 1  # the sales team was told of Camille
    assert sum(c["sent"] for c in data["contacts"]) == data["sent_by_kind"]["journey"]


def test_status_in_a_narrow_pipe_shows_the_full_last_tick_in_the_operators_zone(
        project, monkeypatch, capsys):
    assert run(monkeypatch, capsys, "db", "upgrade")[0] == 0
    rt = applied_runtime(load_settings(project))
    rt.worker = "host-a:42"
    Daemon(rt, clock=lambda: datetime(2026, 12, 8, 14, 5, 9, tzinfo=UTC)).run_once()
    rt.db.dispose()
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("TZ", "America/New_York")
    code, out, _ = run(monkeypatch, capsys, "status")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 60
    assert "2026-12-08 09:05:09 EST" in out
    assert "host-a:42" in out
    # the tick `run --once` makes is named in the operator's zone too
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # no daylight saving time: always JST
    code, out, _ = run(monkeypatch, capsys, "run", "--once")
    assert code == 0
    assert re.match(r"tick at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST: entered=0 ", out), out


def test_simulate_shows_each_contacts_times_in_its_own_zone(project, monkeypatch, capsys):
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    nurture("apply")
    nurture("contact", "add", "ana@example.com", "--timezone", "America/New_York")
    nurture("consent", "grant", "ana@example.com", "--channel", "email",
            "--purpose", "newsletter")
    monkeypatch.setenv("TZ", "Europe/Paris")
    code, out, _ = nurture("simulate", "--days", "1", "--start", "2026-12-07T14:00:00Z",
                           "--applied")
    assert code == 0
    assert "ana@example.com (America/New_York)" in out
    assert "2026-12-07 09:00 EST" in out  # the welcome, at once, in Ana's zone
    assert "1 day(s) from 2026-12-07 15:00 CET" in out  # the run's start, the operator's


def test_schema_prints_a_commands_shape(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "schema", "--command", "journey pause")
    assert code == 0
    found = json.loads(out)
    assert found["title"] == "PauseShape"
    assert found["properties"]["change"]["enum"] == ["updated", "unchanged"]
    code, out, _ = run(monkeypatch, capsys, "schema", "--command", "db upgrade")
    assert set(json.loads(out)["properties"]) == {"database", "from", "to", "change"}
    code, out, _ = run(monkeypatch, capsys, "schema", "--commands")
    assert code == 0 and set(MINE) <= set(out.splitlines())
    code, out, _ = run(monkeypatch, capsys, "schema")
    assert json.loads(out)["title"] == "nurture journey"


def test_schema_of_an_unknown_command_lists_the_known_ones(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "schema", "--command", "stauts")
    assert (code, out) == (1, "")
    assert err.startswith("error: no command 'stauts' prints JSON; known: ")
    assert "journey pause" in err and "status" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", ["apply", "report", "simulate"])
def test_help_shows_an_example(command, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, command, "--help")
    assert code == 0 and f"Example: nurture {command if command != 'apply' else 'plan'}" in (
        " ".join(out.split()))
