"""`nurture report`: every figure equals a direct count over the rows the engine wrote.

The story (tests/report_support.py) is made by the real engine: contacts and consent,
ticks with the outbox provider, provider feedback through the webhook path, a reply, a
goal, qualifications and a customer. The expected figures are counted here row by row
in Python from the raw tables (the report counts in SQL), and the story's own facts are
spelled out where they say what a figure means.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nurture.errors import NurtureError
from nurture.intake import maturity
from nurture.services import report_page
from nurture.services.report import MESSAGE_FIGURES, Scope, build_report
from nurture.store import reports
from nurture.web.app import create_app
from tests.cli_support import run as run_cli
from tests.consent_support import API_KEY, MONDAY
from tests.report_support import Story, make_story, table

GONE_OUT = {"sent", "delivered", "bounced"}
CARRIER = {"opt_out", "opt_in", "help"}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    made = make_story(tmp_path_factory.mktemp("report") / "project")
    yield made
    made.rt.db.dispose()


def report(story: Story, **scope: Any) -> dict[str, Any]:
    with story.rt.db.reader() as conn:
        return build_report(conn, story.rt.journeys, MONDAY, Scope(**scope))


# ---- the direct counts ----------------------------------------------------------------


def outcomes(message: dict[str, Any], events: list[dict[str, Any]]) -> set[str]:
    """What happened to one message, from its row and its events."""
    types = {e["type"] for e in events}
    intents = {e["properties"].get("intent") for e in events if e["type"] == "reply.received"}
    found = set()
    if message["sent_at"] is not None or message["state"] in GONE_OUT:
        found.add("sent")
    if types & {"email.delivered", "sms.delivered"} or message["state"] == "delivered":
        found.add("delivered")
    if "email.bounced" in types or message["state"] == "bounced":
        found.add("bounced")
    found |= {name for name, kind in (("opened", "email.opened"), ("clicked", "email.clicked"))
              if kind in types}
    if intents - CARRIER:
        found.add("replied")
    if "email.unsubscribed" in types or "opt_out" in intents:
        found.add("unsubscribed")
    if message["state"] in ("failed", "skipped"):
        found.add(message["state"])
    return found


def direct(story: Story, keys: tuple[str, ...], since: datetime | None = None,
           journey: str | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The message figures per `keys`, counted one message at a time."""
    by_message = defaultdict(list)
    for event in table(story.rt, "event_t"):
        if event["message_id"] is not None:
            by_message[event["message_id"]].append(event)
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for m in table(story.rt, "message"):
        if (since and m["created_at"] < since) or (journey and m["journey_id"] != journey):
            continue
        figures = found.setdefault(tuple(m[k] for k in keys), {
            **dict.fromkeys(MESSAGE_FIGURES, 0), "contacts": set(), "enrollments": set(),
            "skipped_by_reason": Counter()})
        figures["messages"] += 1
        for name in outcomes(m, by_message[m["id"]]):
            figures[name] += 1
        figures["contacts"].add(m["contact_id"])
        figures["enrollments"].add(m["enrollment_id"])
        if m["state"] == "skipped":
            figures["skipped_by_reason"][m["skip_reason"]] += 1
    return found


def step_rows(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(j["id"], s["step"]): s for j in data["journeys"] for s in j["steps"]}


def monday(at: datetime) -> str:
    return (at.date() - timedelta(days=at.weekday())).isoformat()


# ---- per journey and step -------------------------------------------------------------


def test_step_figures_equal_the_direct_counts(story):
    data = report(story)
    steps = step_rows(data)
    expected = direct(story, ("journey_id", "step_id"))
    assert {k for k, s in steps.items() if s["messages"]} == set(expected)
    for key, want in expected.items():
        got = steps[key]
        assert {n: got[n] for n in MESSAGE_FIGURES} == {n: want[n] for n in MESSAGE_FIGURES}, key
        assert got["entered"] == len(want["enrollments"])
        assert got["skipped_by_reason"] == dict(want["skipped_by_reason"])
    # what the story did, in the marketer's words
    hello = steps[("welcome", "hello")]
    assert (hello["sent"], hello["delivered"], hello["opened"], hello["clicked"]) == (2, 2, 2, 1)
    assert hello["skipped_by_reason"] == {"frequency_cap": 2, "no_consent": 1,
                                          "role_account": 1}
    article = steps[("welcome", "article")]
    assert (article["sent"], article["replied"], article["unsubscribed"]) == (3, 1, 1)
    webinar = steps[("offers", "webinar")]
    assert (webinar["sent"], webinar["delivered"], webinar["bounced"]) == (2, 1, 1)
    assert steps[("offers", "text")]["skipped_by_reason"] == {"no_address": 5}
    # steps without messages have no message figures, and are listed in file order
    assert steps[("welcome", "pause")]["sent"] is None
    assert [s["step"] for s in data["journeys"][1]["steps"]] == [
        "hello", "pause", "article", "pause-2", "digest"]


def test_every_step_counts_the_enrollments_that_took_it(story):
    """`entered` comes from the path trace (`steprun`), for waits as for sends."""
    took: dict[tuple[str, str], set[int]] = defaultdict(set)
    for run in table(story.rt, "step_run"):
        leaving = run["kind"] == "exit" and run["outcome"] in ("goal reached", "exit condition")
        if run["step_id"] and run["kind"] not in ("entry", "end", "operator") and not leaving:
            took[(run["journey_id"], run["step_id"])].add(run["enrollment_id"])
    steps = step_rows(report(story))
    assert {k: s["entered"] for k, s in steps.items()} == {k: len(v) for k, v in took.items()}
    # bob left on the goal and carol on the exit condition while waiting in pause-2
    assert [steps[("welcome", s)]["entered"] for s in (
        "hello", "pause", "article", "pause-2", "digest")] == [6, 6, 6, 6, 4]


def test_goal_reached_and_funnels_equal_the_direct_counts(story):
    data = report(story)
    enrollments = table(story.rt, "enrollment")
    goal = Counter((e["journey_id"], e["step_id"]) for e in enrollments
                   if e["end_reason"] == "goal reached")
    assert {k: s["goal_reached"] for k, s in step_rows(data).items() if s["goal_reached"]} == goal
    assert goal == {("welcome", "digest"): 1}          # bob downloaded before the digest
    by_message = defaultdict(list)
    for event in table(story.rt, "event_t"):
        by_message[event["message_id"]].append(event)
    reached: dict[int, set[str]] = defaultdict(set)
    for m in table(story.rt, "message"):
        reached[m["enrollment_id"]] |= outcomes(m, by_message[m["id"]])
    for journey in data["journeys"]:
        mine = [e for e in enrollments if e["journey_id"] == journey["id"]]
        assert journey["funnel"] == {
            "entered": len(mine),
            **{stage: sum(stage in reached[e["id"]] for e in mine)
               for stage in ("sent", "opened", "clicked", "replied")},
            "goal_reached": sum(e["end_reason"] == "goal reached" for e in mine)}, journey["id"]
        assert journey["ended"] == dict(Counter(e["end_reason"] for e in mine))
    welcome = next(j for j in data["journeys"] if j["id"] == "welcome")
    assert welcome["funnel"] == {"entered": 6, "sent": 3, "opened": 2, "clicked": 1,
                                 "replied": 1, "goal_reached": 1}


def test_templates_and_skip_reasons_equal_the_direct_counts(story):
    data = report(story)
    expected = direct(story, ("channel", "template"))
    got = {(t["channel"], t["template"]): t for t in data["templates"]}
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {n: got[key][n] for n in MESSAGE_FIGURES} == {n: want[n] for n in MESSAGE_FIGURES}
        assert got[key]["contacts"] == len(want["contacts"])
    skipped = Counter(m["skip_reason"] for m in table(story.rt, "message")
                      if m["state"] == "skipped")
    assert data["skipped_by_reason"] == dict(skipped)
    assert None not in skipped and "None" not in data["skipped_by_reason"]


def test_any_message_column_groups_like_template_and_variant(story):
    """Templates group by `reports.template_keys()`: a `variant` column on `message`
    joins the grouping without another query."""
    assert reports.template_keys()[:2] == ("channel", "template")
    with story.rt.db.reader() as conn:
        rows = reports.message_figures(conn, {"mine": ("template", "locale")}, Scope())["mine"]
    expected = direct(story, ("template", "locale"))
    assert {(r["template"], r["locale"]): r["opened"] for r in rows} == {
        k: v["opened"] for k, v in expected.items()}


# ---- contacts and conversions ---------------------------------------------------------


def test_stages_temperatures_and_conversions_equal_the_direct_counts(story):
    data = report(story)
    contacts = table(story.rt, "contact")
    assert data["contacts"]["by_stage"] == dict(Counter(c["stage"] for c in contacts))
    assert data["contacts"]["by_temperature"] == dict(Counter(c["temperature"] for c in contacts))
    assert data["contacts"]["by_stage"] == {"customer": 1, "lead": 4, "prospect": 1}

    moves = [c for c in table(story.rt, "contact_change") if c["field"] == "stage"]
    created = {c["id"]: c["created_at"] for c in contacts}
    first: dict[int, datetime] = {}
    for move in sorted(moves, key=lambda c: c["at"]):
        if move["new"] == "prospect":
            first.setdefault(move["contact_id"], move["at"])
    days = {cid: (at - created[cid]).total_seconds() / 86400 for cid, at in first.items()}
    conv = data["conversions"]
    assert conv["qualified"] == len(first) == 2
    assert conv["median_days_to_qualify"] == round(statistics.median(days.values()), 2) == 4.56
    weeks = {w["week"]: w for w in conv["weeks"]}
    assert list(weeks) == ["2026-12-07", "2026-12-14"]
    for week, row in weeks.items():
        for stage in ("prospect", "customer"):
            assert row[stage] == len({m["contact_id"] for m in moves
                                      if m["new"] == stage and monday(m["at"]) == week})
        assert row["new_contacts"] == sum(monday(c["created_at"]) == week for c in contacts)
        mine = [d for cid, d in days.items() if monday(first[cid]) == week]
        assert row["median_days_to_qualify"] == round(statistics.median(mine), 2)
    assert (weeks["2026-12-07"]["prospect"], weeks["2026-12-14"]["customer"]) == (1, 1)


def test_empty_weeks_are_shown_between_moves(tmp_path):
    story = make_story(tmp_path / "p")
    with story.rt.db.begin() as conn:
        maturity.set_stage(conn, story.rt, story.ids["bob"], "customer", "late",
                           MONDAY + timedelta(days=30))
    weeks = [w["week"] for w in report(story)["conversions"]["weeks"]]
    first = date(2026, 12, 7)
    assert weeks == [(first + timedelta(weeks=i)).isoformat() for i in range(5)]


# ---- scope ----------------------------------------------------------------------------


def test_since_and_journey_narrow_every_figure_alike(story):
    since = MONDAY + timedelta(days=1)
    data = report(story, since=since)
    expected = direct(story, ("journey_id", "step_id"), since=since)
    steps = {k: s for k, s in step_rows(data).items() if s["messages"]}
    assert set(steps) == set(expected)
    assert ("welcome", "hello") not in steps
    assert all(steps[k]["sent"] == v["sent"] for k, v in expected.items())
    # enrollments entered before `since`: the funnels start empty
    assert all(j["funnel"]["entered"] == 0 for j in data["journeys"])
    weeks = {w["week"]: w for w in data["conversions"]["weeks"]}
    assert weeks["2026-12-07"]["new_contacts"] == 0 and weeks["2026-12-07"]["prospect"] == 1

    only = report(story, journey="offers")
    assert [j["id"] for j in only["journeys"]] == ["offers"]
    assert {t["template"] for t in only["templates"]} == {"warm/webinar-invite",
                                                          "prospect/call-me"}
    assert only["skipped_by_reason"] == dict(Counter(
        m["skip_reason"] for m in table(story.rt, "message")
        if m["state"] == "skipped" and m["journey_id"] == "offers"))


def test_an_unknown_journey_is_refused(story):
    with pytest.raises(NurtureError, match="no journey 'nope'"):
        report(story, journey="nope")


# ---- the command line and the admin page ----------------------------------------------


def cli(monkeypatch, capsys, config: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    return run_cli(monkeypatch, capsys, *args)


def test_the_report_command_prints_json_and_writes_the_page(story, monkeypatch, capsys,
                                                            tmp_path):
    config = story.rt.settings.root_path / "config.toml"
    page = tmp_path / "report.html"
    code, out, err = cli(monkeypatch, capsys, config, "report", "--json", "--html", str(page),
                         "--journey", "welcome", "--since", "2026-12-07")
    assert code == 0, err
    data = json.loads(out)
    assert [j["id"] for j in data["journeys"]] == ["welcome"]
    assert data["since"] == "2026-12-07T00:00:00Z"
    assert data["journeys"] == report(story, journey="welcome",
                                      since=datetime.fromisoformat(data["since"]))["journeys"]
    html = page.read_text()
    assert html.startswith("<!doctype html>") and 'class="chart funnel"' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html

    code, out, _ = cli(monkeypatch, capsys, config, "report")
    assert code == 0 and "welcome: entered 6, sent 3" in out and "frequency_cap 2" in out
    code, _, err = cli(monkeypatch, capsys, config, "report", "--since", "last week")
    assert code == 1 and err.strip() == (
        "error: --since 'last week' is not a date (YYYY-MM-DD) or an ISO time")


def test_status_no_longer_counts_sends_as_a_skip_reason(story, monkeypatch, capsys):
    config = story.rt.settings.root_path / "config.toml"
    code, out, _ = cli(monkeypatch, capsys, config, "status", "--json")
    assert code == 0
    status = json.loads(out)
    skipped = Counter(m["skip_reason"] for m in table(story.rt, "message")
                      if m["state"] == "skipped")
    assert status["skipped_by_reason"] == dict(skipped)
    assert sum(status["skipped_by_reason"].values()) == status["messages_by_state"]["skipped"]


def test_the_admin_page_is_the_same_page_behind_the_api_key(story):
    client = TestClient(create_app(story.rt, clock=lambda: MONDAY))
    assert client.get("/admin/report").status_code == 401
    assert client.get("/admin/report", headers={"X-API-Key": "wrong"}).status_code == 401
    answer = client.get("/admin/report?journey=offers",
                        headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    assert answer.text == report_page.render(report(story, journey="offers"))
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    for query in ("journey=nope", "since=yesterday"):
        bad = client.get(f"/admin/report?{query}", headers={"X-API-Key": API_KEY})
        assert bad.status_code == 400, query
    assert client.post("/admin/report", headers={"X-API-Key": API_KEY}).status_code == 405


@pytest.mark.postgres
def test_the_figures_are_the_same_on_postgresql(tmp_path, pg_url, story):
    other = make_story(tmp_path / "pg", database_url=pg_url)
    try:
        assert other.rt.db.engine.dialect.name == "postgresql"
        on_pg = report(other)
    finally:
        other.rt.db.dispose()
    assert on_pg == report(story)
    assert on_pg["conversions"]["median_days_to_qualify"] == 4.56
