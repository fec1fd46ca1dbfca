"""SMTP email through a real SMTP server on 127.0.0.1 (aiosmtpd), scripted per test."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nurture.config.settings import Settings
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ConfigError, ProviderError
from nurture.providers.base import OutgoingMessage
from nurture.providers.outbox import OutboxProvider
from nurture.providers.registry import build_providers
from nurture.providers.smtp import SmtpProvider
from tests.conftest import applied_runtime
from tests.fakes import add_contact, messages, project_settings, suppressed

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PUBLIC_ID = "0123456789abcdef0123456789abcdef"
MESSAGE = OutgoingMessage(
    public_id=PUBLIC_ID, channel="email", to="camille@example.com",
    sender="Acme Planning <hello@acme.test>", subject="Bienvenue, Camille : votre guide",
    # a line that is a lone dot would end the DATA early without dot-stuffing
    text="Bonjour Camille,\n.\n..et la suite, très bientôt.\n", html="<p>Bonjour Camille</p>",
    reply_to=f"reply+{PUBLIC_ID}@reply.acme.test",
    headers={"List-Unsubscribe": "<https://nurture.test/u/" + "T" * 120 + ">",
             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    created_at=NOW, contact_id=1, purpose="newsletter")


# ---- a real SMTP server ---------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    session: Session
    #: the TLS version the message came over (None: in clear)
    tls: str | None


@dataclass
class Relay:
    """An aiosmtpd handler: records what it takes, answers what a test scripts (per verb:
    MAIL, RCPT, DATA), may answer late, and counts connections that sent MAIL FROM."""

    replies: dict[str, deque[str]] = field(default_factory=lambda: {
        "MAIL": deque(), "RCPT": deque(), "DATA": deque()})
    delays: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    #: every DATA that reached the server, taken or not
    bodies: list[bytes] = field(default_factory=list)
    #: the server side of each connection that sent MAIL FROM
    connections: list[SMTP] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    def script(self, verb: str, *replies: str) -> None:
        self.replies[verb].extend(replies)

    async def _scripted(self, verb: str) -> str | None:
        if self.delays.get(verb):
            await asyncio.sleep(self.delays[verb])
        queue = self.replies[verb]
        return queue.popleft() if queue else None

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, mail_options: list[str]) -> str:
        if not any(c is server for c in self.connections):
            self.connections.append(server)
        reply = await self._scripted("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        reply = await self._scripted("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802
                          envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.bodies.append(content)
        reply = await self._scripted("DATA")
        if reply:
            return reply
        over = server.transport.get_extra_info("ssl_object") if server.transport else None
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                      content, session, over.version() if over else None))
        return f"250 2.0.0 Ok: queued as Q{len(self.received):06d}"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers 535 itself
        return AuthResult(success=auth_data.password == b"s3cret-relay-password",
                          handled=False)


class LoopbackController(Controller):
    """aiosmtpd 1.4 connects to `port` to check the server is up: with port=0 it must
    learn the port the system chose first."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Relay, int]]]:
    """Start a real SMTP server on 127.0.0.1 (aiosmtpd's keyword arguments: TLS,
    authentication, idle timeout); stopped after the test."""
    started: list[LoopbackController] = []

    def start(auth: bool = False, **smtp: Any) -> tuple[Relay, int]:
        relay = Relay()
        if auth:
            smtp["authenticator"] = relay.authenticate
        controller = LoopbackController(relay, hostname="127.0.0.1", port=0, **smtp)
        controller.start()
        started.append(controller)
        return relay, int(controller.port)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def relay(serve: Callable[..., tuple[Relay, int]]) -> tuple[Relay, int]:
    return serve()


@pytest.fixture
def smtp() -> Iterator[Callable[..., SmtpProvider]]:
    """Build providers (`SmtpProvider`'s arguments, or a provider to adopt) and close
    them after the test: a provider keeps its connection open for the next message."""
    built: list[SmtpProvider] = []

    def make(chosen: Settings | SmtpProvider, *args: Any, **kwargs: Any) -> SmtpProvider:
        provider = chosen if isinstance(chosen, SmtpProvider) else SmtpProvider(
            chosen, *args, **kwargs)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


def settings(port: int, root: Path | None = None, timeout: float = 2.0,
             **smtp: object) -> Settings:
    return Settings.model_validate({
        "root": str(root or "."),
        "providers": {"email": "smtp", "timeout_seconds": timeout,
                      "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                               **smtp}}})


# ---- sending --------------------------------------------------------------------------


def test_the_relay_receives_the_outbox_message_byte_for_byte(
        relay: tuple[Relay, int], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    result = smtp(settings(port)).send(MESSAGE)
    OutboxProvider(tmp_path).send(MESSAGE)

    eml = (tmp_path / "email" / f"{PUBLIC_ID}.eml").read_bytes()
    [received] = server.received
    assert b"\r" not in eml  # the file has plain line ends; SMTP's are CRLF (RFC 5321)
    assert received.content == eml.replace(b"\n", b"\r\n")
    assert b"\n.\n" in eml and b"\r\n.\r\n" in received.content  # the lone dot arrived
    assert (received.mail_from, received.rcpt_tos) == ("hello@acme.test",
                                                       ["camille@example.com"])
    assert (result.provider, result.provider_message_id) == ("smtp", "Q000001")
    assert received.tls is None


def test_folded_headers_and_idn_addresses_keep_to_the_outbox_form(
        relay: tuple[Relay, int], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    message = dataclasses.replace(
        MESSAGE, to="José <jose@münchen.example>",
        subject="Votre guide « Planifier sans stress » : les 7 étapes éprouvées par nos "
                "clients, à lire avant la réunion de rentrée de septembre")
    smtp(settings(port)).send(message)
    OutboxProvider(tmp_path).send(message)

    eml = (tmp_path / "email" / f"{PUBLIC_ID}.eml").read_bytes()
    [received] = server.received
    assert eml.count(b"\n =?utf-8?") >= 1  # the subject is folded over several lines
    assert received.content == eml.replace(b"\n", b"\r\n")
    assert b"\n" not in received.content.replace(b"\r\n", b"")  # no bare LF on the wire
    parsed = BytesParser(policy=policy.default).parsebytes(received.content)
    assert received.rcpt_tos == [parsed["To"].addresses[0].addr_spec]
    assert received.rcpt_tos[0].isascii()  # the envelope names the header's ASCII form


def test_without_a_queue_id_the_provider_id_is_our_message_id(
        relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    server.script("DATA", "250 2.0.0 Ok")
    result = smtp(settings(port)).send(MESSAGE)
    assert result.provider_message_id == f"<{PUBLIC_ID}@acme.test>"


@pytest.mark.parametrize(("verb", "reply", "retryable", "consequence"), [
    ("MAIL", "421 4.3.2 Service shutting down", True, None),
    ("MAIL", "451 4.3.0 Temporary lookup failure", True, None),
    ("MAIL", "530 5.7.0 Authentication required", True, None),  # an operator fixes it
    ("MAIL", "553 5.7.1 Sender address rejected: not owned by user", False, None),
    ("MAIL", "550 5.1.1 Sender unknown", False, None),  # our sender, not their mailbox
    ("RCPT", "450 4.2.0 Mailbox busy", True, None),
    ("RCPT", "452 4.5.3 Too many recipients", True, None),
    ("RCPT", "550 5.1.1 <camille@example.com>: Recipient address rejected: User unknown",
     False, "suppress"),
    ("RCPT", "551 5.1.6 User not local; please try <c@elsewhere.example>", False,
     "suppress"),
    ("RCPT", "553 5.1.3 Bad recipient address syntax", False, "suppress"),
    ("RCPT", "550 Requested action not taken: mailbox unavailable", False, "suppress"),
    ("RCPT", "550 5.7.1 Relaying denied", False, None),  # our relay settings, not them
    ("RCPT", "550 relay not permitted", False, None),
    ("RCPT", "554 5.7.1 Client host rejected", False, None),
    ("DATA", "421 4.7.0 Try again later, closing connection", True, None),
    ("DATA", "451 4.7.1 Greylisted, please try again", True, None),
    ("DATA", "552 5.3.4 Message size exceeds fixed limit", False, None),
    ("DATA", "550 5.7.1 Message rejected as spam", False, None),  # not the mailbox's fault
    ("DATA", "554 5.7.1 Message rejected: Email address is not verified", False, None),
])
def test_replies_are_classified(relay: tuple[Relay, int], verb: str, reply: str,
                                retryable: bool, consequence: str | None,
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    server.script(verb, reply)
    with pytest.raises(ProviderError) as caught:
        smtp(settings(port)).send(MESSAGE)

    code = reply.split()[0]
    assert (caught.value.retryable, caught.value.code) == (retryable, code)
    assert caught.value.consequence == consequence
    assert reply.split(maxsplit=1)[1] in str(caught.value)
    assert not server.received


def test_after_a_refusal_the_connection_serves_the_next_message(
        relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    server.script("RCPT", "550 5.1.1 User unknown")
    provider = smtp(settings(port))
    with pytest.raises(ProviderError):
        provider.send(MESSAGE)
    provider.send(MESSAGE)

    [received] = server.received  # the refused one left nothing behind (RSET)
    assert received.rcpt_tos == ["camille@example.com"]
    assert len(server.connections) == 1 and provider.connections == 1


def test_a_slow_answer_after_the_body_is_timeout_never_retried(
        relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    """The body went out: the relay may have queued it, so a retry could send it twice."""
    server, port = relay
    server.delays["DATA"] = 1.5
    provider = smtp(settings(port, timeout=0.3))

    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)

    assert (caught.value.retryable, caught.value.code) == (False, "timeout")
    assert len(server.bodies) == 1


def test_a_slow_answer_before_the_body_is_retryable(relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    server.delays["RCPT"] = 1.5
    provider = smtp(settings(port, timeout=0.3))

    with pytest.raises(ProviderError) as caught:
        provider.send(MESSAGE)

    assert (caught.value.retryable, caught.value.code) == (True, "network")
    assert not server.bodies


def test_a_refused_connection_is_retryable(smtp: Callable[..., SmtpProvider]) -> None:
    with pytest.raises(ProviderError) as caught:
        smtp(settings(9)).send(MESSAGE)
    assert (caught.value.retryable, caught.value.code) == (True, "network")


def test_a_connection_the_relay_closed_is_opened_again(
        serve: Callable[..., tuple[Relay, int]],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = serve(timeout=0.3)  # the server drops clients idle for 0.3 s
    provider = smtp(settings(port))
    provider.send(MESSAGE)
    _until(lambda: server.connections[0].transport is None)
    provider.send(MESSAGE)

    assert len(server.received) == 2 and len(server.connections) == 2
    assert provider.connections == 2


def test_a_421_on_the_kept_connection_opens_a_new_one(relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    provider = smtp(settings(port))
    provider.send(MESSAGE)
    server.script("MAIL", "421 4.4.2 Idle timeout, closing connection")
    provider.send(MESSAGE)

    assert len(server.received) == 2 and provider.connections == 2


def test_a_connection_idle_for_long_is_replaced_before_use(
        relay: tuple[Relay, int], smtp: Callable[..., SmtpProvider]) -> None:
    """A relay or a NAT may drop an idle client silently: waiting for its answer would
    cost a whole timeout, so a long-idle connection is closed (QUIT) and opened anew."""
    server, port = relay
    clock = [1000.0]
    provider = smtp(settings(port), clock=lambda: clock[0])
    provider.send(MESSAGE)
    clock[0] += 30
    provider.send(MESSAGE)
    clock[0] += 61
    provider.send(MESSAGE)

    assert len(server.received) == 3 and provider.connections == 2
    _until(lambda: server.connections[0].transport is None)  # the first one said QUIT


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


def test_concurrent_senders_share_the_connection_in_turn(relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    """The web app's worker threads share one provider (confirmation emails)."""
    server, port = relay
    provider = smtp(settings(port))
    failures: list[BaseException] = []

    def send_five(n: int) -> None:
        for i in range(5):
            try:
                provider.send(OutgoingMessage(f"{n}{i}" + "0" * 30, "email",
                                              f"c{n}{i}@example.com", "hello@acme.test",
                                              subject="s", text="t"))
            except ProviderError as e:
                failures.append(e)

    threads = [threading.Thread(target=send_five, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures
    assert sorted(r.rcpt_tos[0] for r in server.received) == sorted(
        f"c{n}{i}@example.com" for n in range(4) for i in range(5))
    assert provider.connections == 1


def test_pacing_spaces_messages_at_mps(relay: tuple[Relay, int],
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock[0] += seconds

    provider = smtp(settings(port, mps=4), clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        provider.send(MESSAGE)

    assert slept == [0.25, 0.25] and len(server.received) == 3


# ---- TLS and authentication -----------------------------------------------------------


@dataclass
class Certificates:
    ca_file: Path
    server_context: ssl.SSLContext


def certificates(folder: Path) -> Certificates:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nurture test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return Certificates(folder / "ca.pem", context)


def test_starttls_and_login_over_it(serve: Callable[..., tuple[Relay, int]], tmp_path: Path,
                                    smtp: Callable[..., SmtpProvider]) -> None:
    certs = certificates(tmp_path / "tls")
    server, port = serve(auth=True, tls_context=certs.server_context, require_starttls=True,
                         auth_required=True)
    chosen = settings(port, root=tmp_path, security="starttls", username="acme",
                      ca_file="tls/ca.pem")
    built = build_providers(chosen, env={"SMTP_PASSWORD": "s3cret-relay-password"})["email"]
    assert isinstance(built, SmtpProvider)
    provider = smtp(built)
    provider.send(MESSAGE)

    [received] = server.received
    assert received.tls and received.tls.startswith("TLS") and received.session.authenticated
    assert server.logins == [(b"acme", b"s3cret-relay-password")]


def test_a_wrong_password_is_retried_not_the_message_refused(
        serve: Callable[..., tuple[Relay, int]], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    certs = certificates(tmp_path / "tls")
    server, port = serve(auth=True, tls_context=certs.server_context, require_starttls=True,
                         auth_required=True)
    chosen = settings(port, root=tmp_path, security="starttls", username="acme",
                      ca_file="tls/ca.pem")
    with pytest.raises(ProviderError) as caught:
        smtp(chosen, "not-the-password").send(MESSAGE)

    assert (caught.value.retryable, caught.value.code) == (True, "535")
    assert not server.bodies


def test_implicit_tls(serve: Callable[..., tuple[Relay, int]], tmp_path: Path,
                      smtp: Callable[..., SmtpProvider]) -> None:
    certs = certificates(tmp_path / "tls")
    server, port = serve(ssl_context=certs.server_context)
    provider = smtp(settings(port, root=tmp_path, security="tls", ca_file="tls/ca.pem"))
    provider.send(MESSAGE)

    [received] = server.received
    assert received.tls and received.tls.startswith("TLS")


def test_an_untrusted_certificate_is_refused_and_retryable(
        serve: Callable[..., tuple[Relay, int]], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    certs = certificates(tmp_path / "tls")
    server, port = serve(tls_context=certs.server_context, require_starttls=True)
    with pytest.raises(ProviderError) as caught:
        smtp(settings(port, security="starttls")).send(MESSAGE)  # system CAs only

    assert (caught.value.retryable, caught.value.code) == (True, "tls")
    assert "certificate" in str(caught.value) and not server.received


# ---- through the engine ---------------------------------------------------------------

WELCOME = """
id: welcome
name: Welcome
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/welcome-guide }
"""


def engine(tmp_path: Path, port: int, smtp: Callable[..., SmtpProvider],
           timeout: float = 2.0) -> Runtime:
    """A project whose config.toml sends email through the relay on `port`."""
    config = f"""
    [providers]
    email = "smtp"
    retry_base_seconds = 30
    max_attempts = 5
    timeout_seconds = {timeout}

    [providers.smtp]
    host = "127.0.0.1"
    port = {port}
    security = "none"
    """
    settings = project_settings(tmp_path / "project", config, {"welcome": WELCOME})
    providers = build_providers(settings, env={})
    email = providers["email"]
    assert isinstance(email, SmtpProvider)
    smtp(email)
    return applied_runtime(settings, providers=providers)


def test_a_batch_goes_through_one_connection(relay: tuple[Relay, int], tmp_path: Path,
                                             smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    rt = engine(tmp_path, port, smtp)
    for name in ("camille", "dominique", "alex"):
        add_contact(rt, NOW, f"{name}@example.com")

    assert tick(rt, NOW).sent == 3

    assert sorted(r.rcpt_tos[0] for r in server.received) == [
        "alex@example.com", "camille@example.com", "dominique@example.com"]
    assert len(server.connections) == 1
    sent = messages(rt)
    assert {m["state"] for m in sent} == {"sent"} and {m["provider"] for m in sent} == {"smtp"}
    assert sorted(m["provider_message_id"] for m in sent) == ["Q000001", "Q000002", "Q000003"]
    for message, received in zip(sorted(sent, key=lambda m: m["provider_message_id"]),
                                 server.received, strict=True):
        assert f"X-Nurture-Message-Id: {message['public_id']}".encode() in received.content
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in received.content


def test_421_is_retried_then_sent_once(relay: tuple[Relay, int], tmp_path: Path,
                                       smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    rt = engine(tmp_path, port, smtp)
    add_contact(rt, NOW, "camille@example.com")
    server.script("DATA", "421 4.7.0 Try again later, closing connection")

    tick(rt, NOW)
    [first] = messages(rt)
    assert (first["state"], first["attempts"]) == ("retrying", 1) and "421" in first["error"]
    assert not server.received
    tick(rt, NOW + timedelta(seconds=5))  # not due yet
    assert len(server.bodies) == 1
    tick(rt, NOW + timedelta(minutes=1))
    tick(rt, NOW + timedelta(hours=1))

    [sent] = messages(rt)
    assert (sent["state"], sent["attempts"]) == ("sent", 2)
    assert len(server.bodies) == 2 and len(server.received) == 1  # refused, then taken once
    assert server.bodies[0] == server.received[0].content  # the same bytes, the same id
    assert len(server.connections) == 2  # the relay said it was closing: a new connection


def test_550_fails_the_message_and_suppresses_the_address(
        relay: tuple[Relay, int], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    rt = engine(tmp_path, port, smtp)
    add_contact(rt, NOW, "camille@example.com")
    server.script("RCPT", "550 5.1.1 <camille@example.com>: Recipient address rejected: "
                          "User unknown in virtual mailbox table")

    tick(rt, NOW)
    tick(rt, NOW + timedelta(hours=2))

    [message] = messages(rt)
    assert message["state"] == "failed" and "User unknown" in message["error"]
    assert not server.bodies  # refused at RCPT, never retried
    found = suppressed(rt, "camille@example.com")
    assert found is not None and found["reason"] == "provider_rejected"


def test_no_answer_after_the_body_leaves_the_message_unknown_never_resent(
        relay: tuple[Relay, int], tmp_path: Path,
        smtp: Callable[..., SmtpProvider]) -> None:
    server, port = relay
    rt = engine(tmp_path, port, smtp, timeout=0.3)
    add_contact(rt, NOW, "camille@example.com")
    server.delays["DATA"] = 1.0

    tick(rt, NOW)
    server.delays.clear()
    tick(rt, NOW + timedelta(minutes=5))
    tick(rt, NOW + timedelta(hours=2))

    [message] = messages(rt)
    assert message["state"] == "unknown" and message["error"].startswith("timeout:")
    assert len(server.bodies) == 1  # handed over once, never again


# ---- config and registry --------------------------------------------------------------


def test_the_registry_builds_smtp_from_config_and_the_environment() -> None:
    chosen = settings(2525, username="acme", security="starttls", mps=5)
    built = build_providers(chosen, env={"SMTP_PASSWORD": "relay-password"})["email"]
    assert isinstance(built, SmtpProvider)
    assert (built.password, built.timeout, built.relay.resolved_port) == (
        "relay-password", 2.0, 2525)

    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        build_providers(chosen, env={})  # a login without its password
    with pytest.raises(ConfigError, match="username is empty"):
        build_providers(settings(2525), env={"SMTP_PASSWORD": "relay-password"})
    assert isinstance(build_providers(settings(25), env={})["email"], SmtpProvider)


def test_production_refuses_placeholder_or_clear_text_passwords() -> None:
    def production(**smtp: object) -> Settings:
        return Settings.model_validate({"mode": "production", "providers": {
            "email": "smtp", "smtp": {"host": "smtp-relay.brevo.com", **smtp}}})

    with pytest.raises(ConfigError, match="placeholder"):
        build_providers(production(username="acme"), env={"SMTP_PASSWORD": "change-me"})
    with pytest.raises(ConfigError, match="in clear"):
        build_providers(production(username="acme", security="none"),
                        env={"SMTP_PASSWORD": "relay-password"})
    built = build_providers(production(username="acme", security="tls"),
                            env={"SMTP_PASSWORD": "relay-password"})["email"]
    assert isinstance(built, SmtpProvider) and built.relay.resolved_port == 465


@pytest.mark.parametrize(("smtp_table", "error"), [
    ("", "providers.smtp.host is required"),
    ('host = "smtp.example.com"\npassword = "hunter2"', "providers.smtp.password: unknown key"),
    ('host = "smtp.example.com"\nsecurity = "ssl"', "providers.smtp.security"),
    ('host = "smtp.example.com"\nport = 0', "providers.smtp.port"),
])
def test_config_errors(tmp_path: Path, smtp_table: str, error: str) -> None:
    config = f'[providers]\nemail = "smtp"\n[providers.smtp]\n{smtp_table}\n'
    with pytest.raises(ConfigError, match=error):
        project_settings(tmp_path / "project", config)


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca_file"):
        SmtpProvider(settings(25, root=tmp_path, ca_file="missing.pem"))
