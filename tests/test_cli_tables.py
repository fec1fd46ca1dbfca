"""People's tables in a narrow terminal: cells fold instead of being cut with "…", a
date is never split, times carry their zone; `--wide` lets a long value run on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_support import HELLO, applied_project, run

EMAIL = "camille@example.com"
#: a long value without spaces: it can only fold, or be cut
LONG = "/guides/" + "-".join(["planning-the-whole-year-of-events"] * 3)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return applied_project(tmp_path / "p", monkeypatch, {"hello": HELLO})


def shown(project, monkeypatch, capsys, *extra: str) -> str:
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    assert nurture("contact", "add", EMAIL, "--timezone", "Europe/Paris")[0] == 0
    assert nurture("consent", "grant", EMAIL, "--channel", "email", "--purpose",
                   "newsletter", "--evidence", "wording_version=v3")[0] == 0
    # 07:30 UTC in January is 08:30 in Paris (CET)
    assert nurture("event", EMAIL, "content.downloaded", "--at", "2025-01-15T07:30:00Z",
                   "--prop", f"url={LONG}", "--id", "dl-1")[0] == 0
    assert nurture("run", "--once")[0] == 0  # a journey, its path and a message to show
    code, out, err = nurture("contact", "show", EMAIL, *extra)
    assert code == 0, err
    return out


#: the right edge of a table's line: a line cut at the terminal's width has none
RIGHT_EDGES = "┓┃┩│┘┤"


def test_contact_show_in_a_narrow_pipe_keeps_dates_whole(project, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    out = shown(project, monkeypatch, capsys)
    lines = out.splitlines()
    assert "…" not in out
    assert max(len(line) for line in lines) <= 60
    for line in lines:  # every table fits: none is cropped at the terminal's edge
        if line[:1] in "┏┃┡│└":
            assert line[-1] in RIGHT_EDGES, line
    # every date is whole (never `2026-12` with `-02` on the next line) …
    for found in re.finditer(r"\d{4}-[\d-]*", out):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", found.group()), found.group()
    # … and every time names its zone: the contact's (08:30 in Paris is 07:30 UTC)
    times = re.findall(r"\d{2}:\d{2}(?: [A-Z]{3,4})?", out)
    assert times and all(t.endswith((" CET", " CEST")) for t in times), times
    assert any("2025-01-15" in line and "08:30 CET" in (line + lines[i + 1])
               for i, line in enumerate(lines[:-1]))
    # the long value folds onto more lines, none of it lost
    assert not any(LONG in line for line in lines)
    assert "".join(cells(lines, "Events")[-1]) == f"url={LONG}"
    for title in ("Journeys", "Path in hello", "Messages", "Consent history"):
        assert cells(lines, title), title  # every table has its rows, checked above


def cells(lines: list[str], title: str) -> list[list[str]]:
    """The table titled `title`, by column: each column's cell lines, stripped."""
    start = lines.index(next(line for line in lines if line.startswith(title)))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return [list(column) for column in zip(*rows, strict=True)]


def test_wide_lets_a_long_value_stay_on_one_line(project, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    out = shown(project, monkeypatch, capsys, "--wide")
    assert any(LONG in line for line in out.splitlines())
    assert any("2025-01-15 08:30 CET" in line for line in out.splitlines())


def test_simulate_in_a_narrow_pipe_keeps_dates_whole(project, monkeypatch, capsys):
    """The same rule for every table with times: a simulated timeline at 34 columns."""
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    assert nurture("contact", "add", EMAIL, "--timezone", "Europe/Paris")[0] == 0
    assert nurture("consent", "grant", EMAIL, "--channel", "email", "--purpose",
                   "newsletter")[0] == 0
    monkeypatch.setenv("COLUMNS", "34")
    code, out, err = nurture("simulate", "--days", "4", "--start", "2026-12-07T09:00:00Z")
    assert code == 0, err
    dates = re.findall(r"\d{4}-[\d-]*", out)
    assert dates and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in dates), dates
