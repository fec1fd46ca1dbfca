"""Shared by the maturity tests: a project on a SQLite file, contacts, events, a fake CRM."""

from __future__ import annotations

import shutil
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nurture.config.settings import load_settings
from nurture.engine.runtime import Runtime
from nurture.intake import ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.providers.memory import MemoryProvider
from nurture.services import contacts
from tests.conftest import applied_runtime

REPO = Path(__file__).resolve().parent.parent
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
API_KEY = "api-key-for-tests"
SCORING = """
mode = "dev"
default_locale = "en"
locales = ["en", "fr"]
public_base_url = "https://nurture.test"

[attributes.first_name]
[attributes.last_name]
[attributes.company]
[attributes.role]
[attributes.company_size]
type = "int"
[attributes.industry]

[scoring]
qualify_at = 100
fit_threshold = 50
warm_at = 20
hot_at = 60
half_life = "14d"
decay_every = "1d"
accept_within = "14d"
#scoring

[[scoring.rules]]
name = "open"
event = "email.opened"
points = 2
cap = 3
cap_window = "1d"

[[scoring.rules]]
name = "view"
event = "page.viewed"
where = { seconds = ">=10" }
points = 3

[[scoring.rules]]
name = "pricing"
event = "page.viewed"
where = { url = "~/(pricing|tarifs)", seconds = ">=30" }
points = 25
cap = 2
cap_window = "7d"

[[scoring.rules]]
name = "download"
event = "content.downloaded"
points = 15

[[scoring.rules]]
name = "trial"
event = "trial.started"
points = 40

[[scoring.fit]]
name = "decision-maker"
when = "attributes.role matches '(?i)head|director|chief'"
points = 30

[[scoring.fit]]
name = "size"
when = "attributes.company_size >= 50"
points = 30

[handoff]
retry_base_seconds = 10
#handoff
"""
FITTING = {"first_name": "Camille", "role": "Head of Operations", "company_size": 120,
           "company": "Boulangeries Martin"}


def build(root: Path, *, scoring: str = "", handoff: str = "",
          journeys: dict[str, str] | None = None, repo_journeys: bool = True,
          database_url: str = "") -> Runtime:
    """A project on a SQLite file: the repo's templates (and journeys), SCORING with
    `scoring` and `handoff` lines added to those sections."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "journeys").mkdir()
    if repo_journeys:
        for path in (REPO / "journeys").glob("*.yaml"):
            shutil.copy(path, root / "journeys" / path.name)
    for name, text in (journeys or {}).items():
        (root / "journeys" / f"{name}.yaml").write_text(textwrap.dedent(text))
    config = SCORING.replace("#scoring", scoring).replace("#handoff", handoff)
    (root / "config.toml").write_text(config)
    env = {"NURTURE_SECRET_KEY": "k" * 32, "NURTURE_API_KEY": API_KEY}
    if database_url:
        env["NURTURE_DATABASE_URL"] = database_url
    settings = load_settings(root / "config.toml", env=env)
    return applied_runtime(settings, providers={"email": MemoryProvider(),
                                                "sms": MemoryProvider()})


def add(rt: Runtime, email: str, attributes: dict[str, Any] | None = None,
        purposes: tuple[str, ...] = ("newsletter", "marketing", "sales"),
        phone: str | None = None, now: datetime = MONDAY) -> int:
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, now, email=email, phone=phone,
                                   attributes=attributes or {})
        row = contacts.find_contact(conn, str(cid))
        for channel in ("email", "sms") if phone else ("email",):
            for purpose in purposes:
                ledger.record_consent(conn, rt.settings, now, contact=row, channel=channel,
                                        purpose=purpose, action="granted", source="test")
    return cid


def event(rt: Runtime, cid: int, kind: str, now: datetime, source_id: str | None = None,
          **properties: Any) -> int | None:
    with rt.db.begin() as conn:
        return ingest(conn, rt, IncomingEvent(kind, "test", now, cid, source_id,
                                              properties=properties), now)


def state(rt: Runtime, cid: int) -> dict[str, Any]:
    with rt.db.begin() as conn:
        return contacts.describe(conn, contacts.find_contact(conn, str(cid)))


def journeys_of(data: dict[str, Any]) -> dict[str, str]:
    return {e["journey_id"]: e["state"] for e in data["enrollments"]}


class Recorder(BaseHTTPRequestHandler):
    """A sales CRM stand-in: answers each POST with the next scripted status."""

    script: list[int] = []
    received: list[tuple[dict[str, str], bytes]] = []
    #: seconds to wait before answering (timeouts)
    delay: float = 0.0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).script.pop(0) if type(self).script else 200
        if type(self).delay:
            threading.Event().wait(type(self).delay)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def crm_server(*statuses: int) -> Iterator[tuple[str, type[Recorder]]]:
    """A sales CRM on 127.0.0.1: answers the given statuses in turn, then 200."""
    handler = type("Crm", (Recorder,), {"script": list(statuses), "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/nurture", handler
    finally:
        server.shutdown()
        server.server_close()
