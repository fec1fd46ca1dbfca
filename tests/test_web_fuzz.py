"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis), in
process, on SQLite and on PostgreSQL: whatever a client sends, never a 5xx.

Schemathesis generates requests that fit the schema and requests that break it (wrong
types, missing fields, odd strings), for every operation. The API key goes with every
request, so the fuzz reaches the handlers rather than stopping at 401; the webhooks'
secrets are set, so a bad signature is a 403, not a 503. The number of cases tried per
operation is printed at the end (`NURTURE_FUZZ_EXAMPLES` sets the examples per operation;
the run is derandomized: the same cases every time, unless `NURTURE_FUZZ_RANDOM=1`)."""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.providers.memory import MemoryProvider
from nurture.services import contacts
from nurture.web.app import create_app
from tests.conftest import write_project

API_KEY = "api-key-for-the-fuzz"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("NURTURE_FUZZ_EXAMPLES", "100"))
RANDOM = os.environ.get("NURTURE_FUZZ_RANDOM") == "1"

#: (database, operation) → cases sent, and those answered 2xx
TRIED: Counter[tuple[str, str]] = Counter()
TAKEN: Counter[tuple[str, str]] = Counter()
#: the database of the schema being fuzzed
BACKEND = [""]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[schemathesis.BaseSchema]:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(public_key).decode())
    monkeypatch.setenv("SENDGRID_INBOUND_SECRET", "inbound-secret-for-the-fuzz")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "twilio-token-for-the-fuzz")
    env = {"NURTURE_SECRET_KEY": "fuzz-secret-key", "NURTURE_API_KEY": API_KEY}
    if request.param == "postgresql":
        env["NURTURE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    config = write_project(tmp_path / "project", copy_journeys=True)
    runtime = build_runtime(load_settings(config, env=env),
                            providers={"email": MemoryProvider(), "sms": MemoryProvider()})
    with runtime.db.begin() as conn:  # someone for events and stage changes to find
        contacts.add_contact(conn, runtime.settings, NOW, email="camille@example.com",
                             attributes={"company_size": 50})
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(runtime, lambda: NOW))
    BACKEND[0] = request.param
    yield schema
    runtime.db.dispose()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not TRIED:
        return
    lines = [f"schemathesis: {sum(TRIED.values())} cases sent"]
    for backend in sorted({b for b, _ in TRIED}):
        ours = {op: n for (b, op), n in TRIED.items() if b == backend}
        lines.append(f"  {backend}: {sum(ours.values())} cases over {len(ours)} operations")
        lines.extend(f"    {n:5} {op} ({TAKEN[backend, op]} answered 2xx)"
                     for op, n in sorted(ours.items()))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown even when pytest captures output
        print("\n" + "\n".join(lines))


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_makes_a_server_error(case: schemathesis.Case) -> None:
    key = (BACKEND[0], case.operation.label)
    TRIED[key] += 1
    response = case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"},
                                      checks=[not_a_server_error])
    TAKEN[key] += response.status_code < 300
