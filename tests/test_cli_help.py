"""Every argument and option of every command says what it is for, in one placeholder
style (UPPERCASE names for arguments)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from nurture.cli.main import app


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under `group` (Typer's own click: its classes are not `click`'s)."""
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
            yield from commands(sub, (*path, name))


def test_every_argument_and_option_has_help_text() -> None:
    root = typer.main.get_command(app)
    missing = []
    seen = 0
    for path, command in commands(root):
        for param in command.params:
            seen += 1
            if param.param_type_name == "argument":
                # Typer keeps an argument's help on the parameter it builds
                if not getattr(param, "help", None):
                    missing.append(f"nurture {' '.join(path)} {param.name}")
                name = param.metavar or param.name.upper()
                if not re.fullmatch(r"[A-Z][A-Z_]*", name):
                    missing.append(f"nurture {' '.join(path)}: placeholder {name!r}")
            elif param.param_type_name == "option" and not param.help:
                missing.append(f"nurture {' '.join(path)} {'/'.join(param.opts)}")
    assert seen > 60  # the walk reached every command
    assert missing == []



def test_no_flag_shows_a_value_type() -> None:
    """`--help`, `--json`, `--yes` take no value: help shows no `<bool>` beside them, while
    options that take one keep their type."""
    from typer.testing import CliRunner

    runner = CliRunner()
    shown = []
    for path, _ in commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        shown.append(result.output)
    assert any("<str>" in text for text in shown)


@pytest.mark.parametrize("command", ["contact add", "import", "preview", "simulate", "report",
                                     "apply"])
def test_the_commands_marketers_use_most_show_an_example(command: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    example = text.split("Example: ", 1)[1]
    assert f"nurture {command} " in example.split(" Example: ")[0] + " "
