"""`GET /admin/report` (API key): the page `nurture report --html` writes, read-only.

`?since=YYYY-MM-DD` and `?journey=ID` narrow it as the CLI options do. It reads through
an autocommit connection: it takes no write lock, so the daemon is never held up by
someone looking at the report.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse

from nurture.errors import NurtureError
from nurture.services import report_page
from nurture.services.report import Scope, build_report, parse_since
from nurture.web.deps import ApiKey, NowDep, RuntimeDep
from nurture.web.fields import Text

router = APIRouter(prefix="/admin", dependencies=[ApiKey])

#: the page has inline styles and SVG only: nothing else may load or run
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"),
}


@router.get("/report", response_class=HTMLResponse)
def report(
    runtime: RuntimeDep, now: NowDep,
    since: Annotated[Text | None, Query(max_length=40, description="YYYY-MM-DD or ISO time")
                     ] = None,
    journey: Annotated[Text | None, Query(max_length=64, description="a journey id")] = None,
) -> HTMLResponse:
    try:
        scope = Scope(since=parse_since(since) if since else None, journey=journey)
        with runtime.db.reader() as conn:
            data = build_report(conn, runtime.journeys, now, scope)
    except NurtureError as e:
        raise HTTPException(400, str(e)) from e
    except OverflowError as e:  # a time beyond datetime's range once in UTC (year 0 or 10000)
        raise HTTPException(400, f"since: {since!r} is out of range") from e
    return HTMLResponse(report_page.render(data), headers=HEADERS)
