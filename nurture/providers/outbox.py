"""The default provider: a real `.eml` per email and a JSON file per SMS under outbox/."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import re
from email import policy
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nurture.content.headers import ascii_address, ascii_domain
from nurture.errors import ProviderError
from nurture.providers.base import OutgoingMessage, SendResult

log = logging.getLogger("nurture.outbox")

#: a header holding RFC 2047 encoded-words is folded in lines of 76 at most, so each
#: encoded-word is 75 characters at most (RFC 2047 section 2)
_ENCODED = policy.default.clone(max_line_length=76)
#: an ASCII header is folded at whitespace in lines of 78 (RFC 5322 2.1.1)…
_FOLDED = policy.default
#: …unless it holds a token too long for such a line (List-Unsubscribe with its URL):
#: folded at 78, Python would turn it into encoded-words; it stays whole, up to 998
_UNFOLDED = policy.default.clone(max_line_length=998)


if TYPE_CHECKING:  # generic for the type checker only
    _Policy = EmailPolicy[EmailMessage]
else:
    _Policy = EmailPolicy


def _folding(value: object) -> _Policy:
    text = str(value)
    if not text.isascii():
        return _ENCODED
    return _UNFOLDED if any(len(word) > 70 for word in text.split()) else _FOLDED


# Python's folder may leave the space before a fold at the end of the line, and the
# continuation line starts with one: unfolded, "Boulangeries  Müller" gets two
_SPACE_BEFORE_FOLD = re.compile(r"[ \t]+(?=\r?\n[ \t])")
_SPACE_BEFORE_FOLD_BYTES = re.compile(rb"[ \t]+(?=\r?\n[ \t])")


class _MailPolicy(_Policy):
    """Each header folded as `_folding` says; the body's lines may run to 998.

    Parsing and folding a header is most of what building an email costs, and most of
    a batch's headers repeat from one message to the next (From, Subject, Date, List-Id,
    Feedback-ID, the MIME headers): each (name, value) is parsed and folded once, the
    same header object and the same bytes given back for every later message. Both
    depend on nothing but the name and the value (the folding policies are fixed)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if type(value) is str:
            return _parsed(self.header_factory, name, value)
        return super().header_store_parse(name, value)

    def fold(self, name: str, value: Any) -> str:
        return _folded(type(value).__name__, name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        return _folded_binary(type(value).__name__, name, value)


#: distinct (name, value) pairs kept: a batch's repeated headers, not every message id
_CACHED_HEADERS = 1024


@functools.lru_cache(maxsize=_CACHED_HEADERS)
def _parsed(factory: Any, name: str, value: str) -> tuple[str, Any]:
    if len(value.splitlines()) > 1:
        raise ValueError("Header values may not contain linefeed or carriage return "
                         "characters")
    return name, _header_class(factory, name)(name, value)


@functools.lru_cache(maxsize=256)
def _header_class(factory: Any, name: str) -> Any:
    """The registry's class for a header name (it builds a new class at each lookup)."""
    return factory[name]


# the header's kind (its class's name) is in the key: the same text parsed as another
# kind of header (a raw string, an address list) may fold differently
@functools.lru_cache(maxsize=_CACHED_HEADERS)
def _folded(kind: str, name: str, value: Any) -> str:
    return _SPACE_BEFORE_FOLD.sub("", str(_folding(value).fold(name, value)))


@functools.lru_cache(maxsize=_CACHED_HEADERS)
def _folded_binary(kind: str, name: str, value: Any) -> bytes:
    return _SPACE_BEFORE_FOLD_BYTES.sub(b"", _folding(value).fold_binary(name, value))


EMAIL_POLICY = _MailPolicy(max_line_length=998)

#: the sender's address (the same for every message) made ASCII once
_ascii_address = functools.lru_cache(maxsize=256)(ascii_address)


class OutboxProvider:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._unsynced = False

    def send(self, message: OutgoingMessage) -> SendResult:
        folder = self.directory / message.channel
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if message.channel == "email":
                path = folder / f"{message.public_id}.eml"
                _write_atomically(path, build_email(message).as_bytes())
                log.info("email %s to %s: %s", message.public_id, message.to, message.subject)
            else:
                path = folder / f"{message.public_id}.json"
                _write_atomically(path, json.dumps(sms_document(message), ensure_ascii=False,
                                                   indent=2).encode())
                log.info("sms %s to %s: %s", message.public_id, message.to, message.text[:60])
        except OSError as e:
            raise ProviderError(f"outbox: cannot write {folder}: {e}", retryable=True,
                                code="outbox_unwritable") from e
        self._unsynced = True
        return SendResult(self.name, f"outbox-{message.public_id}")

    def flush(self) -> None:
        """Make the files written since the last flush durable, all at once (the send
        path calls it before recording them sent): one filesystem sync per chunk instead
        of one fsync per file."""
        if not self._unsynced:
            return
        _sync_filesystem(self.directory)
        self._unsynced = False

    def handed_over(self, public_id: str, channel: str) -> bool:
        """Written atomically (temporary file, then rename): the file exists exactly
        when the message was handed over."""
        suffix = ".eml" if channel == "email" else ".json"
        return (self.directory / channel / f"{public_id}{suffix}").exists()


def build_email(message: OutgoingMessage) -> EmailMessage:
    """An RFC 5322 message: text and HTML alternatives, with our headers."""
    mail = EmailMessage(policy=EMAIL_POLICY)
    # IDN domains in their ASCII form: an encoded-word is not allowed in an address
    mail["From"] = _ascii_address(message.sender)
    mail["To"] = ascii_address(message.to)
    if message.reply_to:
        mail["Reply-To"] = ascii_address(message.reply_to)
    mail["Subject"] = message.subject
    if message.created_at is not None:
        mail["Date"] = format_datetime(message.created_at)
    domain = ascii_domain(message.sender.rpartition("@")[2].strip(">")) or "nurture.invalid"
    # derived from our id alone: every copy of the message (the outbox's, each SMTP
    # attempt) carries the same Message-ID, so a receiver can tell a retry from a new one
    mail["Message-ID"] = f"<{message.public_id}@{domain}>"
    mail["X-Nurture-Message-Id"] = message.public_id
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.text or " ")
    if message.html:
        mail.add_alternative(message.html, subtype="html")
        mail.set_boundary(_boundary(message))
    return mail


def _boundary(message: OutgoingMessage) -> str:
    """A MIME boundary derived from our id (not random), absent from the content: the
    same message gives the same bytes (outbox copy, each SMTP attempt)."""
    seed = message.public_id
    while True:
        boundary = "=_" + hashlib.sha256(f"boundary:{seed}".encode()).hexdigest()[:32]
        if boundary not in message.text and boundary not in message.html:
            return boundary
        seed += "+"


def sms_document(message: OutgoingMessage) -> dict[str, object]:
    return {"id": message.public_id, "to": message.to, "from": message.sender,
            "body": message.text, "status_callback": message.status_callback}


def _write_atomically(path: Path, data: bytes) -> None:
    """Written whole, then renamed: the file exists complete or not at all, even after a
    kill -9 (durability across a power loss comes from `flush`)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _sync_filesystem(directory: Path) -> None:
    """syncfs(2) on the outbox's filesystem where libc has it, else sync(2)."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
