"""The web site's and the CRM's API (API key): tracking events in, stage changes from sales.

`POST /events` takes one event object or a list of up to 1000:

    {"type": "page.viewed", "email": "camille@example.com",
     "occurred_at": "2026-03-02T10:15:00+01:00", "id": "evt-81f2",
     "properties": {"url": "/pricing", "seconds": 42}}

`email` or `contact_id` names the contact, which must exist (tracking never creates
contacts); `occurred_at` (ISO 8601 with a time zone) defaults to now; `id`, the source's
event id, makes a replay change nothing. Each item is checked on its own: a bad item gets
an error with its index, and the valid items of the same batch are kept. The answer is
200 when every item was taken, 207 when some were not (a single bad event: 422, or 404
when its contact is unknown).

Every field is checked at the edge (`fields`): `contact_id` a row id (1 to 2³¹-1), `occurred_at`
from 1970 to a few minutes ahead, text without NUL bytes or lone surrogates, properties
of finite numbers nested 8 levels at most. Each error names the fields at fault.

`POST /contacts/{email}/stage` with `{"stage": "sales_accepted", "reason": "…"}` is the
API twin of `nurture stage`.

Both need the API key, checked before the body is read (`KeyedRoute`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nurture.errors import ContactError
from nurture.intake import ingest as intake
from nurture.intake import maturity
from nurture.intake.events import IncomingEvent
from nurture.services import contacts
from nurture.vocab import KNOWN_EVENT_TYPES, is_valid_event_type
from nurture.web.deps import ConnDep, KeyedRoute, NowDep, RuntimeDep
from nurture.web.fields import (
    ContactRef,
    EventTime,
    Problem,
    RowId,
    Text,
    describe,
    json_problems,
)

router = APIRouter(route_class=KeyedRoute)

MAX_BATCH = 1000
#: clocks differ a little; an event further in the future is refused
MAX_CLOCK_SKEW = timedelta(minutes=5)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"type": "page.viewed", "email": "camille@example.com", "id": "evt-81f2",
         "properties": {"url": "/pricing", "seconds": 42}},
        {"type": "demo.requested", "contact_id": 1, "occurred_at": "2026-03-02T08:15:00+01:00"},
    ]})

    #: a known type (nurture/vocab.py) or a custom one, `x.…`
    type: Text = Field(min_length=1, max_length=100, json_schema_extra={"anyOf": [
        {"enum": [*sorted(KNOWN_EVENT_TYPES)]}, {"pattern": r"^x\..+"}]})
    email: Text | None = Field(default=None, max_length=320)
    contact_id: RowId | None = None
    #: ISO 8601 with a time zone; default: now
    occurred_at: EventTime | None = None
    #: the source's event id: a replay of the same id changes nothing
    id: Text | None = Field(default=None, min_length=1, max_length=200)
    properties: dict[str, Any] = {}


#: the request body as the OpenAPI schema shows it (each item is checked on its own)
BODY_SCHEMA = {"anyOf": [EventIn.model_json_schema(),
                         {"type": "array", "items": EventIn.model_json_schema(),
                          "maxItems": MAX_BATCH}]}


@dataclass(frozen=True)
class Refused:
    """Why an item was not taken, and the fields at fault (dotted paths)."""

    error: str
    fields: list[str]

    @classmethod
    def of(cls, problems: list[Problem]) -> Refused:
        return cls(describe(problems), [".".join(str(p) for p in loc) for loc, _ in problems])


Parsed = tuple[str | None, int | None, IncomingEvent]


def _parse(item: Any, now: datetime) -> Parsed | Refused:
    """A valid item as (email, contact id, event), or what is wrong with it."""
    try:
        given = EventIn.model_validate(item)
    except ValidationError as e:
        return Refused.of([(tuple(err["loc"]), err["msg"]) for err in e.errors()])
    if not is_valid_event_type(given.type):
        return Refused.of([(("type",), f"unknown event type {given.type!r} "
                                       "(custom types start with 'x.')")])
    if given.email is None and given.contact_id is None:
        return Refused("email or contact_id is required", ["email", "contact_id"])
    at = given.occurred_at or now
    if at > now + MAX_CLOCK_SKEW:
        return Refused.of([(("occurred_at",), "is in the future")])
    problems = list(json_problems(given.properties, ("properties",)))
    if problems:
        return Refused.of(problems)
    event = IncomingEvent(type=given.type, source="api", occurred_at=at,
                          source_event_id=given.id, properties=given.properties,
                          raw=item if isinstance(item, dict) else {})
    return (given.email.strip() if given.email else None), given.contact_id, event


@router.post("/events", openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": BODY_SCHEMA}}}})
def post_events(payload: Annotated[Any, Body()], rt: RuntimeDep, now: NowDep, conn: ConnDep,
                response: Response) -> dict[str, Any]:
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list):
        raise HTTPException(422, "expected an event object or a list of events")
    if len(items) > MAX_BATCH:
        raise HTTPException(413, f"{len(items)} events in one request (at most {MAX_BATCH})")
    parsed = [_parse(item, now) for item in items]
    valid = [(i, p) for i, p in enumerate(parsed) if not isinstance(p, Refused)]
    outcome = intake.ingest_for(conn, rt, [p for _, p in valid], now)
    refused = [(i, p) for i, p in enumerate(parsed) if isinstance(p, Refused)]
    results: list[dict[str, Any]] = []
    for (index, (email, _, _)), result in zip(valid, outcome, strict=True):
        if isinstance(result, str):  # an unknown contact, or email and id that disagree
            refused.append((index, Refused(result, ["email"] if email else ["contact_id"])))
        else:
            results.append({"index": index, "event_id": result,
                            "status": "recorded" if result is not None else "duplicate"})
    refused.sort(key=lambda pair: pair[0])
    body = {"accepted": sum(r["event_id"] is not None for r in results),
            "duplicates": sum(r["event_id"] is None for r in results),
            "results": results,
            "errors": [{"index": i, "error": r.error, "fields": r.fields} for i, r in refused]}
    if single and refused:
        status = 404 if refused[0][1].error.startswith("no contact") else 422
        raise HTTPException(status, body)
    response.status_code = 207 if refused else 200
    return body


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"stage": "sales_accepted", "reason": "call on Tuesday"}]})

    stage: Text = Field(max_length=40)
    reason: Text = Field(default="", max_length=1000)


@router.post("/contacts/{email}/stage")
def post_stage(email: ContactRef, given: StageIn, rt: RuntimeDep, now: NowDep,
               conn: ConnDep) -> dict[str, Any]:
    """Sales accept a prospect, mark a customer, or recycle a lead (the reason is kept)."""
    try:
        contact = contacts.find_contact(conn, email)
    except ContactError as e:
        raise HTTPException(404, str(e)) from e
    try:
        change = maturity.set_stage(conn, rt, contact.id, given.stage, given.reason, now)
    except ContactError as e:
        raise HTTPException(422, str(e)) from e
    return {"contact_id": contact.id, "email": contact.email,
            "stage": change.new if change else contact.stage,
            "previous": change.old if change else contact.stage,
            "changed": change is not None, "reason": given.reason}
