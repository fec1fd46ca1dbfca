"""Request bodies are capped before they are read, chunked ones included.

Starlette reads whatever a client sends. This ASGI layer counts the bytes the app takes
from `receive()`: past the route's limit the request gets 413 and nothing more is read.
A declared `Content-Length` over the limit is answered at once, before the app runs.
When the app answers without reading the whole body (a wrong API key, a bad link), the
response says `Connection: close`, so the server drops the rest instead of draining it.

The limits (`LIMITS`, else `DEFAULT_LIMIT`) follow what each route legitimately
receives; the README lists them.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB

#: the most a request body may hold, by exact path, or by prefix when it ends with "/"
LIMITS: dict[str, int] = {
    #: up to 1000 events of a few hundred bytes each
    "/events": 1 * MIB,
    #: SendGrid posts its event batches at 768 KB at most
    "/webhooks/sendgrid/events": 2 * MIB,
    #: Inbound Parse takes messages up to 30 MB (attachments included), plus form framing
    "/webhooks/sendgrid/inbound/": 36 * MIB,
}
#: everything else: sign-up forms (`/consent`), one-click and preference forms (`/u/…`),
#: stage changes, Twilio's webhooks (an SMS is 1,600 characters at most)
DEFAULT_LIMIT = 64 * KIB


def limit_for(path: str) -> int:
    for key, limit in LIMITS.items():
        if path == key or (key.endswith("/") and path.startswith(key)):
            return limit
    return DEFAULT_LIMIT


class BodyTooLarge(Exception):
    """Raised into the app by `receive()` once the body passed its route's limit."""


def _too_large(limit: int) -> list[Message]:
    body = json.dumps({"detail": f"request body too large (at most {limit} bytes here)"}).encode()
    return [{"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]},
            {"type": "http.response.body", "body": body}]


class BodyLimit:
    """The ASGI layer: one `_Request` per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            for message in _too_large(limit):
                await send(message)
            return
        has_body = "transfer-encoding" in headers or (declared or "0") != "0"
        await _Request(self.app, limit, has_body)(scope, receive, send)


class _Request:
    def __init__(self, app: ASGIApp, limit: int, has_body: bool) -> None:
        self.app, self.limit = app, limit
        self.received = 0
        self.body_done = not has_body
        self.cut = False
        self.started = False
        self.refused = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                self.body_done = not message.get("more_body", False)
                if self.received > self.limit:
                    self.cut = True
                    raise BodyTooLarge(f"more than {self.limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            if self.cut:  # the app answers the body it could not read: the client gets 413
                if message["type"] == "http.response.start" and not self.started:
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                self.started = True
                if not self.body_done:  # answered without reading it all: stop reading
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not self.cut or (self.started and not self.refused):
                raise  # not ours, or a response was under way: the server aborts it
            if not self.refused:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        self.started = self.refused = True
        for message in _too_large(self.limit):
            await send(message)
