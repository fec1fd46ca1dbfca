"""SMTP email through any relay: Brevo, Mailjet, Amazon SES, OVH, your own Postfix.

The message is the outbox's RFC 5322 message, byte for byte, with the CRLF line ends
SMTP requires on the wire. One connection serves a batch and the batches after it: it
opens on the first message and opens again when the relay closed it (idle timeout) or
was left idle longer than `MAX_IDLE_SECONDS`.

Replies are classified like the other providers' answers: 4xx and network errors are
retried; 5xx refuse the message, and a recipient refused as a bad mailbox (550/551/553)
is suppressed. Until the message body went out nothing was handed over, so a lost
connection is retried; once it went out, a missing answer is code "timeout" (the send
path leaves the message `unknown`): the relay may have queued it, and sending it again
could deliver it twice.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import parseaddr

from nurture.config.settings import Settings, Smtp
from nurture.errors import ConfigError, ProviderError
from nurture.providers.base import OutgoingMessage, SendResult
from nurture.providers.outbox import build_email
from nurture.providers.pacing import LocalPacer, Pacer

log = logging.getLogger("nurture.smtp")

#: a connection idle for longer is closed and opened anew: relays drop idle clients
#: (Postfix after 300 s, some after much less) and a NAT may forget them silently
MAX_IDLE_SECONDS = 60.0
#: replies an operator fixes (authentication required or failed): retried like SendGrid's 401
OPERATOR_REPLIES = frozenset({530, 534, 535, 538})
#: replies to RCPT that may say the mailbox itself is bad
BAD_MAILBOX_REPLIES = frozenset({550, 551, 553})
#: enhanced status codes (RFC 3463) about the recipient's address: suppress it
BAD_MAILBOX_STATUSES = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10",
                                  "5.2.1"})
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
#: without an enhanced code, these words say the refusal is about us, not the mailbox
_NOT_THE_MAILBOX = re.compile(r"relay|auth|spam|policy|block|rate|sender", re.IGNORECASE)
_LINE_END = re.compile(rb"\r?\n")
_QUEUED_AS = re.compile(r"queued as\s+<?([^\s>]+)", re.IGNORECASE)


class _Gone(Exception):
    """The relay closed the connection, or said it will (421), before taking anything."""

    def __init__(self, message: str, code: str = "network") -> None:
        self.code = code
        super().__init__(message)


class SmtpProvider:
    name = "smtp"

    def __init__(self, settings: Settings, password: str = "", *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 pacer: Pacer | None = None) -> None:
        self.relay: Smtp = settings.providers.smtp
        self.password = password
        self.timeout = settings.providers.timeout_seconds
        #: None: smtplib names this machine (its fully qualified name) when connecting
        self.helo = self.relay.helo_name or None
        ca_file = (settings.root_path / self.relay.ca_file) if self.relay.ca_file else None
        try:
            self.context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"providers.smtp.ca_file: cannot load {ca_file}: {e}") from e
        self.clock = clock
        self.sleep = sleep
        #: connections opened so far (the batch figures in logs and tests)
        self.connections = 0
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        #: one message at a time per relay (shared by the fleet when given a SharedPacer)
        self.pacer = pacer or LocalPacer(self.relay.mps, clock, sleep)
        # the web app's worker threads share this provider (confirmation emails)
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> SendResult:
        mail = build_email(message)
        data = wire_bytes(mail)
        # the envelope names the addresses the headers name (IDN domains in ASCII form)
        sender = _address(mail, "From", message.sender)
        recipient = _address(mail, "To", message.to)
        with self._lock:
            self.pacer.wait(self.relay.host, 1)
            try:
                reply = self._transaction(sender, recipient, data)
            finally:
                self._last_used = self.clock()
        return SendResult(self.name, provider_id(reply, str(mail["Message-ID"] or "")))

    def _transaction(self, sender: str, recipient: str, data: bytes) -> tuple[int, str]:
        """One message on the open connection; on a new one when the relay had closed it."""
        reused = self._fresh_enough()
        try:
            self._envelope(self._connection(), sender, recipient, data)
        except _Gone as e:
            self._drop()
            if not reused:
                raise ProviderError(f"smtp: {e}", retryable=True, code=e.code) from e
            try:  # the relay closed the idle connection: once more, on a new one
                self._envelope(self._connection(), sender, recipient, data)
            except _Gone as again:
                self._drop()
                raise ProviderError(f"smtp: {again}", retryable=True, code=again.code) from again
        return self._data(self._connection(), data)

    def close(self) -> None:
        """Say QUIT and close the connection (a new one opens on the next message)."""
        with self._lock:
            self._quit()

    # ---- the connection ----------------------------------------------------------------

    def _fresh_enough(self) -> bool:
        """Whether a connection is open and was used lately (else a new one will open)."""
        if self._smtp is not None and self.clock() - self._last_used > MAX_IDLE_SECONDS:
            self._quit()
        return self._smtp is not None

    def _quit(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
        self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
            self.connections += 1
            log.info("smtp: connected to %s:%s (%s), connection %d", self.relay.host,
                     self.relay.resolved_port, self.relay.security, self.connections)
            self._last_used = self.clock()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        """Connect, greet, upgrade to TLS, log in; any failure is retried (nothing was sent,
        and what failed is the relay or its settings, not this message)."""
        relay, port = self.relay, self.relay.resolved_port
        smtp: smtplib.SMTP | None = None
        try:
            if relay.security == "tls":
                smtp = smtplib.SMTP_SSL(relay.host, port, local_hostname=self.helo,
                                        timeout=self.timeout, context=self.context)
            else:
                smtp = smtplib.SMTP(relay.host, port, local_hostname=self.helo,
                                    timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if relay.security == "starttls":
                smtp.starttls(context=self.context)
                smtp.ehlo_or_helo_if_needed()
            if relay.username:
                smtp.login(relay.username, self.password)
        except smtplib.SMTPResponseException as e:  # greeting, EHLO, STARTTLS, AUTH refused
            _close(smtp)
            raise ProviderError(f"smtp {e.smtp_code} connecting to {relay.host}:{port}: "
                                f"{_text(e.smtp_error)}", retryable=True,
                                code=str(e.smtp_code)) from e
        except smtplib.SMTPNotSupportedError as e:  # no STARTTLS or no AUTH on offer
            _close(smtp)
            raise ProviderError(f"smtp {relay.host}:{port}: {e}", retryable=True,
                                code="unsupported") from e
        except ssl.SSLError as e:  # an untrusted certificate, or no common protocol
            _close(smtp)
            raise ProviderError(f"smtp TLS with {relay.host}:{port}: {e}", retryable=True,
                                code="tls") from e
        except (smtplib.SMTPException, OSError) as e:  # refused, DNS, connect timeout
            _close(smtp)
            raise ProviderError(f"smtp: cannot reach {relay.host}:{port}: {e}",
                                retryable=True, code="network") from e
        return smtp

    # ---- one transaction ---------------------------------------------------------------

    def _envelope(self, smtp: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
        """MAIL FROM and RCPT TO; `_Gone` when the connection is lost before either."""
        options = _mail_options(smtp, sender, recipient, data)
        try:
            code, text = smtp.mail(sender, options)
        except (smtplib.SMTPException, OSError) as e:
            raise _Gone(f"connection lost at MAIL FROM: {e}") from e
        self._accepted(smtp, "sender", code, text)
        try:
            code, text = smtp.rcpt(recipient)
        except (smtplib.SMTPException, OSError) as e:
            raise _Gone(f"connection lost at RCPT TO: {e}") from e
        self._accepted(smtp, "recipient", code, text)

    def _accepted(self, smtp: smtplib.SMTP, stage: str, code: int, text: bytes) -> None:
        if code == 421:
            raise _Gone(f"421 at {stage}: {_text(text)}", code="421")
        if code not in (250, 251):
            self._reset(smtp)
            raise classify(code, _text(text), stage)

    def _data(self, smtp: smtplib.SMTP, data: bytes) -> tuple[int, str]:
        try:
            code, text = smtp.docmd("DATA")
        except (smtplib.SMTPException, OSError) as e:  # the body has not gone out yet
            self._drop()
            raise ProviderError(f"smtp: connection lost at DATA: {e}", retryable=True,
                                code="network") from e
        if code != 354:
            if code == 421:
                self._drop()
            else:
                self._reset(smtp)
            raise classify(code, _text(text), "data")
        try:
            smtp.send(_stuffed(data))
            code, text = smtp.getreply()
        except (smtplib.SMTPException, OSError) as e:
            self._drop()
            raise ProviderError(f"smtp: no answer after the message was sent: {e}",
                                retryable=False, code="timeout") from e
        if code == 421:
            self._drop()
        if code != 250:
            raise classify(code, _text(text), "body")
        return code, _text(text)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """RSET after a refusal, so the connection can serve the next message."""
        try:
            code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()


def classify(code: int, text: str, stage: str) -> ProviderError:
    """4xx (and authentication replies) are retried; 5xx refuse the message; a bad mailbox
    (550/551/553 to RCPT, unless the relay says the refusal is about us) is suppressed."""
    message = f"smtp {code} ({stage}): {text}"
    if 400 <= code < 500 or code in OPERATOR_REPLIES:
        return ProviderError(message, retryable=True, code=str(code))
    consequence = "suppress" if stage == "recipient" and bad_mailbox(code, text) else None
    return ProviderError(message, retryable=False, code=str(code), consequence=consequence)


def bad_mailbox(code: int, text: str) -> bool:
    if code not in BAD_MAILBOX_REPLIES:
        return False
    enhanced = _ENHANCED.match(text)
    if enhanced:
        return enhanced.group(1) in BAD_MAILBOX_STATUSES
    return not _NOT_THE_MAILBOX.search(text)  # e.g. "550 relay not permitted"


def provider_id(reply: tuple[int, str], message_id: str) -> str:
    """The relay's queue id when its reply names one ("queued as 4F1x2y", SES's
    "Ok <id>"), else our Message-ID."""
    text = reply[1]
    queued = _QUEUED_AS.search(text)
    if queued:
        return queued.group(1)
    words = text.split()
    last = words[-1] if words else ""
    return last if len(last) >= 12 and any(c.isdigit() for c in last) else message_id


def _mail_options(smtp: smtplib.SMTP, sender: str, recipient: str,
                  data: bytes) -> list[str]:
    options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
    if not data.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if not (sender + recipient).isascii():
        if not smtp.has_extn("smtputf8"):
            raise ProviderError(f"smtp: {recipient!r} or {sender!r} needs SMTPUTF8, which "
                                "the relay does not offer", retryable=False, code="smtputf8")
        options.append("SMTPUTF8")
    return options


def wire_bytes(mail: EmailMessage) -> bytes:
    """The outbox's bytes, with the CRLF line ends SMTP requires (RFC 5321 §2.3.8)."""
    return _LINE_END.sub(b"\r\n", mail.as_bytes())


def _stuffed(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency (a line starting with "." gets another), then the
    end-of-data line."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _address(mail: EmailMessage, header: str, written: str) -> str:
    addresses = getattr(mail[header], "addresses", ())
    return str(addresses[0].addr_spec) if addresses else (parseaddr(written)[1] or written)


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()
