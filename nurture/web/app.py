"""The FastAPI app factory. Routers hold no SQL: they call the same services as the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from nurture.engine.runtime import Runtime
from nurture.web import consent, events, health, unsubscribe, webhooks_sendgrid, webhooks_twilio
from nurture.web.admin import router as admin_router
from nurture.web.fields import printable
from nurture.web.journeys import router as journeys_router
from nurture.web.limits import BodyLimit
from nurture.web.proxies import TrustedProxies


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    app = FastAPI(title="nurture", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    app.state.clock = clock
    app.add_exception_handler(RequestValidationError, validation_failed)  # type: ignore[arg-type]
    app.add_middleware(TrustedProxies, networks=runtime.settings.trusted_proxies)
    app.add_middleware(BodyLimit)  # outermost: before anything reads
    app.include_router(health.router)
    # routers:
    app.include_router(events.router)
    app.include_router(unsubscribe.router)
    app.include_router(consent.api)
    app.include_router(consent.router)
    app.include_router(webhooks_sendgrid.router)
    app.include_router(webhooks_twilio.router)
    app.include_router(admin_router)
    app.include_router(journeys_router)
    return app


async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with each problem's path and message. FastAPI's own answer echoes the input,
    which may be what JSON cannot carry (NaN, a lone surrogate) or personal data."""
    detail = [{"type": item.get("type", "value_error"),
               "loc": [printable(part) if isinstance(part, str) else part
                       for part in item.get("loc", ())],
               "msg": printable(str(item.get("msg", "")))} for item in error.errors()]
    return JSONResponse({"detail": detail}, status_code=422)
