"""The tick's fast path keeps its guarantees: what it skips, reads once or writes less."""

from __future__ import annotations

import gc
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from nurture.content.rendering import mentions_stop, sms_segments
from nurture.engine import executor, send
from nurture.engine import tick as tick_module
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.providers.base import OutgoingMessage, SendResult
from nurture.store import database as db
from nurture.store import queries as store
from nurture.store import work
from tests.fakes import messages
from tests.test_engine import MONDAY, add

SERIES = """
id: onboarding
name: Onboarding
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: welcome, type: send, channel: email, template: cold/welcome-guide }
  - { id: pause, type: wait, duration: 2d }
  - { id: reminder, type: send, channel: sms, template: hot/trial-reminder }
"""


def enrollments(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.begin() as conn:
        return [dict(r) for r in conn.execute(select(db.enrollment).order_by(db.enrollment.c.id))
                .mappings()]


def test_a_crash_while_running_a_batch_leaves_its_enrollments_due_at_once(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the claim is the first read of the batch's transaction: a failure before
    it commits leaves nothing claimed, so the same tick time finds the work again."""
    rt = make_runtime("lease_seconds = 600\n", {"onboarding": SERIES})
    ids = [add(rt, f"c{i}@example.com", MONDAY) for i in range(3)]
    tick(rt, MONDAY, should_stop=lambda: True)  # entered, due now, not run yet
    run = executor.run

    def crash(*args: Any) -> Any:
        raise RuntimeError("the daemon dies mid-batch")

    monkeypatch.setattr(executor, "run", crash)
    with pytest.raises(RuntimeError):
        tick(rt, MONDAY)
    assert messages(rt) == []
    assert {(e["claimed_by"], e["step_id"]) for e in enrollments(rt)} == {(None, "welcome")}

    monkeypatch.setattr(executor, "run", run)
    report = tick(rt, MONDAY)  # no lease to wait for
    assert report.sent == 3
    assert sorted(m["contact_id"] for m in messages(rt)) == ids


def test_an_enrollment_write_names_only_what_the_run_changed(make_runtime: Any) -> None:
    """Writing `state` unchanged would still rewrite its indexes: a run that leaves an
    enrollment active does not name the column; one that ends it does."""
    rt = make_runtime("", {"onboarding": SERIES})
    add(rt, "a@example.com", MONDAY, phone="+33612345678")
    tick(rt, MONDAY, should_stop=lambda: True)  # entered, due now, not run yet
    updates: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE enrollment SET"):
            updates.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", seen)
    tick(rt, MONDAY)  # welcome sent, waiting: still active
    tick(rt, MONDAY + timedelta(days=2))  # the reminder, then the end: completed
    event.remove(rt.db.engine, "before_cursor_execute", seen)

    assert len(updates) == 2
    assert not re.search(r"\bstate = \?", updates[0]) and "seq = ?" in updates[0]
    assert re.search(r"\bstate = \?", updates[1])
    [row] = enrollments(rt)
    assert (row["state"], row["end_reason"], row["claimed_by"]) == ("completed", "completed",
                                                                    None)
    assert [m["step_id"] for m in messages(rt)] == ["welcome", "reminder"]


def test_write_enrollments_releases_only_our_claim(make_runtime: Any) -> None:
    """Marked claims (PostgreSQL's): a row an operator released meanwhile is not written."""
    rt = make_runtime("", {"onboarding": SERIES})
    add(rt, "a@example.com", MONDAY)
    add(rt, "b@example.com", MONDAY)
    tick(rt, MONDAY, should_stop=lambda: True)  # entered, due now, not run yet
    with rt.db.begin() as conn:
        claimed = work.claim_due(conn, MONDAY, 10, "w1", MONDAY + timedelta(minutes=5))
    with rt.db.begin() as conn:  # an operator's unenroll releases the first one
        store.update_enrollment(conn, claimed[0]["id"], {"claimed_by": None, "state": "exited"})
    moved = [dict(row, seq=row["seq"] + 1, next_run_at=MONDAY + timedelta(days=1),
                  updated_at=MONDAY) for row in claimed]
    with rt.db.begin() as conn:
        work.write_enrollments(conn, "w1", moved, claimed)
    rows = {r["id"]: r for r in enrollments(rt)}
    assert (rows[claimed[0]["id"]]["state"], rows[claimed[0]["id"]]["seq"]) == ("exited", 0)
    assert (rows[claimed[1]["id"]]["seq"], rows[claimed[1]["id"]]["claimed_by"]) == (1, None)


def test_an_idle_tick_looks_once_and_takes_no_lock_for_what_is_not_there(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = make_runtime("", {"onboarding": SERIES})
    add(rt, "a@example.com", MONDAY)
    tick(rt, MONDAY)  # entered and sent; waiting two days
    called: list[str] = []
    for module, name in ((store, "expire_sending"), (work, "due_retries"),
                         (store, "contacts_to_evaluate"), (work, "claim_due")):
        original = getattr(module, name)

        def counted(*args: Any, _name: str = name, _f: Any = original, **kwargs: Any) -> Any:
            called.append(_name)
            return _f(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    tick(rt, MONDAY + timedelta(hours=1))
    assert called == []

    with rt.db.begin() as conn:  # a contact flagged for evaluation: that part runs
        store.flag_for_evaluation(conn, [1], MONDAY)
    tick(rt, MONDAY + timedelta(hours=2))
    assert called == ["contacts_to_evaluate", "contacts_to_evaluate"]

    called.clear()
    report = tick(rt, MONDAY + timedelta(days=2))  # the wait is over: the claim runs
    assert "claim_due" in called and report.processed == 1


def test_no_cyclic_collection_runs_during_a_batch(make_runtime: Any) -> None:
    seen: list[bool] = []

    class Watching:
        name = "memory"

        def send(self, message: OutgoingMessage) -> SendResult:
            seen.append(gc.isenabled())
            return SendResult(self.name, f"w-{message.public_id}")

    provider = Watching()
    rt = make_runtime("", {"onboarding": SERIES}, providers={"email": provider, "sms": provider})
    add(rt, "a@example.com", MONDAY)
    assert gc.isenabled()
    tick(rt, MONDAY)
    assert seen == [False]
    assert gc.isenabled()


def test_the_guard_reuses_the_batch_hashes_and_still_sees_a_suppression(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The address hashes computed for the batch's gates serve the last look; a
    suppression committed after the batch was recorded still stops its message."""
    rt = make_runtime("", {"onboarding": SERIES})
    add(rt, "a@example.com", MONDAY)
    add(rt, "b@example.com", MONDAY)
    tick(rt, MONDAY, should_stop=lambda: True)  # entered, due now, not run yet
    hashed: list[str] = []
    original = send.address_hash

    def counting(address: str) -> str:
        hashed.append(address)
        return original(address)

    monkeypatch.setattr(send, "address_hash", counting)
    deliver = tick_module.deliver

    def suppress_first(rt_: Runtime, outgoing: Any, now: datetime, **kwargs: Any) -> Any:
        with rt_.db.begin() as conn:
            store.suppress(conn, original("a@example.com"), "manual", "test", now)
        return deliver(rt_, outgoing, now, **kwargs)

    monkeypatch.setattr(tick_module, "deliver", suppress_first)
    report = tick(rt, MONDAY)
    assert hashed == []  # none computed again
    states = {m["to_address"]: (m["state"], m["skip_reason"]) for m in messages(rt)}
    assert states == {"a@example.com": ("skipped", "suppressed"),
                      "b@example.com": ("sent", None)}
    assert report.sent == 1


def test_driver_reads_give_what_the_views_and_gates_expect(make_runtime: Any) -> None:
    rt = make_runtime("", {"onboarding": SERIES})
    cid = add(rt, "a@example.com", MONDAY, phone="+33612345678")
    with rt.db.begin() as conn:
        [contact] = store.load_contacts(conn, [cid]).values()
        statuses = store.consent_statuses(conn, [cid, 999])
        store.suppress(conn, "h1", "manual", "", MONDAY)
        assert store.suppressed_among(conn, ["h1", "h2", "h1"]) == {"h1"}
        assert store.suppressed_among(conn, []) == set()
    assert contact.role_account is False and isinstance(contact.attributes, dict)
    assert (contact.email, contact.phone, contact.id) == ("a@example.com", "+33612345678", cid)
    status = statuses[(cid, "email", "newsletter")]
    assert (status.action, status.at) == ("granted", MONDAY) and status.at.tzinfo is not None
    assert set(statuses) == {(cid, "email", "newsletter"), (cid, "sms", "newsletter")}


@pytest.mark.parametrize("text", [
    "", "Bonjour Camille", "x" * 160, "x" * 161, "é" * 70, "é" * 71, "{" * 80, "a{" * 60,
    "Bonjour ` Camille", "emoji 😀 " * 10, "\n\r@£$¥" * 30, "ça va" * 40,
])
def test_sms_segments_agree_with_a_character_by_character_count(text: str) -> None:
    """The fast path (only basic GSM characters) counts as the full rules do."""
    basic = set(
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
    extension = set("\f^{}\\[~]|€")
    if all(c in basic or c in extension for c in text):
        units = [2 if c in extension else 1 for c in text]
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part, encoding = 70, 67, "UCS-2"
    segments, used = 1, 0
    if sum(units) > single:
        for size in units:
            if used + size > part:
                segments, used = segments + 1, 0
            used += size
    assert sms_segments(text) == (segments, encoding)


@pytest.mark.parametrize(("text", "mentioned"), [
    ("Répondez STOP au 36111", True), ("stop", True), ("ſtop", True), ("STOPPER", False),
    ("nonstop", False), ("Bonjour Camille", False), ("Arrêt: Stop.", True),
])
def test_mentions_stop_matches_the_word_whatever_its_case(text: str, mentioned: bool) -> None:
    assert mentions_stop(text) is mentioned


def test_each_batch_of_a_long_tick_runs_at_the_time_it_is_claimed(make_runtime: Any) -> None:
    """A tick outlasting its lease: the later batches' messages carry the time they were
    really taken (their leases count from then), not the tick's start."""
    rt = make_runtime("lease_seconds = 60\nbatch_size = 2\n", {"onboarding": SERIES})
    for i in range(4):
        add(rt, f"c{i}@example.com", MONDAY)
    tick(rt, MONDAY, should_stop=lambda: True)  # entered, due now, not run yet
    times = iter(MONDAY + timedelta(minutes=10 * n) for n in range(1, 10))
    report = tick(rt, MONDAY, clock=lambda: next(times))
    assert report.sent == 4
    made = sorted((m["created_at"], m["lease_until"]) for m in messages(rt))
    assert [at for at, _ in made] == [MONDAY + timedelta(minutes=10)] * 2 + [
        MONDAY + timedelta(minutes=20)] * 2
    assert all(until is None or until == at + timedelta(seconds=60) for at, until in made)
