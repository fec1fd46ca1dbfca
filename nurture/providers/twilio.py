"""Twilio SMS: send through the official SDK, paced per sender (`providers.pacing`); read
inbound SMS and status callbacks.

Our public message id rides in the status callback URL (`?m=<id>`); Twilio's `sid` is
kept as the provider id. Error codes that say something about the number (opted out,
invalid, landline) carry a consequence; the same table serves the send call and the
delivery callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from nurture.config.settings import Settings
from nurture.content.rendering import sms_segments
from nurture.errors import ProviderError, SignatureError
from nurture.providers.base import OutgoingMessage, ProviderEvent, SendResult
from nurture.providers.pacing import LocalPacer, Pacer
from nurture.vocab import EventType, MessageState

#: Twilio error codes that say something about the number itself
ERROR_CONSEQUENCES: Mapping[int, str] = {
    21610: "withdraw",  # the recipient replied STOP: Twilio refuses to send to them
    21211: "suppress",  # invalid 'To' phone number
    21614: "suppress",  # 'To' is not a valid mobile number
    30005: "suppress",  # unknown destination handset (delivery callback)
    30006: "suppress",  # landline or unreachable carrier (delivery callback)
}
STATUS_TYPES: Mapping[str, str] = {
    "delivered": EventType.SMS_DELIVERED,
    "undelivered": EventType.SMS_FAILED,
    "failed": EventType.SMS_FAILED,
}
MESSAGE_STATES: Mapping[str, str] = {
    "delivered": MessageState.DELIVERED,
    "undelivered": MessageState.FAILED,
    "failed": MessageState.FAILED,
}
#: progress reports on the way to a final status: nothing to record
PROGRESS_STATUSES = frozenset({"accepted", "scheduled", "queued", "sending", "sent",
                               "receiving", "received", "read", "canceled"})


class TwilioProvider:
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, settings: Settings,
                 http_client: TwilioHttpClient | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 pacer: Pacer | None = None) -> None:
        self.settings = settings
        timeout = settings.providers.timeout_seconds
        http_client = http_client or TwilioHttpClient(timeout=timeout)
        if http_client.timeout is None:
            http_client.timeout = timeout
        self.client = Client(account_sid, auth_token, http_client=http_client)
        # per process unless given one shared by the fleet (`pacing.SharedPacer`)
        self.pacer = pacer or LocalPacer(settings.providers.twilio_mps, clock, sleep)

    def send(self, message: OutgoingMessage) -> SendResult:
        params, sender = create_params(message, self.settings)
        self.pacer.wait(sender, sms_segments(message.text)[0])
        try:
            created = self.client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as e:
            raise classify(e) from e
        except (requests.ConnectionError, requests.ConnectTimeout) as e:  # nothing was sent
            raise ProviderError(f"twilio: {e}", retryable=True, code="network") from e
        except requests.RequestException as e:  # sent, then no (complete) answer
            raise ProviderError(f"twilio: no answer: {e}", retryable=False,
                                code="timeout") from e
        return SendResult(self.name, str(created.sid))


def create_params(message: OutgoingMessage, settings: Settings) -> tuple[dict[str, Any], str]:
    """`messages.create` arguments, and the sender they are paced under."""
    providers = settings.providers
    params: dict[str, Any] = {"to": message.to, "body": message.text}
    if providers.twilio_messaging_service_sid:
        params["messaging_service_sid"] = sender = providers.twilio_messaging_service_sid
    else:
        params["from_"] = sender = message.sender
    if message.status_callback:
        params["status_callback"] = message.status_callback
    if providers.twilio_validity_seconds > 0:
        params["validity_period"] = providers.twilio_validity_seconds
    return params, sender


def classify(error: TwilioRestException | TwilioServiceException) -> ProviderError:
    """429/5xx (and 401: credentials an operator will fix) are retried; 21610 withdraws
    consent; invalid numbers are suppressed; anything else fails the message."""
    status = int(getattr(error, "status", 0) or 0)
    code = _int(getattr(error, "code", None))
    detail = getattr(error, "msg", "") or getattr(error, "detail", "") or getattr(
        error, "title", "")
    message = f"twilio {status} ({code}): {detail}"
    if status in (401, 429) or status >= 500:
        return ProviderError(message, retryable=True, code=str(code or status))
    return ProviderError(message, retryable=False, code=str(code or status),
                         consequence=ERROR_CONSEQUENCES.get(code or 0))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- webhooks -----------------------------------------------------------------------------


def verify_request(auth_token: str, urls: Sequence[str], params: Any, signature: str) -> None:
    """`X-Twilio-Signature` must match one of the URLs Twilio may have called."""
    validator = RequestValidator(auth_token)
    if not signature or not any(validator.validate(url, params, signature) for url in urls):
        raise SignatureError("X-Twilio-Signature does not match")


def parse_inbound(form: Mapping[str, str], now: datetime) -> ProviderEvent:
    """An inbound SMS → `reply.received` (the reply hooks classify its text)."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = (form.get("From") or "").strip()
    if not sid or not sender:
        raise ValueError("an inbound SMS needs MessageSid and From")
    opt_out_type = (form.get("OptOutType") or "").strip().upper() or None
    return ProviderEvent(
        type=EventType.REPLY_RECEIVED, source="twilio", occurred_at=now, source_event_id=sid,
        channel="sms", provider_message_id=None, address=sender, raw=dict(form),
        properties={"channel": "sms", "text": form.get("Body") or "",
                    "opt_out_type": opt_out_type})


def parse_status(form: Mapping[str, str], public_id: str | None,
                 now: datetime) -> ProviderEvent | None:
    """A status callback → sms.delivered / sms.failed; None for progress reports."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise ValueError("a status callback needs MessageSid and MessageStatus")
    if status in PROGRESS_STATUSES:
        return None
    error_code = _int(form.get("ErrorCode"))
    consequence = ERROR_CONSEQUENCES.get(error_code or 0) if status != "delivered" else None
    return ProviderEvent(
        type=STATUS_TYPES.get(status, EventType.UNKNOWN), source="twilio", occurred_at=now,
        source_event_id=f"{sid}:{status}", channel="sms", public_id=public_id or None,
        provider_message_id=sid, address=(form.get("To") or "").strip() or None,
        properties={"status": status, "error_code": error_code}, raw=dict(form),
        message_state=MESSAGE_STATES.get(status), consequence=consequence,
        detail=f"{status} {error_code}" if error_code else status)
