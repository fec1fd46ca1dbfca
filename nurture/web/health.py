"""`GET /healthz`: the process answers and the database is reachable."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from nurture.web.deps import ConnDep

router = APIRouter()


@router.get("/healthz")
def healthz(conn: ConnDep) -> dict[str, str]:
    conn.execute(text("SELECT 1"))
    return {"status": "ok"}
