"""How commands report: one typed JSON shape per command, times with their zone named,
tables that wrap instead of cutting.

- `--json` output of command NAME is an instance of `SHAPES[NAME]` (a pydantic model,
  `nurture schema --command NAME` prints its JSON Schema); `emit` checks it before
  printing, so a shape cannot drift from what is printed. Times in JSON are UTC, ISO 8601
  with `Z`.
- Contact-facing times are shown in the contact's zone (`when(t, contact_zone)`);
  operational ones in the operator's zone (`operator_zone()`: `$TZ`, else the machine's),
  always with the zone's abbreviation.
- `table()` folds long cells onto more lines (a date is never cut to `2026-12-…`);
  `--wide` (`Wide`) lets lines run past the terminal's width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.vocab import WhatChanged

#: the exit codes every command keeps (README "Exit codes")
OK, USER_ERROR, USAGE_ERROR, NOT_READY = 0, 1, 2, 3


#: what a command did to the one thing it names
Change = WhatChanged


class Shape(BaseModel):
    """Base of every command's JSON output: unknown fields are an error, not a surprise."""

    model_config = ConfigDict(extra="forbid")


#: command name ("contact add") → the model of what its `--json` prints
SHAPES: dict[str, type[Shape]] = {}

S = TypeVar("S", bound=type[Shape])


def shape(*commands: str) -> Callable[[S], S]:
    """Register a model as the `--json` output of one or more commands."""

    def register(model: S) -> S:
        for command in commands:
            if command in SHAPES:
                raise ValueError(f"two shapes for {command!r}")
            SHAPES[command] = model
        return model

    return register


def plain(value: Any) -> Any:
    """JSON-ready: datetimes as UTC ISO 8601 with `Z`, containers walked."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def emit(command: str, data: Any, as_json: bool) -> bool:
    """With `--json`: check `data` against the command's shape and print it; returns
    whether it printed (the caller prints for people otherwise)."""
    if not as_json:
        return False
    model = SHAPES[command]
    checked = model.model_validate(plain(data))  # times made UTC before they are checked
    typer.echo(json.dumps(checked.model_dump(mode="json"), ensure_ascii=False, indent=2))
    return True


#: `--json` on a command: its shape is `nurture schema --command NAME`
AsJson = Annotated[bool, typer.Option(
    "--json", help="Print JSON, times in UTC (its shape: nurture schema --command NAME).")]


# ---- times ------------------------------------------------------------------------------


def zone_named(name: str | None) -> tzinfo:
    """The IANA zone `name` (UTC when absent or unknown)."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def operator_zone() -> tzinfo:
    """Where the operator is: `$TZ` when it names a zone, else the machine's local zone."""
    named = os.environ.get("TZ", "").lstrip(":")
    if named:
        return zone_named(named)
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def when(value: datetime | None, zone: tzinfo, seconds: bool = False) -> str:
    """`2026-12-02 08:30 EST`: a stored (UTC) time in `zone`, the zone named."""
    if value is None:
        return ""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = aware.astimezone(zone)
    stamp = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{stamp} {local.tzname() or 'UTC'}"


# ---- tables -----------------------------------------------------------------------------


class _Wide:
    on = False


WIDE = _Wide()


def _set_wide(value: bool) -> bool:
    WIDE.on = value  # click calls back with the default too: each command starts narrow
    return value


Wide = Annotated[bool, typer.Option(
    "--wide", help="Let long values run past the terminal's width instead of wrapping.",
    callback=_set_wide)]


def console() -> Console:
    """The console for people's output: wraps at the terminal (COLUMNS in a pipe), or not
    at all with `--wide`."""
    if WIDE.on:
        return Console(width=100_000, soft_wrap=True)
    return Console()


#: in a narrow terminal a time column keeps at least a date's width: `2026-12-02` stays
#: whole on its line, `08:30 CET` folds under it, and the other columns share the rest
DATE = len("2026-12-02")
#: a word longer than this (a URL, a long id) may fold to keep times on one line
_WORD = 12


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[str] = (), caption: str | None = None,
          times: Mapping[str, int] | None = None) -> Table:
    """A table whose cells fold onto more lines rather than being cut with `…`.

    `times`: the columns holding times (name → least width, e.g. `DATE`). Where the table
    would not fit the terminal, rich alone shrinks every column alike, dates too; these
    columns get a fixed width instead — the whole time when the other columns' words
    still fit whole, else the least."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    found = Table(title=escape(title), title_justify="left", caption=caption)
    for column in columns:
        found.add_column(escape(column), overflow="fold",
                         justify="right" if column in right else "left")
    for row in cells:
        found.add_row(*(escape(v) for v in row))
    if times:
        _keep_times_whole(found, list(columns), cells,
                          {list(columns).index(name): least for name, least in times.items()})
    return found


def _keep_times_whole(found: Table, header: list[str], cells: list[list[str]],
                      times: dict[int, int]) -> None:
    out = console()
    natural = out.measure(found, options=out.options.update_width(1_000_000)).maximum
    if natural <= out.width:
        return
    chrome = 3 * len(header) + 1  # borders and padding
    whole = {index: max(_widest(header, cells, index, lines=True), least)
             for index, least in times.items()}
    words = sum(min(_widest(header, cells, index), _WORD)
                for index in range(len(header)) if index not in times)
    fits = out.width - chrome - sum(whole.values()) >= words
    for index, least in times.items():
        found.columns[index].width = whole[index] if fits else least


def _widest(header: list[str], cells: list[list[str]], index: int,
            lines: bool = False) -> int:
    """The longest word (or line) of a column, its header included."""
    texts = [header[index], *(row[index] for row in cells)]
    return max(len(part) for text in texts
               for part in (text.splitlines() if lines else text.split()) or [""])


def show(*items: Any) -> None:
    """Print tables or lines for people, honouring `--wide`."""
    out = console()
    for item in items:
        out.print(item, highlight=False)
