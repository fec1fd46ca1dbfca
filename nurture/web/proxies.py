"""Forwarded headers count only when a configured trusted proxy sent them.

`X-Forwarded-For`, `-Proto`, `-Host` (and their kin) are plain request headers: anyone can
send them. From a peer listed in `trusted_proxies` (config.toml, IP addresses or networks,
empty by default) they are applied: the client address becomes the visitor's (recorded as
consent evidence) and the scheme the public one; the headers stay for the Twilio webhooks,
which rebuild the URL Twilio called from them. From any other peer they are removed before
the app sees them, so everything else uses `public_base_url`.

Each proxy in a chain sets or appends its own value: the last one was written by the peer
we trust, the first may have come from the client. So the scheme and host are the last
values, and the client is the last address not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: headers that describe the request as a proxy received it
FORWARDED_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-forwarded-proto",
                               b"x-forwarded-host", b"x-forwarded-port",
                               b"x-forwarded-prefix", b"x-real-ip"})


def trusted(address: str | None, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


def last_value(value: str) -> str:
    return value.split(",")[-1].strip()


class TrustedProxies:
    def __init__(self, app: ASGIApp, networks: Sequence[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if trusted(peer[0] if peer else None, self.networks):
                scope = self._applied(scope)
            else:
                scope = {**scope, "headers": [(name, value) for name, value in scope["headers"]
                                              if name.lower() not in FORWARDED_HEADERS]}
        await self.app(scope, receive, send)

    def _applied(self, scope: Scope) -> Scope:
        headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
        scope = dict(scope)
        chain = [hop.strip() for hop in headers.get(b"x-forwarded-for", "").split(",")]
        for hop in reversed([hop for hop in chain if hop]):
            if not trusted(hop, self.networks):
                scope["client"] = (hop, 0)
                break
        proto = last_value(headers.get(b"x-forwarded-proto", "")).lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws",
                                                                     "https": "wss"}[proto]
        return scope
