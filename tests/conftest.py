"""Shared fixtures: a real project folder (config, journeys, templates) on a real SQLite file."""

from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from nurture.authoring.loader import load_journeys
from nurture.config.settings import Settings, load_settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.errors import ValidationFailed
from nurture.intake import ledger
from nurture.providers.memory import MemoryProvider
from nurture.services import contacts
from nurture.services.journeys import apply_files
from nurture.store import schema
from nurture.store.database import Database

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
    for name, source in (journeys or {}).items():
        (root / "journeys" / f"{name}.yaml").write_text(textwrap.dedent(source))
    config = root / "config.toml"
    # top-level keys of `config_extra` must come before any table
    config.write_text(BASE_CONFIG + textwrap.dedent(config_extra) + BASE_TABLES)
    return config


def apply_journeys(rt: Runtime) -> Runtime:
    """Apply the project's journey files, as `nurture apply` does after the loader's
    checks: runtimes run applied versions only, never the files."""
    loaded, problems = load_journeys(rt.settings.journeys_path, set(rt.settings.purposes))
    errors = [p for p in problems if p.is_error]
    if errors:
        raise ValidationFailed(errors)
    apply_files(rt, loaded, datetime.now(UTC))
    return rt


def applied_runtime(settings: Settings, **kwargs: Any) -> Runtime:
    """`build_runtime` on a project whose journey files are applied first."""
    return apply_journeys(build_runtime(settings, **kwargs))


def apply_config(config: Path, env: dict[str, str] | None = None) -> None:
    """Apply the journeys of the project at `config` (for tests that run the CLI or the
    daemon on it, as `nurture apply` would)."""
    rt = applied_runtime(load_settings(config, env=env or {}))
    rt.db.dispose()


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
        return applied_runtime(settings, providers=chosen)

    return build


PG_SERVER = os.environ.get("NURTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards. Skipped only
    where no server answers, and never in CI (which starts one)."""
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"nurture_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not answering at {PG_SERVER}: {e.orig}")
    yield f"{PG_SERVER}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed_contacts(config: Path, count: int, now: datetime,
                  env: dict[str, str] | None = None) -> None:
    """`count` contacts user{i}@example.com with newsletter email consent, in one transaction."""
    settings = load_settings(config, env=env or {})
    database = Database(settings.database_url)
    schema.upgrade(database)
    with database.begin() as conn:
        for i in range(count):
            cid = contacts.add_contact(conn, settings, now, email=f"user{i}@example.com")
            ledger.record_consent(conn, settings, now, contact=contacts.find_contact(
                conn, str(cid)), channel="email", purpose="newsletter", action="granted",
                source="test")
    database.dispose()
