"""The operators' API (API key): the twins of `nurture journey pause|resume`, `retry`,
`enroll` and `unenroll`.

- `POST /journeys/{id}/pause`, `POST /journeys/{id}/resume`
- `POST /journeys/retry` with `{"journey": "…", "step": "…"}` (both optional)
- `POST /contacts/{who}/enroll` and `POST /contacts/{who}/unenroll` with
  `{"journey": "…", "reason": "…"}` (`who`: email, E.164 phone or contact id)

An unknown contact is 404; a journey that is not applied, a contact already (or not)
in it: 409. Nothing changes then.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from nurture.errors import ContactError, NurtureError
from nurture.services import journeys as service
from nurture.web.deps import ConnDep, KeyedRoute, NowDep, RuntimeDep
from nurture.web.fields import ContactRef, JourneyId, Text

router = APIRouter(route_class=KeyedRoute)  # the API key, checked before the body is read
#: a journey named in the path
JourneyPath = Annotated[Text, Path(min_length=1, max_length=64)]


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey: JourneyId | None = None
    step: JourneyId | None = None


class EnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey: JourneyId
    reason: Text = Field(default="", max_length=500)


def _refused(error: NurtureError) -> HTTPException:
    return HTTPException(404 if isinstance(error, ContactError) else 409, str(error))


@router.post("/journeys/{journey_id}/pause")
def pause(journey_id: JourneyPath, conn: ConnDep, rt: RuntimeDep, now: NowDep) -> dict[str, Any]:
    try:
        change = service.pause(conn, rt, journey_id, now)
    except NurtureError as e:
        raise _refused(e) from e
    return {"journey": journey_id, "paused": True, "change": change}


@router.post("/journeys/{journey_id}/resume")
def resume(journey_id: JourneyPath, conn: ConnDep, rt: RuntimeDep, now: NowDep) -> dict[str, Any]:
    try:
        change = service.resume(conn, rt, journey_id, now)
    except NurtureError as e:
        raise _refused(e) from e
    return {"journey": journey_id, "paused": False, "change": change}


@router.post("/journeys/retry")
def retry(body: RetryIn, conn: ConnDep, rt: RuntimeDep, now: NowDep) -> dict[str, Any]:
    if body.step is not None and body.journey is None:
        raise HTTPException(422, "step needs journey")
    count = service.retry(conn, rt, now, journey_id=body.journey, step_id=body.step)
    return {"resumed": count, "journey": body.journey, "step": body.step}


@router.post("/contacts/{who}/enroll", status_code=201)
def enroll(who: ContactRef, body: EnrollmentIn, conn: ConnDep, rt: RuntimeDep,
           now: NowDep) -> dict[str, Any]:
    try:
        return service.enroll(conn, rt, who, body.journey, body.reason or "enrolled by API",
                              now)
    except NurtureError as e:
        raise _refused(e) from e


@router.post("/contacts/{who}/unenroll")
def unenroll(who: ContactRef, body: EnrollmentIn, conn: ConnDep, rt: RuntimeDep,
             now: NowDep) -> dict[str, Any]:
    try:
        return service.unenroll(conn, rt, who, body.journey,
                                body.reason or "unenrolled by API", now)
    except NurtureError as e:
        raise _refused(e) from e
