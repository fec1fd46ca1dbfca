"""SendGrid email: send through the official SDK; read its Event Webhook and Inbound Parse.

Sending: one request per locally rendered message; our public message id travels as the
`nurture_message_id` custom arg (never personal data), and SendGrid's id comes back in
the `X-Message-Id` header. Webhooks: a lookup table maps each event to our vocabulary,
with an explicit `unknown` fallback; the raw item is kept beside the normalized event.
"""

from __future__ import annotations

import binascii
import email.parser
import email.policy
import hashlib
import http.client
import json
import re
import urllib.error
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from inscriptis import get_text
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    To,
)

from nurture.config.settings import Settings
from nurture.content.headers import ascii_address
from nurture.errors import ConfigError, ProviderError, SignatureError
from nurture.providers.base import OutgoingMessage, ProviderEvent, SendResult
from nurture.scoring.replies import strip_quoted
from nurture.vocab import EventType, MessageState

DEFAULT_HOST = "https://api.sendgrid.com"
#: the custom arg carrying our message id (SendGrid echoes it in every event)
MESSAGE_ID_ARG = "nurture_message_id"
#: signed events older (or further in the future) than this are refused: replay window
MAX_SIGNATURE_AGE = timedelta(minutes=10)
MAX_CATEGORIES = 10

EVENT_TYPES: Mapping[str, str] = {
    "processed": EventType.EMAIL_PROCESSED,
    "dropped": EventType.EMAIL_DROPPED,
    "delivered": EventType.EMAIL_DELIVERED,
    "deferred": EventType.EMAIL_DEFERRED,
    "bounce": EventType.EMAIL_BOUNCED,
    "open": EventType.EMAIL_OPENED,
    "click": EventType.EMAIL_CLICKED,
    "spamreport": EventType.EMAIL_COMPLAINED,
    "unsubscribe": EventType.EMAIL_UNSUBSCRIBED,
    "group_unsubscribe": EventType.EMAIL_UNSUBSCRIBED,
    "group_resubscribe": EventType.EMAIL_RESUBSCRIBED,
}
#: what an event says became of the message
MESSAGE_STATES: Mapping[str, str] = {
    "delivered": MessageState.DELIVERED,
    "bounce": MessageState.BOUNCED,
    "dropped": MessageState.FAILED,
}
CONSEQUENCES: Mapping[str, str] = {
    "spamreport": "suppress",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
#: `dropped` reasons that say something about the address (not e.g. an invalid header):
#: it is on SendGrid's bounce, invalid or spam list, or on its global unsubscribe list
DROP_CONSEQUENCES: Mapping[str, str] = {
    "bounced address": "suppress",
    "invalid": "suppress",
    "spam reporting address": "suppress",
    "unsubscribed address": "withdraw",
}
#: item fields kept as event properties (scoring rules may filter on them)
PROPERTIES = ("url", "reason", "status", "response", "attempt", "asm_group_id", "category",
              "bounce_classification")

_REPLY_TOKEN = re.compile(r"\breply\+([A-Za-z0-9_-]{8,64})@", re.IGNORECASE)
_INVALID_RECIPIENT = re.compile(r"valid (?:email )?address|invalid|not a valid", re.IGNORECASE)


class SendGridProvider:
    name = "sendgrid"

    def __init__(self, api_key: str, settings: Settings, host: str | None = None) -> None:
        self.settings = settings
        self.client = SendGridAPIClient(api_key, host=host or DEFAULT_HOST)
        # python_http_client passes its client's timeout to urllib for every request
        self.client.client.timeout = settings.providers.timeout_seconds

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            response = self.client.send(build_mail(message, self.settings))
        except HTTPError as e:
            raise classify(e) from e
        except urllib.error.URLError as e:  # refused, DNS, connect timeout: nothing was sent
            raise ProviderError(f"sendgrid: {e}", retryable=True, code="network") from e
        except (OSError, http.client.HTTPException) as e:  # sent, then no (complete) answer
            raise ProviderError(f"sendgrid: no answer: {e}", retryable=False,
                                code="timeout") from e
        return SendResult(self.name, response.headers.get("X-Message-Id") or "")


def build_mail(message: OutgoingMessage, settings: Settings) -> Mail:
    """The v3 mail/send body: identity, content, unsubscribe headers, categories, our id."""
    # IDN domains in their ASCII form, as the outbox and SMTP write them
    name, address = parseaddr(ascii_address(message.sender))
    mail = Mail(from_email=From(address, name or None), to_emails=To(ascii_address(message.to)),
                subject=message.subject, plain_text_content=message.text or None,
                html_content=message.html or None)
    if message.reply_to:
        reply_name, reply_address = parseaddr(ascii_address(message.reply_to))
        mail.reply_to = ReplyTo(reply_address, reply_name or None)
    for header, value in message.headers.items():
        mail.header = Header(header, value)
    names = [c[:255] for c in (*message.categories, *settings.providers.sendgrid_categories)]
    categories = list(dict.fromkeys(names))[:MAX_CATEGORIES]
    if categories:  # the SDK inserts each category first: give them in reverse
        mail.category = [Category(c) for c in reversed(categories)]
    mail.custom_arg = CustomArg(MESSAGE_ID_ARG, message.public_id)
    if settings.providers.sendgrid_sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    return mail


def classify(error: HTTPError) -> ProviderError:
    """429/5xx (and 401: a key an operator will fix) are retried; the rest is permanent."""
    status = int(error.status_code)
    errors = _errors(error.body)
    text = "; ".join(f"{e.get('field') or ''}: {e.get('message') or ''}".strip(": ")
                     for e in errors) or str(error.reason)
    message = f"sendgrid {status}: {text}"
    if status in (401, 429) or status >= 500:
        return ProviderError(message, retryable=True, code=str(status))
    bad_recipient = any(re.match(r"personalizations\.\d+\.to", str(e.get("field") or ""))
                        and _INVALID_RECIPIENT.search(str(e.get("message") or ""))
                        for e in errors)
    return ProviderError(message, retryable=False, code=str(status),
                         consequence="suppress" if bad_recipient else None)


def _errors(body: Any) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return []
    found = data.get("errors") if isinstance(data, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


# ---- Event Webhook ------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


def verify_signature(public_key: str, body: bytes, signature: str, timestamp: str,
                     now: datetime) -> None:
    """ECDSA over timestamp + the raw body, and a fresh timestamp; SignatureError if not."""
    if not signature or not timestamp:
        raise SignatureError("missing signature headers")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError) as e:
        raise SignatureError("bad signature timestamp") from e
    if abs(now - sent_at) > MAX_SIGNATURE_AGE:
        raise SignatureError("stale signature timestamp")
    try:
        verifier = _verifier(public_key)
    except ValueError as e:
        raise ConfigError("the webhook public key is not a base64 DER (SPKI) key") from e
    try:
        valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (UnicodeDecodeError, binascii.Error, ValueError) as e:
        raise SignatureError("unreadable signature") from e
    if not valid:
        raise SignatureError("signature does not match")


def parse_event(item: Any, now: datetime) -> ProviderEvent:
    """One Event Webhook item; ValueError when it is not an event at all."""
    if not isinstance(item, dict):
        raise ValueError(f"not an event object: {item!r:.80}")
    kind = str(item.get("event") or "")
    bounce_type = str(item.get("type") or "bounce") if kind == "bounce" else None
    properties = {key: item[key] for key in PROPERTIES if key in item}
    if bounce_type:
        properties["bounce_type"] = bounce_type
    state, consequence = MESSAGE_STATES.get(kind), CONSEQUENCES.get(kind)
    reason = str(item.get("reason") or item.get("response") or "")
    if kind == "bounce" and bounce_type != "blocked":
        consequence = "suppress"  # hard bounce; `blocked` is the receiving server's (soft) refusal
    if kind == "dropped":
        consequence = DROP_CONSEQUENCES.get(reason.strip().lower())
    custom = item.get("custom_args")
    public_id = item.get(MESSAGE_ID_ARG) or (
        custom.get(MESSAGE_ID_ARG) if isinstance(custom, dict) else None)
    sg_message_id = str(item.get("sg_message_id") or "")
    return ProviderEvent(
        type=EVENT_TYPES.get(kind, EventType.UNKNOWN), source="sendgrid",
        occurred_at=_timestamp(item.get("timestamp"), now),
        source_event_id=str(item.get("sg_event_id") or "") or _fingerprint(item),
        channel="email", public_id=str(public_id) if public_id else None,
        provider_message_id=sg_message_id.split(".", 1)[0] or None,
        address=str(item["email"]).strip() if item.get("email") else None,
        properties=properties, raw=item, message_state=state, consequence=consequence,
        detail=f"{kind}: {reason}".strip(": "))


def _timestamp(value: Any, now: datetime) -> datetime:
    if value in (None, ""):
        return now
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError) as e:
        raise ValueError(f"bad timestamp {value!r}") from e


def _fingerprint(item: Mapping[str, Any]) -> str:
    """An item without `sg_event_id` still gets a stable id, so its replay is harmless."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# ---- Inbound Parse ------------------------------------------------------------------------


def parse_inbound(fields: Mapping[str, str], now: datetime) -> ProviderEvent:
    """An Inbound Parse post (parsed or raw mode) → `reply.received` with the new text only.

    The message is the one named by a per-message reply-to (`reply+<id>@…`) among the
    envelope recipients, To and Cc; the sender's address is the fallback.
    """
    raw_mime = fields.get("email")
    mime = (email.parser.BytesParser(policy=email.policy.default).parsebytes(
        raw_mime.encode("utf-8", "surrogateescape")) if raw_mime else None)
    headers = mime or email.parser.HeaderParser().parsestr(fields.get("headers") or "")
    envelope = _envelope(fields.get("envelope"))
    recipients = [*_list(envelope.get("to")), fields.get("to") or headers.get("To") or "",
                  fields.get("cc") or headers.get("Cc") or ""]
    token = next((m.group(1) for r in recipients for m in _REPLY_TOKEN.finditer(r)), None)
    sender = parseaddr(fields.get("from") or str(headers.get("From") or ""))[1]
    sender = (sender or str(envelope.get("from") or "")).strip().lower()
    subject = fields.get("subject") or str(headers.get("Subject") or "")
    text = strip_quoted(_body_text(fields, mime))
    source_id = str(headers.get("Message-ID") or "").strip() or _fingerprint(
        {"from": sender, "to": recipients, "subject": subject, "text": text})
    kept = {k: v for k, v in fields.items() if isinstance(v, str)}
    return ProviderEvent(
        type=EventType.REPLY_RECEIVED, source="sendgrid", occurred_at=now,
        source_event_id=f"inbound:{source_id}", channel="email", public_id=token,
        address=sender or None, raw=kept,
        properties={"channel": "email", "text": text, "subject": subject, "message_id": token})


def _envelope(value: str | None) -> dict[str, Any]:
    try:
        data = json.loads(value or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _body_text(fields: Mapping[str, str], mime: Any) -> str:
    if mime is not None:
        part = mime.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = str(part.get_content())
        return content if part.get_content_subtype() == "plain" else str(get_text(content))
    if fields.get("text"):
        return fields["text"]
    return str(get_text(fields["html"])) if fields.get("html") else ""

