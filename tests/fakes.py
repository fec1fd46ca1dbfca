"""A loopback HTTP server that speaks just enough SendGrid and Twilio for the real SDKs.

It answers SendGrid `POST /v3/mail/send` (202 + `X-Message-Id`) and Twilio
`POST /2010-04-01/Accounts/{sid}/Messages.json` (201 + JSON with `sid` and `status`),
records every request, and can be scripted to answer something else (429, 500, 400…)
or to answer late (timeouts).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from sqlalchemy import func, select
from twilio.http.http_client import TwilioHttpClient

from nurture.config.settings import Settings, load_settings
from nurture.engine.runtime import Runtime
from nurture.intake import ledger
from nurture.services import contacts
from nurture.store import database as db
from nurture.store import queries as store
from tests.conftest import write_project

TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>\w+)/Messages\.json$")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to wait before answering (client timeouts)
    delay: float = 0.0


class FakeApi:
    """Scriptable stand-in for api.sendgrid.com and api.twilio.com on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: deque[Answer] = deque()
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request("POST", self.path, dict(self.headers.items()),
                                  self.rfile.read(length))
                fake.requests.append(request)
                answer = fake.script.popleft() if fake.script else fake.success(request)
                time.sleep(answer.delay)
                body = answer.body if isinstance(answer.body, bytes) else (
                    b"" if answer.body is None else json.dumps(answer.body).encode())
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    if body:
                        self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def success(self, request: Request) -> Answer:
        n = next(self._ids)
        if request.path == "/v3/mail/send":
            return Answer(202, headers={"X-Message-Id": f"sgmsg{n:04d}"})
        match = TWILIO_MESSAGES.match(urlsplit(request.path).path)
        if match:
            form = request.form()
            return Answer(201, {"sid": f"SM{n:032x}", "status": "queued",
                                "account_sid": match["sid"], "to": form.get("To"),
                                "body": form.get("Body")})
        return Answer(404, {"errors": [{"message": "no such fake route"}]})

    def answer(self, *answers: Answer) -> None:
        """The next requests get these answers, in order (then success again)."""
        self.script.extend(answers)

    def sent(self, path_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running() -> Iterator[FakeApi]:
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()


class LoopbackTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, with scheme and host rewritten to the fake (edges too)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = urlsplit(base_url)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        local = urlunsplit((self.base.scheme, self.base.netloc, parts.path, parts.query, ""))
        return super().request(method, local, *args, **kwargs)


# ---- engine helpers shared by the provider and webhook tests ----------------------------


def add_contact(rt: Runtime, now: datetime, email: str | None, *, phone: str | None = None,
                locale: str | None = None,
                consents: tuple[tuple[str, str], ...] = (("email", "newsletter"),)) -> int:
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, now, email=email, phone=phone,
                                   locale=locale)
        contact = contacts.find_contact(conn, str(cid))
        for channel, purpose in consents:
            ledger.record_consent(conn, rt.settings, now, contact=contact, channel=channel,
                                    purpose=purpose, action="granted", source="test")
    return cid


def messages(rt: Runtime, cid: int | None = None) -> list[dict[str, Any]]:
    t = db.message
    query = select(t).order_by(t.c.id)
    if cid is not None:
        query = query.where(t.c.contact_id == cid)
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def events(rt: Runtime, cid: int | None = None) -> list[dict[str, Any]]:
    t = db.event_t
    query = select(t).order_by(t.c.id)
    if cid is not None:
        query = query.where(t.c.contact_id == cid)
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def consent_records(rt: Runtime, cid: int) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return store.consent_history(conn, cid)


def count(rt: Runtime, table: Any) -> int:
    with rt.db.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def suppressed(rt: Runtime, address: str) -> dict[str, Any] | None:
    from nurture.compliance.hygiene import address_hash

    t = db.suppression
    with rt.db.begin() as conn:
        row = conn.execute(select(t).where(t.c.address_hash == address_hash(address)))
        found = row.mappings().first()
    return dict(found) if found else None


def enrollments(rt: Runtime, cid: int) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return store.contact_enrollments(conn, cid)


def project_settings(root: Path, config_extra: str = "",
                     journeys: dict[str, str] | None = None) -> Settings:
    """Settings of a fresh project folder (the repo's templates, these journeys)."""
    config = write_project(root, config_extra, journeys)
    return load_settings(config, env={"NURTURE_SECRET_KEY": "test-secret-key"})
