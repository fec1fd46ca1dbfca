"""Dependencies shared by the routers: the runtime, the clock, a transaction, the API key."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import Connection

from nurture.engine.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_now(request: Request) -> datetime:
    """The web app is an entry point: it reads the clock it was given, once per request."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
NowDep = Annotated[datetime, Depends(get_now)]


def get_conn(runtime: RuntimeDep) -> Iterator[Connection]:
    """One transaction per request: committed when the handler returns normally, before
    the response is sent (scope="function"), so a client never sees success for a change
    that then fails to commit."""
    with runtime.db.begin() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn, scope="function")]


def require_api_key(request: Request, runtime: RuntimeDep) -> None:
    """`Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time."""
    expected = runtime.settings.api_key
    if not expected:
        raise HTTPException(503, "NURTURE_API_KEY is not set on this server")
    given = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


ApiKey = Depends(require_api_key)


class KeyedRoute(APIRoute):
    """A route for API-key holders only (`APIRouter(route_class=KeyedRoute)`).

    FastAPI reads and parses a route's body before it solves the route's dependencies, so
    a key checked as a dependency comes after a stranger's body was read. The key is a
    header: this route checks it first, and without it the body is never read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            require_api_key(request, get_runtime(request))
            return await handler(request)

        return keyed
