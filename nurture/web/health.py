"""`GET /healthz`: the process answers, the database is reachable, and how far behind the
due work is (lag) with each daemon's last tick. 503 when the database does not answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from nurture.services.health import health
from nurture.web.deps import NowDep, RuntimeDep

router = APIRouter()


@router.get("/healthz")
def healthz(rt: RuntimeDep, now: NowDep) -> Any:
    healthy, report = health(rt, now)
    return report if healthy else JSONResponse(report, status_code=503)
