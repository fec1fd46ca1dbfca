"""Request bodies are capped before they are read (chunked included), credentials are
checked before bodies, forwarded headers count only from trusted proxies, HEAD on /u/.

The memory test runs the real server (`nurture serve`) in a subprocess and streams 200 MB
chunked bodies at it, reading the server's peak RSS (VmHWM) before and after each."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.compliance.tokens import Links
from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.providers.memory import MemoryProvider
from nurture.store import database as db
from nurture.web.app import create_app
from nurture.web.limits import DEFAULT_LIMIT, LIMITS, limit_for
from tests.conftest import write_project
from tests.fakes import count, messages

API_KEY = "api-key-for-limit-tests"
SECRET = "secret-key-for-limit-tests"
TWILIO_TOKEN = "twilio-token-0123456789"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
MIB = 1024 * 1024
BODY_SIZE = 200 * MIB
CHUNK = b"x" * (64 * 1024)
#: the most the server's peak RSS may grow while it turns one such body away
MAX_GROWTH_KIB = 20 * 1024


# --- the real server, in a subprocess -------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    links: Links

    def reset_peak(self) -> None:
        """Start VmHWM again from the current RSS (`clear_refs` 5, Linux 4.0+), so each
        body is measured on its own; where that is refused, peaks add up (a stricter test)."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_kib(self) -> int:
        """VmHWM: the most resident memory the server held (since the last reset)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = write_project(tmp_path_factory.mktemp("serve") / "project")
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    env = {**os.environ, "NURTURE_CONFIG": str(config), "NURTURE_API_KEY": API_KEY,
           "NURTURE_SECRET_KEY": SECRET, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
           "SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(public_key).decode(),
           "SENDGRID_INBOUND_SECRET": "inbound-secret-0123456789"}
    settings = load_settings(config, env=env)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from nurture.cli.main import main; main()", "serve",
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"nurture serve exited: {process.stderr.read()!r}")
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("nurture serve did not answer /healthz")
        yield Server(url, process, Links(SECRET, settings.public_base_url))
    finally:
        process.terminate()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


class Stream:
    """A 200 MB body sent in 64 KB chunks (no Content-Length: chunked), counting what the
    server let through before it hung up."""

    def __init__(self, size: int = BODY_SIZE) -> None:
        self.size, self.sent = size, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.size:
            self.sent += len(CHUNK)
            yield CHUNK


def stream_at(server: Server, path: str, headers: dict[str, str]) -> tuple[httpx.Response,
                                                                            int, Stream]:
    """POST a chunked 200 MB body; the answer and how much the server's peak RSS grew."""
    server.reset_peak()
    before = server.peak_kib()
    body = Stream()
    response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=60)
    return response, server.peak_kib() - before, body


def twilio_headers() -> dict[str, str]:
    return {"X-Twilio-Signature": "c2lnbmVk", "Content-Type": "application/x-www-form-urlencoded"}


def sendgrid_headers() -> dict[str, str]:
    return {"X-Twilio-Email-Event-Webhook-Signature": "c2lnbmVk",
            "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time())),
            "Content-Type": "application/json"}


def warm_up(server: Server) -> None:
    """Each route once with a small body, so the first big one finds nothing to import."""
    key = {"Authorization": f"Bearer {API_KEY}"}
    token = server.links.unsubscribe_token("m" * 20)
    for path, headers in [("/events", key), ("/consent", key), ("/events", {}),
                          ("/webhooks/twilio/sms", twilio_headers()),
                          ("/webhooks/sendgrid/events", sendgrid_headers()),
                          ("/u/garbage", {}), (f"/u/{token}", {})]:
        httpx.post(f"{server.url}{path}", content=b"List-Unsubscribe=One-Click",
                   headers=headers)


@pytest.mark.slow
def test_chunked_200_mb_bodies_are_turned_away_without_growing_the_server(
        server: Server) -> None:
    warm_up(server)
    key = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    token = server.links.unsubscribe_token("m" * 20)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        # a signature covers the body: it is read, up to the route's limit
        ("/webhooks/twilio/sms", twilio_headers(), 413),
        ("/webhooks/sendgrid/events", sendgrid_headers(), 413),
        # a valid link's one-click form, and API-key holders: read up to the limit
        (f"/u/{token}", form, 413),
        ("/events", key, 413),
        ("/consent", key, 413),
        # nothing to read for strangers: no key, a forged link
        ("/events", {"Content-Type": "application/json"}, 401),
        ("/consent", {"X-API-Key": "wrong"}, 401),
        ("/u/garbage", form, 400),
    ]
    start = server.peak_kib()
    for path, headers, status in cases:
        response, growth_kib, body = stream_at(server, path, headers)
        print(f"{path[:30]:30} {response.status_code}: peak RSS +{growth_kib} KiB, "
              f"{body.sent / MIB:.1f} MiB sent before the server hung up")
        assert response.status_code == status, (path, response.text)
        assert growth_kib < MAX_GROWTH_KIB, (path, growth_kib)
        assert body.sent < BODY_SIZE, f"{path}: the server read the whole body"
    assert server.process.poll() is None
    print(f"peak RSS {start} KiB before the {len(cases)} bodies, {server.peak_kib()} KiB after")


# --- in-process: the limits, the order of checks, HEAD -------------------------------


SERIES = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
"""


def build(root: Path, config_extra: str = "") -> Runtime:
    config = write_project(root, config_extra, {"series": SERIES})
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": SECRET,
                                          "NURTURE_API_KEY": API_KEY})
    return build_runtime(settings, providers={"email": MemoryProvider(),
                                              "sms": MemoryProvider()})


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "unused-for-these-tests")
    return build(tmp_path / "project")


def app_client(rt: Runtime, client: tuple[str, int] = ("203.0.113.9", 40000)) -> TestClient:
    return TestClient(create_app(rt, lambda: NOW), client=client)


def chunks(size: int) -> Iterator[bytes]:
    for _ in range(0, size, len(CHUNK)):
        yield CHUNK


def test_each_route_has_its_limit() -> None:
    assert limit_for("/events") == LIMITS["/events"] == MIB
    assert limit_for("/webhooks/sendgrid/inbound/s3cret") == 36 * MIB
    assert limit_for("/webhooks/sendgrid/events") == 2 * MIB
    for path in ("/consent", "/u/abc", "/webhooks/twilio/sms", "/contacts/a@b.c/stage",
                 "/events/more", "/healthz"):
        assert limit_for(path) == DEFAULT_LIMIT == 64 * 1024


def test_a_chunked_body_over_the_limit_gets_413(rt: Runtime) -> None:
    client = app_client(rt)
    key = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    response = client.post("/events", headers=key, content=chunks(2 * MIB))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert "at most 1048576 bytes" in response.json()["detail"]
    declared = client.post("/consent", headers=key, content=b"{" + b" " * 70_000 + b"}")
    assert declared.status_code == 413
    assert count(rt, db.event_t) == 0


def a_message(client: TestClient, rt: Runtime) -> str:
    """A message to Camille (a double opt-in confirmation): its unsubscribe token."""
    response = client.post("/consent", headers={"X-API-Key": API_KEY}, json={
        "email": "camille@example.com", "channels": ["email"], "purposes": ["newsletter"],
        "wording": "Send me the newsletter.", "double_opt_in": True})
    assert response.status_code == 201, response.text
    return rt.links.unsubscribe_token(messages(rt)[0]["public_id"])


def test_one_click_over_64_kb_gets_413_even_chunked(rt: Runtime) -> None:
    client = app_client(rt)
    token = a_message(client, rt)
    body = b"List-Unsubscribe=One-Click&pad=" + b"x" * 70_000

    def stream() -> Iterator[bytes]:
        yield body

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(f"/u/{token}", headers=form, content=stream()).status_code == 413
    assert client.post(f"/u/{token}", headers=form, content=body).status_code == 413
    assert withdrawals(rt) == []
    ok = client.post(f"/u/{token}", headers=form, content=b"List-Unsubscribe=One-Click")
    assert ok.status_code == 200
    assert len(withdrawals(rt)) == 1


def withdrawals(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(db.consent_record.select()).mappings()
                if r["action"] == "withdrawn"]


class CountingBody:
    """A request body that records how much of it the app asked for."""

    def __init__(self, size: int) -> None:
        self.size, self.read = size, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.read < self.size:
            self.read += len(CHUNK)
            yield CHUNK


def test_the_api_key_is_checked_before_the_body_is_read(rt: Runtime) -> None:
    client = app_client(rt)
    for path in ("/events", "/consent", "/contacts/camille@example.com/stage"):
        body = CountingBody(512 * 1024)
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, path
        assert response.headers["connection"] == "close"
        # the test transport hands the app the body as it asks: nothing was asked
        assert body.read <= len(CHUNK), (path, body.read)


def test_a_forged_link_or_a_missing_signature_is_refused_before_the_body(rt: Runtime) -> None:
    client = app_client(rt)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path, headers, status in [("/u/forged.token", form, 400),
                                  ("/webhooks/twilio/sms", form, 403),
                                  ("/webhooks/sendgrid/events", {}, 403)]:
        body = CountingBody(512 * 1024)
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert body.read <= len(CHUNK), (path, body.read)


def test_head_is_answered_like_get(rt: Runtime) -> None:
    client = app_client(rt)
    token = a_message(client, rt)
    got = client.get(f"/u/{token}")
    head = client.head(f"/u/{token}")
    assert got.status_code == head.status_code == 200
    assert head.content == b"" and b"<form" in got.content
    for name in ("content-type", "cache-control", "content-security-policy", "content-length"):
        assert head.headers[name] == got.headers[name], name
    assert client.head("/u/garbage").status_code == client.get("/u/garbage").status_code == 400
    assert withdrawals(rt) == []


# --- forwarded headers ----------------------------------------------------------------

SMS_PATH = "/webhooks/twilio/sms"


def inbound_sms() -> dict[str, str]:
    return {"MessageSid": "SM" + "b" * 32, "SmsSid": "SM" + "b" * 32, "From": "+33612345678",
            "To": "+33700000001", "Body": "Bonjour", "AccountSid": "AC" + "0" * 32,
            "NumMedia": "0", "ApiVersion": "2010-04-01"}


def signed_post(client: TestClient, url: str, headers: dict[str, str] | None = None) -> Any:
    params = inbound_sms()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return client.post(SMS_PATH, data=params,
                       headers={"X-Twilio-Signature": signature, **(headers or {})})


def test_a_spoofed_forwarded_host_is_refused(rt: Runtime) -> None:
    """A signature Twilio made for another deployment on the same account must not pass
    here by claiming that deployment's host."""
    client = app_client(rt)
    other = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "other.example"}
    spoofed = signed_post(client, f"https://other.example{SMS_PATH}", other)
    assert spoofed.status_code == 403
    assert count(rt, db.event_t) == 0
    assert signed_post(client, f"https://nurture.test{SMS_PATH}", other).status_code == 200


def test_a_trusted_proxy_forwards_host_scheme_and_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    rt = build(tmp_path / "project", 'trusted_proxies = ["10.0.0.0/8", "::1"]\n')
    proxy = app_client(rt, client=("10.1.2.3", 50000))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.acme.example",
                 "X-Forwarded-For": "198.51.100.4, 10.9.9.9"}
    assert signed_post(proxy, f"https://sms.acme.example{SMS_PATH}",
                       forwarded).status_code == 200
    # the same headers from anyone else are dropped
    stranger = app_client(rt, client=("192.0.2.1", 50000))
    assert signed_post(stranger, f"https://sms.acme.example{SMS_PATH}",
                       forwarded).status_code == 403
    # the visitor's address, as the trusted proxy saw it, is the consent evidence
    form = {"email": "camille@example.com", "channels": ["email"], "purposes": ["newsletter"],
            "wording": "Yes, send me the newsletter."}
    key = {"Authorization": f"Bearer {API_KEY}"}
    assert proxy.post("/consent", json=form, headers={**key, **forwarded}).status_code == 201
    assert stranger.post("/consent", json={**form, "email": "james@example.com"},
                         headers={**key, **forwarded}).status_code == 201
    with rt.db.begin() as conn:
        ips = [r["evidence"]["ip"] for r in conn.execute(db.consent_record.select()).mappings()]
    assert ips == ["198.51.100.4", "192.0.2.1"]


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path) -> None:
    from nurture.errors import ConfigError

    config = write_project(tmp_path / "p", 'trusted_proxies = ["10.0.0.1/8"]\n')
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(config, env={})
    config = write_project(tmp_path / "q", 'trusted_proxies = ["proxy.local"]\n')
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(config, env={})
    assert load_settings(write_project(tmp_path / "r"), env={}).trusted_proxies == []
