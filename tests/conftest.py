"""Shared fixtures: a real project folder (config, journeys, templates) on a real SQLite file."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from nurture.config import Settings, load_settings
from nurture.engine import Runtime
from nurture.providers.memory import MemoryProvider
from nurture.runtime import build_runtime

REPO = Path(__file__).resolve().parent.parent

BASE_CONFIG = """
mode = "dev"
default_locale = "en"
locales = ["en", "fr"]
default_timezone = "Europe/Paris"
public_base_url = "https://nurture.test"
"""

BASE_TABLES = """
[sender]
email_from = "Acme Planning <hello@acme.test>"
sms_from = "+33700000001"
company = "Acme Planning SAS"

[attributes.first_name]
[attributes.last_name]
[attributes.company]
[attributes.role]
[attributes.company_size]
type = "int"
[attributes.industry]
"""


def write_project(root: Path, config_extra: str = "", journeys: dict[str, str] | None = None,
                  copy_journeys: bool = False) -> Path:
    """A project in `root`: the repo's templates, a test config and the given journeys."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "journeys").mkdir()
    if copy_journeys:
        for path in (REPO / "journeys").glob("*.yaml"):
            shutil.copy(path, root / "journeys" / path.name)
    for name, text in (journeys or {}).items():
        (root / "journeys" / f"{name}.yaml").write_text(textwrap.dedent(text))
    config = root / "config.toml"
    # top-level keys of `config_extra` must come before any table
    config.write_text(BASE_CONFIG + textwrap.dedent(config_extra) + BASE_TABLES)
    return config


@pytest.fixture
def make_runtime(tmp_path: Path) -> Callable[..., Runtime]:
    """Build a runtime on a fresh project; sends go to in-memory providers by default."""

    def build(config_extra: str = "", journeys: dict[str, str] | None = None,
              copy_journeys: bool = False, providers: dict | None = None,
              name: str = "project") -> Runtime:
        config = write_project(tmp_path / name, config_extra, journeys, copy_journeys)
        settings: Settings = load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
        chosen = providers if providers is not None else {"email": MemoryProvider(),
                                                          "sms": MemoryProvider()}
        return build_runtime(settings, providers=chosen)

    return build
