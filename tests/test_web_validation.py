"""Every input is checked at the edge: what used to be a 500 (or stored as garbage) is a
422 naming the field, on SQLite and on PostgreSQL; a bad item never costs its batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.providers.memory import MemoryProvider
from nurture.services import contacts
from nurture.store import database as db
from nurture.web.app import create_app
from tests.conftest import write_project
from tests.fakes import count

API_KEY = "api-key-for-validation-tests"
KEY = {"X-API-Key": API_KEY}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL = "camille@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    env = {"NURTURE_SECRET_KEY": "validation-secret", "NURTURE_API_KEY": API_KEY}
    if request.param == "postgresql":
        env["NURTURE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    settings = load_settings(write_project(tmp_path / "project"), env=env)
    runtime = build_runtime(settings, providers={"email": MemoryProvider(),
                                                 "sms": MemoryProvider()})
    with runtime.db.begin() as conn:
        contacts.add_contact(conn, settings, NOW, email=EMAIL)
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def client(rt: Runtime) -> TestClient:
    return TestClient(create_app(rt, clock=lambda: NOW))


def post_json(client: TestClient, path: str, text: str) -> Any:
    """Raw JSON text: NaN, 1e999 and lone surrogates are what a JSON library will not send."""
    return client.post(path, content=text.encode(),
                       headers={**KEY, "Content-Type": "application/json"})


def raw(fields: str) -> str:
    """An event as JSON text, with `fields` (JSON text) after its type and email."""
    return '{"type": "page.viewed", "email": "' + EMAIL + '", ' + fields + "}"


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "page.viewed", "email": EMAIL, "properties": {"url": "/pricing"}, **fields}


#: each used to be a 500 (or, on SQLite, stored as given); the field at fault
BAD_EVENTS = [
    (json.dumps(event(contact_id=2**64, email=None)), "contact_id"),
    (json.dumps(event(contact_id=2**31, email=None)), "contact_id"),  # PostgreSQL's INTEGER
    (json.dumps(event(contact_id=0, email=None)), "contact_id"),
    (json.dumps(event(occurred_at="0001-01-01T00:00:00+14:00")), "occurred_at"),
    (json.dumps(event(occurred_at="9999-12-31T23:59:59-14:00")), "occurred_at"),
    (json.dumps(event(occurred_at="1901-01-01T00:00:00+00:00")), "occurred_at"),
    (json.dumps(event(type="x.nul\u0000")), "type"),
    (json.dumps(event(id="evt-\u0000")), "id"),
    (json.dumps(event(email="camille\u0000@example.com")), "email"),
    (raw('"id": "evt-\\ud800"'), "id"),
    (raw('"properties": {"seconds": NaN}'), "properties.seconds"),
    (raw('"properties": {"seconds": 1e999}'), "properties.seconds"),
    (raw('"properties": {"n": -Infinity}'), "properties.n"),
    (raw('"properties": {"a": ["ok", "\\udc80"]}'), "properties.a.1"),
    (json.dumps(event(properties={"url": "/x\u0000"})), "properties.url"),
    (json.dumps(event(properties={"k\u0000": 1})), "properties.k\u0000"),
    (json.dumps(event(properties={"big": 2**70})), "properties.big"),
    (json.dumps(event(properties={"d": [[[[[[[[[[1]]]]]]]]]]})),
     "properties.d.0.0.0.0.0.0.0.0"),
]


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS,
                         ids=[f"{i}-{field}" for i, (_, field) in enumerate(BAD_EVENTS)])
def test_a_bad_event_is_422_with_its_field(client: TestClient, rt: Runtime, body: str,
                                           field: str) -> None:
    response = post_json(client, "/events", body)
    assert response.status_code == 422, response.text
    error = response.json()["detail"]["errors"][0]
    assert error["index"] == 0 and error["fields"] == [field], error
    assert count(rt, db.event_t) == 0


def test_a_mixed_batch_keeps_its_valid_items(client: TestClient, rt: Runtime) -> None:
    good = [event(id="a"), event(id="b", contact_id=1, email=None), event(id="c")]
    text = json.dumps([good[0], event(contact_id=2**64, email=None), good[1],
                       event(occurred_at="0001-01-01T00:00:00+14:00"), good[2]])
    text = (text[:-1] + ", " + raw('"properties": {"s": NaN}') + ", "
            + raw('"id": "z"').replace("page.viewed", "x.\\u0000") + "]")
    response = post_json(client, "/events", text)
    assert response.status_code == 207, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == [0, 2, 4]
    assert body["accepted"] == 3
    assert [(e["index"], e["fields"]) for e in body["errors"]] == [
        (1, ["contact_id"]), (3, ["occurred_at"]), (5, ["properties.s"]), (6, ["type"])]
    with rt.db.begin() as conn:
        stored = conn.execute(select(db.event_t.c.source_event_id)).scalars().all()
    assert sorted(stored) == ["a", "b", "c"]


def test_the_future_is_refused_but_a_little_skew_is_not(client: TestClient) -> None:
    skewed = post_json(client, "/events", json.dumps(event(
        occurred_at=(NOW + timedelta(minutes=2)).isoformat())))
    assert skewed.status_code == 200
    future = post_json(client, "/events", json.dumps(event(
        occurred_at=(NOW + timedelta(hours=1)).isoformat())))
    assert future.status_code == 422
    assert future.json()["detail"]["errors"][0]["fields"] == ["occurred_at"]


# --- POST /consent ----------------------------------------------------------------------

FORM = {"email": "james@example.com", "channels": ["email"], "purposes": ["newsletter"],
        "wording": "Send me the newsletter.", "attributes": {"company_size": 50},
        "country": "FR"}

#: (what is changed, the path FastAPI's 422 names)
BAD_FORMS = [
    ({"purposes": ["*"]}, ["body", "purposes", 0]),
    ({"purposes": ["newsletter", "spam"]}, ["body", "purposes", 1]),
    ({"country": "ZZ"}, ["body", "country"]),
    ({"attributes": {"company_size": "lots"}}, ["body", "attributes", "company_size"]),
    ({"attributes": {"company_size": True}}, ["body", "attributes", "company_size"]),
    ({"attributes": {"company_size": 2**70}}, ["body", "attributes", "company_size"]),
    ({"attributes": {"first_name": 3}}, ["body", "attributes", "first_name"]),
    ({"attributes": {"shoe_size": 42}}, ["body", "attributes", "shoe_size"]),
    ({"locale": "xx"}, ["body", "locale"]),
    ({"timezone": "Mars/Olympus_Mons"}, ["body", "timezone"]),
    ({"ip": "not-an-address"}, ["body", "ip"]),
    ({"wording": "Yes\u0000"}, ["body", "wording"]),
    ({"source": "site\u0000"}, ["body", "source"]),
    ({"email": "james\u0000@example.com"}, ["body", "email"]),
    ({"attributes": {"first_name": "Ja\u0000mes"}}, ["body", "attributes", "first_name"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_FORMS,
                         ids=[f"{i}-{loc[-1]}" for i, (_, loc) in enumerate(BAD_FORMS)])
def test_a_bad_consent_form_is_422_with_its_field(client: TestClient, rt: Runtime,
                                                  change: dict[str, Any],
                                                  loc: list[Any]) -> None:
    response = client.post("/consent", headers=KEY, json={**FORM, **change})
    assert response.status_code == 422, response.text
    assert loc in [item["loc"] for item in response.json()["detail"]], response.json()
    assert count(rt, db.consent_record) == 0
    assert count(rt, db.contact) == 1


def test_consent_numbers_and_surrogates_json_cannot_carry(client: TestClient,
                                                          rt: Runtime) -> None:
    base = json.dumps(FORM)[:-1]
    for extra, loc in [(', "attributes": {"company_size": NaN}', "company_size"),
                       (', "attributes": {"first_name": "\\ud800"}', "first_name"),
                       (', "wording": "\\udfff"', "wording")]:
        response = post_json(client, "/consent", base + extra + "}")
        assert response.status_code == 422, response.text
        assert loc in json.dumps(response.json()["detail"]), response.text
    assert count(rt, db.consent_record) == 0


def test_a_good_form_keeps_its_typed_attributes(client: TestClient, rt: Runtime) -> None:
    response = client.post("/consent", headers=KEY, json={
        **FORM, "country": "fr", "timezone": "America/New_York", "ip": "2001:db8::1",
        "attributes": {"company_size": 50, "first_name": "James", "role": None}})
    assert response.status_code == 201, response.text
    with rt.db.begin() as conn:
        james = contacts.find_contact(conn, "james@example.com")
    assert james.country == "FR" and james.timezone == "America/New_York"
    assert james.attributes == {"company_size": 50, "first_name": "James", "role": None}


# --- POST /contacts/{email}/stage -------------------------------------------------------


@pytest.mark.parametrize("who", ["99999999999999999999999", "2147483648", "%00",
                                 "camille%00@example.com",
                                 "\u00b2"])
def test_a_stage_change_for_an_impossible_contact_is_422(client: TestClient, who: str) -> None:
    response = client.post(f"/contacts/{who}/stage", headers=KEY, json={"stage": "customer"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "email"]


def test_a_stage_reason_must_be_storable(client: TestClient) -> None:
    response = client.post(f"/contacts/{EMAIL}/stage", headers=KEY,
                           json={"stage": "customer", "reason": "signed\u0000"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "reason"]
    assert client.post("/contacts/1/stage", headers=KEY,
                       json={"stage": "customer"}).status_code == 200


# --- the preference form ----------------------------------------------------------------


def test_unstorable_form_fields_are_dropped_not_stored(client: TestClient, rt: Runtime) -> None:
    response = client.post("/consent", headers=KEY, json={**FORM, "double_opt_in": True})
    assert response.status_code == 201
    with rt.db.begin() as conn:
        public_id = conn.execute(select(db.message.c.public_id)).scalar_one()
    token = rt.links.unsubscribe_token(public_id)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    saved = client.post(f"/u/{token}", headers=form, content=(
        f"csrf={rt.links.form_token(token)}&consent=email%3Anewsletter&consent=%00"
        "&action=save%00").encode())
    assert saved.status_code == 200, saved.text
    one_click = client.post(f"/u/{token}", headers=form,
                            content=b"List-Unsubscribe=One-Click&note=\x00%00")
    assert one_click.status_code == 200, one_click.text
    with rt.db.begin() as conn:
        evidence = [r["evidence"] for r in conn.execute(select(db.consent_record)).mappings()]
    assert "\x00" not in json.dumps(evidence).replace("\\u0000", "\x00")


def test_the_422_never_echoes_what_json_cannot_carry(client: TestClient) -> None:
    """FastAPI's own 422 echoes the input: NaN there made the error itself a 500."""
    response = post_json(client, "/consent", '{"wording": NaN, "channels": ["email"], '
                                             '"purposes": ["\\ud800"], "extra\\udc00": 1}')
    assert response.status_code == 422
    assert all("input" not in item for item in response.json()["detail"])


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_report_since_beyond_time_is_400(client: TestClient, since: str) -> None:
    response = client.get("/admin/report", params={"since": since}, headers=KEY)
    assert response.status_code == 400, response.text


def test_a_report_journey_must_be_storable(client: TestClient) -> None:
    response = client.get("/admin/report", params={"journey": "\x00"}, headers=KEY)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "journey"]
