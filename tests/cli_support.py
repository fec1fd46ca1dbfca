"""Running the console script in-process, as a terminal or a script sees it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nurture.cli.main import main
from nurture.cli.output import SHAPES
from tests.conftest import apply_config, write_project

#: a journey every lead enters: a welcome email, then three days' wait
HELLO = """
id: hello
name: Hello
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 3d }
"""


def applied_project(root: Path, monkeypatch: pytest.MonkeyPatch,
                    journeys: dict[str, str] | None = None) -> Path:
    """A project in `root` with `journeys` applied, found by every command
    (NURTURE_CONFIG); its config.toml."""
    config = write_project(root, journeys=journeys)
    apply_config(config)
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    return config


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: object) -> tuple[int, str, str]:
    """`nurture ARGS…` (paths and numbers as text): (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["nurture", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             command: str, *args: str, code: int = 0) -> Any:
    """`nurture COMMAND ARGS… --json`, its output checked against the command's shape."""
    found, out, err = run(monkeypatch, capsys, *command.split(), *args, "--json")
    assert found == code, (found, out, err)
    data = json.loads(out)
    SHAPES[command].model_validate(data)
    return data
