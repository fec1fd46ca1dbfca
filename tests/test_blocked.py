"""Nothing fails for good: what a person can fix blocks the enrollment at its step until
the fix is applied or retried; operators pause, resume, enroll and unenroll."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import NurtureError, ProviderError
from nurture.services import journeys as service
from tests.conftest import apply_journeys
from tests.fakes import enrollments, messages
from tests.test_engine import FlakyProvider, add

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

WELCOME = """
id: welcome
name: Welcome
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: hello, type: send, channel: email, template: cold/hello }
  - { id: pause, type: wait, duration: 2d }
  - { id: article, type: send, channel: email, template: cold/article-best-practices }
  - { id: rest, type: wait, duration: 30d }
"""


def with_hello(rt: Runtime) -> None:
    """`cold/hello`: a copy of the welcome guide, in both languages."""
    folder = rt.settings.templates_path / "email" / "cold"
    for path in folder.glob("welcome-guide.*"):
        shutil.copy(path, folder / path.name.replace("welcome-guide", "hello"))


def sent(rt: Runtime, cid: int) -> list[str]:
    return [m["step_id"] for m in messages(rt, cid) if m["state"] == "sent"]


def state(rt: Runtime, cid: int) -> tuple[str, str | None]:
    [row] = enrollments(rt, cid)
    return row["state"], row["step_id"]


def test_a_template_error_blocks_and_the_applied_fix_resumes_it_once(make_runtime):
    rt = make_runtime("", {"welcome": WELCOME})
    with_hello(rt)
    french = rt.settings.templates_path / "email" / "cold" / "hello.fr.html"
    good = french.read_text()
    french.write_text(good.replace("{% endif %},", "{% endfi %},", 1))  # a typo
    camille = add(rt, "camille@example.com", MONDAY, locale="fr")
    james = add(rt, "james@example.com", MONDAY, locale="en")
    tick(rt, MONDAY)
    assert sent(rt, james) == ["hello"]
    assert state(rt, camille) == ("blocked", "hello")
    [row] = enrollments(rt, camille)
    assert "hello.fr.html" in row["last_error"] and row["ended_at"] is None
    assert [(m["state"], m["skip_reason"]) for m in messages(rt, camille)] == [
        ("skipped", "render_error")]
    tick(rt, MONDAY + timedelta(days=3))  # nothing resumes it by itself
    assert state(rt, camille) == ("blocked", "hello") and sent(rt, camille) == []

    french.write_text(good)  # the fix, then apply (no journey changed)
    assert apply_journeys(rt) is rt
    fixed = MONDAY + timedelta(days=3, hours=1)
    tick(rt, fixed)
    assert sent(rt, camille) == ["hello"]
    assert state(rt, camille) == ("active", "article")
    tick(rt, fixed + timedelta(hours=1))
    tick(rt, fixed + timedelta(days=2))
    assert sent(rt, camille) == ["hello", "article"]  # the fixed step ran once
    assert sent(rt, james) == ["hello", "article"]


def test_a_step_that_is_not_there_blocks_until_migrate_is_applied(make_runtime):
    rt = make_runtime("", {"welcome": WELCOME})
    with_hello(rt)
    cid = add(rt, "lost@example.com", MONDAY)
    tick(rt, MONDAY)
    with rt.db.begin() as conn:  # an enrollment at a step no version has (made long ago)
        conn.exec_driver_sql("UPDATE enrollment SET step_id = 'gone', journey_version = 'v0'")
    tick(rt, MONDAY + timedelta(days=2))
    assert state(rt, cid) == ("blocked", "gone")
    with pytest.raises(NurtureError, match="at step 'gone'"):
        apply_journeys(rt)  # the stranding check sees it
    journey = rt.settings.journeys_path / "welcome.yaml"
    journey.write_text(journey.read_text().replace("steps:", "migrate: { gone: article }\nsteps:"))
    done = service.apply_files(rt, service.read_files(rt)[0], MONDAY + timedelta(days=2))
    assert done.migrated == 1
    tick(rt, MONDAY + timedelta(days=2, hours=1))
    assert sent(rt, cid) == ["hello", "article"]


def test_a_provider_refusal_blocks_at_the_send_and_retry_resumes_it(make_runtime):
    provider = FlakyProvider([ProviderError("403 sender not verified", retryable=False,
                                            code="403")])
    rt = make_runtime("", {"welcome": WELCOME}, providers={"email": provider, "sms": provider})
    with_hello(rt)
    cid = add(rt, "ana@example.com", MONDAY)
    report = tick(rt, MONDAY)
    assert report.blocked == 1
    assert state(rt, cid) == ("blocked", "hello")
    assert "sender not verified" in enrollments(rt, cid)[0]["last_error"]
    with rt.db.begin() as conn:
        assert service.retry(conn, rt, MONDAY, journey_id="other") == 0
        assert service.retry(conn, rt, MONDAY, journey_id="welcome", step_id="pause") == 0
        assert service.retry(conn, rt, MONDAY, journey_id="welcome", step_id="hello") == 1
    tick(rt, MONDAY + timedelta(minutes=5))
    assert [m["state"] for m in messages(rt, cid)] == ["failed", "sent"]
    assert state(rt, cid) == ("active", "article") and len(provider.sent) == 1


def test_a_paused_journey_sends_nothing_and_holds_entries_until_resumed(make_runtime):
    rt = make_runtime("", {"welcome": WELCOME})
    with_hello(rt)
    early = add(rt, "early@example.com", MONDAY)
    tick(rt, MONDAY)
    with rt.db.begin() as conn:
        service.pause(conn, rt, "welcome", MONDAY)
    late = add(rt, "late@example.com", MONDAY + timedelta(days=1))
    tick(rt, MONDAY + timedelta(days=3))
    assert sent(rt, early) == ["hello"] and sent(rt, late) == []
    assert state(rt, early) == ("active", "article")   # it kept its place
    assert state(rt, late) == ("active", "hello")      # entered, held at the door
    with rt.db.begin() as conn:
        service.resume(conn, rt, "welcome", MONDAY + timedelta(days=3))
    tick(rt, MONDAY + timedelta(days=3, hours=1))
    assert sent(rt, early) == ["hello", "article"] and sent(rt, late) == ["hello"]
    with rt.db.begin() as conn, pytest.raises(NurtureError, match="not applied"):
        service.pause(conn, rt, "nope", MONDAY)


def test_enroll_and_unenroll_by_hand_with_their_reason(make_runtime):
    only_big = WELCOME.replace('"stage == \'lead\'"', '"attributes.company_size >= 50"')
    rt = make_runtime("", {"welcome": only_big})
    with_hello(rt)
    cid = add(rt, "small@example.com", MONDAY, attributes={"company_size": 5})
    tick(rt, MONDAY)
    assert enrollments(rt, cid) == []
    with rt.db.begin() as conn:
        done = service.enroll(conn, rt, "small@example.com", "welcome", "asked at the fair",
                              MONDAY)
    assert done["contact_id"] == cid
    with rt.db.begin() as conn, pytest.raises(NurtureError, match="already in journey"):
        service.enroll(conn, rt, str(cid), "welcome", "again", MONDAY)
    tick(rt, MONDAY + timedelta(minutes=1))
    assert sent(rt, cid) == ["hello"]
    with rt.db.begin() as conn:
        service.unenroll(conn, rt, "small@example.com", "welcome", "asked us to stop", MONDAY)
    [row] = enrollments(rt, cid)
    assert (row["state"], row["end_reason"]) == ("exited", "unenrolled: asked us to stop")
    tick(rt, MONDAY + timedelta(days=3))
    assert sent(rt, cid) == ["hello"]
    with rt.db.begin() as conn, pytest.raises(NurtureError, match="not in journey"):
        service.unenroll(conn, rt, str(cid), "welcome", "twice", MONDAY)
