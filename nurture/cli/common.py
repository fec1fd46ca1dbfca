"""What every CLI module shares: the Typer apps, the settings, options and small helpers
(people's output and JSON shapes: `output`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperOption

from nurture.config.settings import Settings, find_config, load_settings
from nurture.errors import NurtureError
from nurture.scoring import checks

_type_shown = TyperOption.display_type_rich


def _type_unless_flag(self: TyperOption, ctx: Any) -> str | None:
    """Help shows a value's type (`<str>`) but none beside a flag (`--help`, `--json`): a
    flag takes no value, so `<bool>` there reads as one."""
    return None if self.is_flag else _type_shown(self, ctx)


TyperOption.display_type_rich = _type_unless_flag  # type: ignore[method-assign]

app = typer.Typer(help="Email/SMS lead nurturing: journeys as files, a daemon that never "
                  "double-sends and never sends without consent.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True)
contact_app = typer.Typer(help="Add, show, export or forget a contact.", no_args_is_help=True)
consent_app = typer.Typer(help="Record consent or its withdrawal, with evidence.",
                          no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(contact_app, name="contact")
app.add_typer(consent_app, name="consent")
app.add_typer(db_app, name="db")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class State:
    config: str | None = None
    debug: bool = False


STATE = State()


def now() -> datetime:
    """The clock is read here, at the entry point, and passed down."""
    return datetime.now(UTC)


def settings() -> Settings:
    """The project's settings, with the domain's checks of them."""
    found = load_settings(find_config(STATE.config))
    checks.check(found)
    return found


def pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """`k=v` options → dict (numbers stay strings unless they look like numbers)."""
    found: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NurtureError(f"{what} {item!r} is not key=value")
        found[key.strip()] = _scalar(value)
    return found


def _scalar(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)

