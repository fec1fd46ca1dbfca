"""Every command that reports something prints, with `--json`, its documented shape and
nothing else: one project, every such command run once, each output checked against the
shape `nurture schema --command NAME` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from nurture.cli.main import app
from nurture.cli.output import SHAPES
from tests.cli_support import HELLO, applied_project, run, run_json
from tests.test_cli_help import commands

EMAIL = "camille@example.com"


def json_commands() -> set[str]:
    """`nurture …` commands that take `--json`."""
    found = set()
    for path, command in commands(typer.main.get_command(app)):
        if any("--json" in getattr(param, "opts", ()) for param in command.params):
            found.add(" ".join(path))
    return found


def test_every_json_command_has_a_shape_and_every_shape_a_command() -> None:
    takes_json = json_commands()
    assert takes_json - set(SHAPES) == set()
    assert set(SHAPES) - takes_json == {"event"}  # `event WHO TYPE` is `event record`
    # what has no --json prints JSON already (schema, export) or serves (serve)
    everything = {" ".join(p) for p, c in commands(typer.main.get_command(app))
                  if not getattr(c, "commands", None)}
    assert everything - takes_json == {"schema", "serve", "contact export"}


def test_every_command_prints_its_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    applied_project(tmp_path / "p", monkeypatch, {"hello": HELLO})
    monkeypatch.setenv("COLUMNS", "60")  # a narrow pipe changes nothing in JSON
    ran: set[str] = set()

    def nurture(command: str, *args: str, code: int = 0) -> Any:
        ran.add(command)
        return run_json(monkeypatch, capsys, command, *args, code=code)

    assert nurture("validate")["ok"] is True
    assert nurture("db upgrade")["change"] == "unchanged"
    assert nurture("plan")["journeys"][0]["status"] == "unchanged"
    assert nurture("apply")["unchanged"] == 1
    assert nurture("contact add", EMAIL, "--locale", "fr", "--timezone", "Europe/Paris",
                   "--attr", "first_name=Camille")["change"] == "created"
    assert nurture("consent grant", EMAIL, "--channel", "email", "--purpose",
                   "newsletter")["change"] == "created"
    assert nurture("event record", EMAIL, "page.viewed", "--id", "w-1")["change"] == "created"
    assert nurture("journey pause", "hello")["change"] == "updated"
    assert nurture("journey resume", "hello")["change"] == "updated"
    ticked = nurture("run", "--once")
    assert ticked["sent"] == 1 and ticked["at"].endswith("Z")
    assert nurture("enroll", EMAIL, "hello")["change"] == "unchanged"  # already in it
    assert nurture("unenroll", EMAIL, "hello")["change"] == "updated"
    assert nurture("retry")["change"] == "unchanged"
    assert nurture("stage", EMAIL, "customer", "--reason", "signed")["change"] == "updated"
    shown = nurture("contact show", EMAIL)
    assert shown["contact"]["stage"] == "customer" and shown["messages"][0]["state"] == "sent"
    assert all(m["created_at"].endswith("Z") for m in shown["messages"])
    assert nurture("status")["daemons"]
    assert nurture("report")["journeys"][0]["id"] == "hello"
    assert nurture("simulate", "--days", "2")["contacts"]
    previewed = nurture("preview", "cold/welcome-guide", "--contact", EMAIL)
    assert previewed["contact"] == EMAIL and "None" not in previewed["text"]

    people = tmp_path / "people.csv"
    people.write_text("email,first_name\nlou@example.com,Lou\n", encoding="utf-8")
    assert nurture("import", str(people))["created"] == 1
    events = tmp_path / "events.csv"
    events.write_text("email,type,occurred_at,id\nlou@example.com,page.viewed,"
                      "2026-01-05T10:00:00Z,e-1\n", encoding="utf-8")
    assert nurture("event import", str(events))["created"] == 1
    assert nurture("consent withdraw", EMAIL, "--channel", "email",
                   "--purpose", "*")["change"] == "updated"
    assert nurture("contact forget", "lou@example.com", "--yes")["contact_id"]

    assert nurture("init", str(tmp_path / "fresh"))["change"] == "created"
    demo = nurture("demo", str(tmp_path / "demo"), "--days", "2")
    assert demo["sent"] == demo["outbox_files"]

    assert ran == json_commands()


def test_schema_prints_each_shape(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    for name, model in SHAPES.items():
        code, out, err = run(monkeypatch, capsys, "schema", "--command", name)
        assert code == 0, err
        assert json.loads(out) == model.model_json_schema()


def test_the_readme_lists_every_shape() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Scripting: `--json`, shapes and exit codes")[1].split("\n\n")[2]
    listed = {re.match(r" ?`(?:nurture )?([a-z ]+?)(?: --[a-z]+)+`", name).group(1)  # type: ignore[union-attr]
              for row in table.splitlines()[2:] for name in row.split("|")[1].split(",")}
    assert listed >= set(SHAPES) - {"event record"}
