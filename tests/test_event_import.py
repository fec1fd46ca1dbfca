"""`nurture event import FILE` and `nurture event --at`: past events scored as of their
own time, in time order, with decay between them and up to now."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from nurture.engine.runtime import Runtime
from nurture.intake import jobs
from nurture.services.event_import import EventImportOptions, import_events
from nurture.store import database as db
from tests.cli_support import run as nurture
from tests.maturity_support import MONDAY, add, build, event

T0 = MONDAY
DOWNLOAD_JOURNEY = """
id: after-download
name: After a download
purpose: newsletter
entry: { event: content.downloaded }
steps:
  - { id: thanks, type: send, channel: email, template: cold/welcome-guide }
"""


def rows(rt: Runtime, table: Any, **where: Any) -> list[dict[str, Any]]:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(query.order_by(*table.primary_key.columns))
                .mappings()]


def contact(rt: Runtime, cid: int) -> dict[str, Any]:
    return rows(rt, db.contact, id=cid)[0]


def write_csv(path: Path, *lines: dict[str, Any]) -> Path:
    names = list(dict.fromkeys(k for line in lines for k in line))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, names)
        out.writeheader()
        out.writerows(lines)
    return path


def at(days: float = 0, hours: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours)).isoformat()


def test_points_decay_between_events_and_up_to_now(tmp_path):
    rt = build(tmp_path / "p", repo_journeys=False)
    cid = add(rt, "lea@example.com", now=T0 - timedelta(days=1))
    # listed out of order: scored in time order all the same
    download = {"type": "content.downloaded"}
    file = write_csv(tmp_path / "history.csv",
                     {"email": "Lea@Example.com", **download, "occurred_at": at(14)},
                     {"email": "lea@example.com", **download, "occurred_at": at(0)})
    now = T0 + timedelta(days=28)
    report = import_events(rt, file, EventImportOptions(), now)
    assert (report.stored, report.contacts, report.rejected) == (2, 1, [])

    changes = [(c["field"], c["new"], c["rule"], c["at"]) for c in
               rows(rt, db.contact_change, contact_id=cid)]
    assert changes == [
        ("score", "15", "download", T0),
        ("score", "7.5", "decay", T0 + timedelta(days=14)),  # 14 days: half
        ("score", "22.5", "download", T0 + timedelta(days=14)),
        ("temperature", "warm", "bands", T0 + timedelta(days=14)),
        ("score", "11.25", "decay", now),  # and 14 more days to now
        ("temperature", "cold", "bands", now),
    ]
    stored = contact(rt, cid)
    assert stored["score"] == 11.25 and stored["temperature"] == "cold"
    assert stored["decay_at"] == now + timedelta(days=1)
    assert {e["received_at"] for e in rows(rt, db.event_t)} == {now}


def test_history_scores_as_the_daemon_would_have(tmp_path):
    """The same events live, with the daemon's daily decay, end at the same score."""
    times = [T0, T0 + timedelta(days=3, hours=5), T0 + timedelta(days=10)]
    now = T0 + timedelta(days=21)
    live = build(tmp_path / "live", repo_journeys=False)
    lid = add(live, "lea@example.com", now=T0 - timedelta(days=1))
    day = T0
    for when in times:
        while day + timedelta(days=1) <= when:
            day += timedelta(days=1)
            jobs.decay_due(live, day)
        event(live, lid, "content.downloaded", when)
    while day + timedelta(days=1) <= now:
        day += timedelta(days=1)
        jobs.decay_due(live, day)

    history = build(tmp_path / "history", repo_journeys=False)
    hid = add(history, "lea@example.com", now=T0 - timedelta(days=1))
    file = write_csv(tmp_path / "h.csv", *[{"email": "lea@example.com",
                                            "type": "content.downloaded",
                                            "occurred_at": w.isoformat()} for w in times])
    import_events(history, file, EventImportOptions(), now)
    # the daemon rounds at each daily step; one step per event here
    assert contact(history, hid)["score"] == pytest.approx(contact(live, lid)["score"], abs=0.1)
    assert contact(history, hid)["temperature"] == contact(live, lid)["temperature"]


def test_caps_count_hits_by_the_events_own_time(tmp_path):
    """`open` is capped at 3 per day: five opens in one morning score 3 times, five
    opens on five days score 5 times."""
    rt = build(tmp_path / "p", repo_journeys=False)
    burst = add(rt, "burst@example.com", now=T0 - timedelta(days=1))
    spread = add(rt, "spread@example.com", now=T0 - timedelta(days=1))
    file = write_csv(tmp_path / "opens.csv", *[
        *({"email": "burst@example.com", "type": "email.opened", "occurred_at": at(0, i)}
          for i in range(5)),
        *({"email": "spread@example.com", "type": "email.opened", "occurred_at": at(i)}
          for i in range(5))])
    import_events(rt, file, EventImportOptions(), T0 + timedelta(days=5))

    def hits(cid: int) -> int:
        return sum(1 for c in rows(rt, db.contact_change, contact_id=cid) if c["rule"] == "open")

    assert (hits(burst), hits(spread)) == (3, 5)


def test_reimporting_changes_nothing_and_bad_rows_are_refused(tmp_path):
    rt = build(tmp_path / "p", repo_journeys=False)
    cid = add(rt, "lea@example.com", phone="+33612345678", now=T0 - timedelta(days=1))
    file = write_csv(tmp_path / "mixed.csv",
                     {"email": "lea@example.com", "type": "page.viewed", "occurred_at": at(0),
                      "prop.url": "/pricing", "prop.seconds": "45"},
                     {"phone": "06 12 34 56 78", "type": "trial.started", "occurred_at": at(1)},
                     {"contact_id": str(cid), "type": "email.opened", "occurred_at": "1772528400"},
                     {"email": "ghost@example.com", "type": "page.viewed", "occurred_at": at(0)},
                     {"email": "lea@example.com", "type": "page.veiwed", "occurred_at": at(0)},
                     {"email": "lea@example.com", "type": "page.viewed",
                      "occurred_at": "2026-03-02 09:00"},
                     {"email": "lea@example.com", "type": "page.viewed", "occurred_at": at(99)},
                     {"type": "page.viewed", "occurred_at": at(0)})
    now = T0 + timedelta(days=2)
    report = import_events(rt, file, EventImportOptions(), now)
    assert report.stored == 3 and report.by_type == {"page.viewed": 1, "trial.started": 1,
                                                      "email.opened": 1}
    assert [(r.row, str(r.reason)) for r in report.rejected] == [
        (5, "unknown_contact"), (6, "bad_type"), (7, "bad_time"), (8, "bad_time"),
        (9, "no_contact")]
    assert "has no time zone" in report.rejected[2].detail
    assert "in the future" in report.rejected[3].detail
    [view] = [e for e in rows(rt, db.event_t) if e["type"] == "page.viewed"]
    assert view["properties"] == {"url": "/pricing", "seconds": 45}
    with open(tmp_path / "mixed.csv.rejected.csv", encoding="utf-8") as handle:
        assert [r["_reason"] for r in csv.DictReader(handle)] == [
            "unknown_contact", "bad_type", "bad_time", "bad_time", "no_contact"]

    before = [rows(rt, t) for t in (db.contact, db.contact_change, db.event_t)]
    again = import_events(rt, file, EventImportOptions(), now + timedelta(hours=1))
    assert (again.stored, again.replays) == (0, 3)
    assert [rows(rt, t) for t in (db.contact, db.contact_change, db.event_t)] == before


def test_past_events_enter_no_event_journey_and_stop_withdraws(tmp_path):
    rt = build(tmp_path / "p", repo_journeys=False, journeys={"after-download": DOWNLOAD_JOURNEY})
    cid = add(rt, "lea@example.com", phone="+33612345678", now=T0 - timedelta(days=1))
    file = tmp_path / "history.jsonl"
    file.write_text("\n".join([
        json.dumps({"email": "lea@example.com", "type": "content.downloaded",
                    "occurred_at": at(0), "id": "dl-1"}),
        json.dumps({"email": "lea@example.com", "type": "reply.received", "occurred_at": at(1),
                    "id": "sms-1", "properties": {"channel": "sms", "text": "STOP"}}),
        "{not json", ""]) + "\n")
    report = import_events(rt, file, EventImportOptions(), T0 + timedelta(days=2))
    assert (report.stored, report.opt_outs) == (2, 1)
    assert [(r.row, str(r.reason)) for r in report.rejected] == [(3, "bad_properties")]
    assert rows(rt, db.enrollment, contact_id=cid) == []
    states = {(s["channel"], s["purpose"]): s["action"]
              for s in rows(rt, db.consent_state, contact_id=cid)}
    assert states[("sms", "*")] == "withdrawn"
    assert contact(rt, cid)["evaluate_at"] is not None  # condition journeys: evaluated
    [rejected] = [json.loads(line) for line in
                  (tmp_path / "history.jsonl.rejected.jsonl").read_text().splitlines()]
    assert rejected["_row"] == 3 and rejected["_reason"] == "bad_properties"

    event(rt, cid, "content.downloaded", T0 + timedelta(days=2))  # live: it enters
    assert [e["journey_id"] for e in rows(rt, db.enrollment, contact_id=cid)] == [
        "after-download"]


def test_dry_run_stores_nothing(tmp_path):
    rt = build(tmp_path / "p", repo_journeys=False)
    add(rt, "lea@example.com", now=T0 - timedelta(days=1))
    file = write_csv(tmp_path / "h.csv", {"email": "lea@example.com", "type": "trial.started",
                                          "occurred_at": at(0)})
    before = [rows(rt, t) for t in (db.contact, db.contact_change, db.event_t)]
    report = import_events(rt, file, EventImportOptions(dry_run=True), T0 + timedelta(days=1))
    assert report.stored == 1 and report.rejected_file is None
    assert [rows(rt, t) for t in (db.contact, db.contact_change, db.event_t)] == before


def test_event_at_and_event_import_on_the_command_line(tmp_path, monkeypatch, capsys):
    rt = build(tmp_path / "p", repo_journeys=False)
    monkeypatch.setenv("NURTURE_CONFIG", str(tmp_path / "p" / "config.toml"))
    real_now = datetime.now(UTC)
    cid = add(rt, "lea@example.com", now=real_now - timedelta(days=30))
    past = (real_now - timedelta(days=14)).isoformat()

    code, out, err = nurture(monkeypatch, capsys, "event", "lea@example.com",
                             "content.downloaded", "--at", past, "--id", "dl-1")
    assert code == 0, err
    assert out.startswith("created event: content.downloaded for lea@example.com as of ")
    assert contact(rt, cid)["score"] == 7.5  # 15 points, 14 days ago, half-life 14 days
    code, out, _ = nurture(monkeypatch, capsys, "event", "lea@example.com",
                           "content.downloaded", "--at", past, "--id", "dl-1")
    assert code == 0 and "already recorded" in out

    code, _, err = nurture(monkeypatch, capsys, "event", "lea@example.com", "page.viewed",
                           "--at", (real_now + timedelta(days=1)).isoformat())
    assert code == 1 and err.startswith("error: --at ") and "in the future" in err

    file = write_csv(tmp_path / "more.csv", {"email": "lea@example.com", "type": "trial.started",
                                             "occurred_at": past})
    code, out, err = nurture(monkeypatch, capsys, "event", "import", file, "--json")
    assert code == 0, err
    # older than the decay already applied: counted in full from there, and said so
    assert json.loads(out)["created"] == 1 and json.loads(out)["late"] == 1
    assert contact(rt, cid)["score"] == 7.5 + 40
