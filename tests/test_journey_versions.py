"""Journey edits: versions, `plan`, `apply`. The daemon runs applied versions only, a
contact finishes the version it entered unless the new one maps its step, and nothing an
edit would strand is applied."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import NurtureError
from nurture.providers.memory import MemoryProvider
from nurture.services import journeys as service
from nurture.store import database as db
from tests.conftest import apply_journeys
from tests.fakes import enrollments, messages
from tests.test_engine import add

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

SERIES = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead' and attributes.company_size >= 50" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 2d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
  - { id: ask, type: wait_for, event: content.downloaded, timeout: 7d }
  - { id: digest, type: send, channel: email, template: cold/newsletter-digest }
"""

#: every kind of change at once: entry, exit, a removed step mapped by migrate, a changed
#: wait, a changed send, an added step
SERIES_V2 = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead' and attributes.company_size >= 10" }
exit_when: "stage != 'lead'"
migrate: { article: digest }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 3d }
  - { id: tag, type: set, attribute: nurtured, value: true }
  - { id: ask, type: wait_for, event: content.downloaded, timeout: 7d }
  - { id: digest, type: send, channel: email, template: cold/guide-reminder }
"""

OTHER = """
id: other
name: Other
purpose: marketing
entry: { when: "stage == 'lead'" }
steps:
  - { id: only, type: wait, duration: 30d }
"""


def write(rt: Runtime, name: str, source: str | None) -> None:
    path = rt.settings.journeys_path / f"{name}.yaml"
    if source is None:
        path.unlink()
    else:
        path.write_text(textwrap.dedent(source))


def plan(rt: Runtime, now: datetime) -> service.Plan:
    files, _, unreadable = service.read_files(rt)
    with rt.db.reader() as conn:
        return service.build_plan(conn, files, now, unreadable=unreadable)


def people(rt: Runtime, sizes: list[int], prefix: str = "p") -> list[int]:
    return [add(rt, f"{prefix}{i}@example.com", MONDAY, attributes={"company_size": size})
            for i, size in enumerate(sizes)]


def templates(rt: Runtime, cid: int) -> list[str]:
    return [m["template"] for m in messages(rt, cid) if m["state"] == "sent"]


def test_contacts_mid_journey_finish_the_version_they_entered(make_runtime):
    rt = make_runtime("", {"series": SERIES})
    [early] = people(rt, [120])
    tick(rt, MONDAY)
    write(rt, "series", SERIES.replace("cold/article-best-practices", "warm/comparison"))
    apply_journeys(rt)
    late = add(rt, "late@example.com", MONDAY, attributes={"company_size": 120})
    tick(rt, MONDAY + timedelta(hours=1))
    tick(rt, MONDAY + timedelta(days=2, hours=1))
    assert templates(rt, early) == ["cold/welcome-guide", "cold/article-best-practices"]
    assert templates(rt, late) == ["cold/welcome-guide", "warm/comparison"]
    versions = {e["contact_id"]: e["journey_version"] for e in
                enrollments(rt, early) + enrollments(rt, late)}
    assert versions[early] != versions[late] == rt.journeys["series"].version


def test_plan_counts_whom_each_kind_of_change_concerns(make_runtime):
    rt = make_runtime("", {"series": SERIES, "other": OTHER})
    big = people(rt, [120, 120, 120])
    small = people(rt, [20, 20], prefix="s")
    tick(rt, MONDAY)  # 3 in series (waiting in `pause`, next at `article`), 5 in other
    write(rt, "series", SERIES_V2)
    write(rt, "other", None)

    found = plan(rt, MONDAY + timedelta(hours=1))
    other, series = (jp.as_dict() for jp in found.journeys)
    assert (series["status"], other["status"]) == ("changed", "removed")
    assert series["steps"] == {"added": ["tag"], "removed": ["article"],
                               "changed": ["pause", "digest"]}
    assert [c["key"] for c in series["entry"]] == ["entry"]
    assert series["entry"][0]["to"] == {"when": "stage == 'lead' and "
                                                "attributes.company_size >= 10"}
    assert [(c["key"], c["from"], c["to"]) for c in series["exit"]] == [
        ("exit_when", None, "stage != 'lead'")]
    assert series["contacts_on_removed_steps"] == [
        {"step": "article", "contacts": 3, "migrate_to": "digest"}]
    assert series["waiting_on_changed_waits"] == {"pause": 3}
    assert series["newly_entering"] == 2
    assert (series["live_contacts"], other["live_contacts"]) == (3, 5)
    assert found.refusals() == [
        "journey other is removed from journeys/ but 5 contact(s) are in it: "
        "`nurture apply --remove-live` makes them exit ('journey removed')"]
    nothing = [(e["journey_id"], e["state"]) for cid in big + small
               for e in enrollments(rt, cid)]

    with pytest.raises(NurtureError, match="5 contact"):
        service.apply_files(rt, service.read_files(rt)[0], MONDAY + timedelta(hours=1))
    assert [(e["journey_id"], e["state"]) for cid in big + small
            for e in enrollments(rt, cid)] == nothing  # refused: nothing changed

    done = service.apply_files(rt, service.read_files(rt)[0], MONDAY + timedelta(hours=1),
                               remove_live=True)
    assert (done.exited, done.migrated, done.removed) == (5, 3, ["other"])
    report = tick(rt, MONDAY + timedelta(hours=1))
    assert report.entered == series["newly_entering"]
    for cid in big:
        left = [e for e in enrollments(rt, cid) if e["journey_id"] == "other"]
        assert [(e["state"], e["end_reason"]) for e in left] == [("exited", "journey removed")]
    tick(rt, MONDAY + timedelta(days=2, hours=1))
    for cid in big:  # moved by migrate: they continue at `digest`, of the new version
        assert templates(rt, cid) == ["cold/welcome-guide", "cold/guide-reminder"]
    for cid in small:
        assert templates(rt, cid) == ["cold/welcome-guide"]


def test_apply_refuses_an_edit_that_strands_contacts_without_migrate(make_runtime):
    rt = make_runtime("", {"series": SERIES})
    people(rt, [120, 120])
    tick(rt, MONDAY)
    before = rt.journeys["series"].version
    write(rt, "series", SERIES_V2.replace("migrate: { article: digest }\n", ""))
    with pytest.raises(NurtureError) as refused:
        service.apply_files(rt, service.read_files(rt)[0], MONDAY)
    assert ("journey series: 2 contact(s) at step 'article', which the new version removes: "
            "add 'migrate: {article: <step id>}'") in str(refused.value)
    assert rt.journeys["series"].version == before
    tick(rt, MONDAY + timedelta(days=2))  # they go on, on the version applied
    for e in (e for cid in (1, 2) for e in enrollments(rt, cid)):
        assert (e["state"], e["step_id"], e["journey_version"]) == ("waiting", "ask", before)


def test_a_running_daemon_keeps_the_applied_version_until_an_apply(make_runtime):
    rt = make_runtime("", {"series": SERIES})
    [first] = people(rt, [120])
    tick(rt, MONDAY)
    write(rt, "series", SERIES.replace("cold/article-best-practices", "warm/comparison"))
    write(rt, "broken", "id: broken\nsteps: [ {id: x, type: nope} ]\n")  # never applied
    # a daemon started after the edit runs what is applied, too
    restarted = build_runtime(rt.settings, providers={"email": MemoryProvider(),
                                                      "sms": MemoryProvider()})
    assert set(restarted.journeys) == {"series"}
    assert restarted.journeys["series"].version == rt.journeys["series"].version
    tick(rt, MONDAY + timedelta(days=2))
    assert templates(rt, first) == ["cold/welcome-guide", "cold/article-best-practices"]

    write(rt, "broken", None)
    other = build_runtime(load_settings(rt.settings.root_path / "config.toml", env={}))
    service.apply_files(other, service.read_files(other)[0], MONDAY + timedelta(days=2))
    second = add(rt, "second@example.com", MONDAY, attributes={"company_size": 120})
    tick(rt, MONDAY + timedelta(days=2, hours=1))  # the daemon sees the apply
    tick(rt, MONDAY + timedelta(days=4, hours=2))
    assert templates(rt, second) == ["cold/welcome-guide", "warm/comparison"]
    assert templates(rt, first) == ["cold/welcome-guide", "cold/article-best-practices"]


def test_an_unapplied_journey_never_runs(make_runtime):
    rt = make_runtime("", {})
    write(rt, "series", SERIES)
    cid = add(rt, "x@example.com", MONDAY, attributes={"company_size": 120})
    tick(rt, MONDAY)
    assert enrollments(rt, cid) == [] and messages(rt, cid) == []
    assert plan(rt, MONDAY).journeys[0].as_dict()["status"] == "added"


def test_applying_the_same_files_again_changes_nothing(make_runtime):
    rt = make_runtime("", {"series": SERIES})
    with rt.db.begin() as conn:
        first = conn.execute(select(db.journey_version)).all()
    done = apply_journeys(rt)
    assert done.journeys["series"].version == first[0].version
    with rt.db.begin() as conn:
        assert conn.execute(select(db.journey_version)).all() == first
    assert plan(rt, MONDAY).changes == []
