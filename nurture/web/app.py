"""The FastAPI app factory. Routers hold no SQL: they call the same services as the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from nurture.engine.runtime import Runtime
from nurture.web import consent, events, health, unsubscribe, webhooks_sendgrid, webhooks_twilio


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    app = FastAPI(title="nurture", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    app.state.clock = clock
    app.include_router(health.router)
    # routers:
    app.include_router(events.router)
    app.include_router(unsubscribe.router)
    app.include_router(consent.router)
    app.include_router(webhooks_sendgrid.router)
    app.include_router(webhooks_twilio.router)
    return app
