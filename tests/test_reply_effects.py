"""Replies through the engine: intent kept, consent recorded, journeys paused, points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from typer.testing import CliRunner

from nurture.cli.main import app
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.store import database as db
from nurture.store import queries as store
from tests.maturity_support import FITTING, MONDAY, add, build, event, journeys_of, state

PHONE = "+33612345678"


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return build(tmp_path / "project", journeys={"quiet": """
        id: quiet
        name: Replies do not stop this one
        purpose: marketing
        stop_on_reply: false
        entry: { when: "attributes.quiet == true" }
        steps:
          - { id: hello, type: send, channel: email, template: cold/welcome-guide }
          - { id: wait, type: wait, duration: 30d }
    """})


def consent(rt: Runtime, cid: int) -> dict[tuple[str, str], str]:
    with rt.db.begin() as conn:
        return {(c, p): s.action for (_, c, p), s in store.consent_statuses(conn, [cid]).items()}


def reply(rt: Runtime, cid: int, text: str, at: datetime, channel: str = "sms") -> int | None:
    return event(rt, cid, "reply.received", at, channel=channel, text=text)


def started(rt: Runtime, **attributes: object) -> int:
    """A lead in the cold series, its welcome email sent."""
    cid = add(rt, "camille@example.com", {**FITTING, **attributes}, phone=PHONE)
    tick(rt, MONDAY)
    return cid


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop. ", "ARRÊT", "arret", "Désabonner"])
def test_stop_alone_withdraws_the_channel_for_every_purpose(rt: Runtime, text: str) -> None:
    cid = started(rt)
    event_id = reply(rt, cid, text, MONDAY + timedelta(hours=1))
    assert consent(rt, cid)[("sms", "*")] == "withdrawn"
    assert consent(rt, cid).get(("email", "*")) is None  # that channel only
    data = state(rt, cid)
    record = data["consent"][-1]
    assert (record["source"], record["purpose"]) == ("reply", "*")
    assert record["evidence"]["text"] == text and record["evidence"]["event_id"] == event_id
    assert data["events"][0]["properties"]["intent"] == "opt_out"
    assert journeys_of(data) == {"cold-education": "active"}  # not a conversation: no pause
    assert data["contact"]["score"] == 0


@pytest.mark.parametrize("text", ["I can't stop reading your guides",
                                  "Je ne peux pas m'arrêter de lire vos guides"])
def test_stop_inside_a_sentence_is_a_person_talking(rt: Runtime, text: str) -> None:
    cid = started(rt)
    reply(rt, cid, text, MONDAY + timedelta(hours=1))
    data = state(rt, cid)
    assert ("sms", "*") not in consent(rt, cid)
    assert data["events"][0]["properties"]["intent"] == "neutral"
    assert journeys_of(data) == {"cold-education": "paused"}
    paused = [c for c in data["changes"] if c["field"].startswith("journey.")]
    assert [(c["field"], c["old"], c["new"], c["rule"]) for c in paused] == [
        ("journey.cold-education", "active", "paused", "reply:neutral")]
    with rt.db.begin() as conn:
        row = conn.execute(select(db.enrollment)).mappings().one()
    assert row["next_run_at"] is None


def test_start_from_anywhere_but_the_signed_inbound_and_help_change_nothing(
        rt: Runtime) -> None:
    # a START counts only through Twilio's signed webhook (tests/test_consent_semantics.py)
    cid = started(rt)
    reply(rt, cid, "STOP", MONDAY + timedelta(hours=1))
    reply(rt, cid, "HELP", MONDAY + timedelta(hours=2))
    assert consent(rt, cid)[("sms", "*")] == "withdrawn"
    reply(rt, cid, "start", MONDAY + timedelta(hours=3))
    assert consent(rt, cid)[("sms", "*")] == "withdrawn"
    assert state(rt, cid)["events"][0]["properties"]["intent"] == "opt_in"
    assert journeys_of(state(rt, cid)) == {"cold-education": "active"}


@pytest.mark.parametrize(("text", "intent", "points"), [
    ("Oui, intéressée !", "positive", 15),
    ("OUI INTERESSE", "positive", 15),
    ("Sounds great, how much is it?", "positive", 15),
    ("Pas intéressé, merci", "negative", -20),
    ("Not interested, thanks", "negative", -20),
    ("Merci pour le guide", "neutral", 2),
])
def test_replies_score_by_intent(rt: Runtime, text: str, intent: str, points: float) -> None:
    cid = started(rt)
    event_id = reply(rt, cid, text, MONDAY + timedelta(hours=1), channel="email")
    data = state(rt, cid)
    scored = [c for c in data["changes"] if c["field"] == "score"]
    assert [(c["delta"], c["rule"], c["event_id"]) for c in scored] == [
        (points, f"reply:{intent}", event_id)]
    assert data["contact"]["stage"] == "lead"
    assert journeys_of(data) == {"cold-education": "paused"}


def test_a_meeting_request_qualifies_at_once(rt: Runtime) -> None:
    cid = started(rt, role="Intern", company_size=3)  # not fitting, no points yet
    reply(rt, cid, "Rappelez-moi mardi svp", MONDAY + timedelta(hours=1))
    data = state(rt, cid)
    assert (data["contact"]["stage"], data["contact"]["score"]) == ("prospect", 40)
    assert data["changes"][-1]["reason"] == (
        "reply meeting_request is a strong signal (fit not required)")
    assert journeys_of(data)["cold-education"] == "exited"
    assert "prospect-sales" in journeys_of(data)


def test_journeys_may_keep_going_or_wait_for_the_reply(rt: Runtime) -> None:
    quiet = add(rt, "quiet@example.com", {"quiet": True}, purposes=("marketing",))
    tick(rt, MONDAY)
    reply(rt, quiet, "Thanks!", MONDAY + timedelta(hours=1), channel="email")
    assert journeys_of(state(rt, quiet))["quiet"] == "active"  # stop_on_reply: false

    cid = add(rt, "prospect@example.com", FITTING, phone="+33611111111")
    event(rt, cid, "demo.requested", MONDAY)
    for day in range(12):  # the prospect series goes on to wait for a reply
        tick(rt, MONDAY + timedelta(days=day, hours=1))
    with rt.db.begin() as conn:
        rows = conn.execute(select(db.enrollment).where(db.enrollment.c.contact_id == cid,
                                                        db.enrollment.c.journey_id ==
                                                        "prospect-sales")).mappings().all()
    assert rows[0]["state"] == "waiting" and rows[0]["wait_event"] == "reply.received"
    reply(rt, cid, "Yes, send me the trial", MONDAY + timedelta(days=12), channel="email")
    assert journeys_of(state(rt, cid))["prospect-sales"] == "active"  # resumed, not paused


def test_the_cli_path_for_replies(rt: Runtime) -> None:
    cid = started(rt)
    config = str(Path(rt.settings.root) / "config.toml")
    runner = CliRunner()
    with freeze_time(MONDAY + timedelta(hours=2)):
        result = runner.invoke(app, ["--config", config, "event", "camille@example.com",
                                     "reply.received", "--prop", "channel=sms",
                                     "--prop", "text=STOP", "--id", "sms-1"])
        assert result.exit_code == 0, result.output
        again = runner.invoke(app, ["--config", config, "event", "camille@example.com",
                                    "reply.received", "--prop", "channel=sms",
                                    "--prop", "text=STOP", "--id", "sms-1"])
    assert "no change" in again.output
    assert consent(rt, cid)[("sms", "*")] == "withdrawn"
    actions = [r["action"] for r in state(rt, cid)["consent"]]
    assert actions.count("withdrawn") == 1  # the replay recorded nothing


def test_the_cli_path_for_sales(rt: Runtime) -> None:
    cid = started(rt)
    event(rt, cid, "demo.requested", MONDAY + timedelta(hours=1))
    config = str(Path(rt.settings.root) / "config.toml")
    runner = CliRunner()
    with freeze_time(MONDAY + timedelta(days=2)):
        refused = runner.invoke(app, ["--config", config, "stage", "camille@example.com",
                                      "recycled"])
        recycled = runner.invoke(app, ["--config", config, "stage", "camille@example.com",
                                       "recycled", "--reason", "no budget before Q3"])
        same = runner.invoke(app, ["--config", config, "stage", str(cid), "recycled", "--reason",
                                   "again", "--json"])
    assert refused.exit_code != 0
    assert recycled.exit_code == 0, recycled.output
    assert "prospect → recycled (no budget before Q3)" in recycled.output
    assert '"change": "unchanged"' in same.output
    last = state(rt, cid)["changes"][-1]
    assert (last["field"], last["new"], last["rule"], last["reason"]) == (
        "stage", "recycled", "sales", "no budget before Q3")
    assert last["at"] == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
