"""The default provider: a real `.eml` per email and a JSON file per SMS under outbox/."""

from __future__ import annotations

import json
import logging
import os
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from nurture.errors import ProviderError
from nurture.providers.base import OutgoingMessage, SendResult

log = logging.getLogger("nurture.outbox")

#: long unbreakable header values (List-Unsubscribe with its token) must stay plain
#: ASCII, not RFC 2047 encoded-words, so lines may run to RFC 5322's 998 characters
EMAIL_POLICY = policy.default.clone(max_line_length=998)


class OutboxProvider:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

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
            raise ProviderError(f"outbox: cannot write {folder}: {e}", retryable=True) from e
        return SendResult(self.name, f"outbox-{message.public_id}")


def build_email(message: OutgoingMessage) -> EmailMessage:
    """An RFC 5322 message: text and HTML alternatives, with our headers."""
    mail = EmailMessage(policy=EMAIL_POLICY)
    mail["From"] = message.sender
    mail["To"] = message.to
    if message.reply_to:
        mail["Reply-To"] = message.reply_to
    mail["Subject"] = message.subject
    if message.created_at is not None:
        mail["Date"] = format_datetime(message.created_at)
    domain = message.sender.rpartition("@")[2].strip(">") or "nurture.invalid"
    mail["Message-ID"] = make_msgid(idstring=message.public_id, domain=domain)
    mail["X-Nurture-Message-Id"] = message.public_id
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.text or " ")
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


def sms_document(message: OutgoingMessage) -> dict[str, object]:
    return {"id": message.public_id, "to": message.to, "from": message.sender,
            "body": message.text, "status_callback": message.status_callback}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
