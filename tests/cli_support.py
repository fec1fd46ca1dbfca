"""Running the console script in-process, as a terminal or a script sees it."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from nurture.cli.main import main
from nurture.cli.output import SHAPES


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:
    """`nurture ARGS…`: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["nurture", *args])
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
