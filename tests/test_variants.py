"""A/B variants of a send step: weighted, sticky per contact, recorded on the message,
compared by the report, checked by `validate` — through the real engine and outbox."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.authoring import journey as J
from nurture.authoring.loader import read_journey
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.intake import ledger as consent_ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.services import contacts
from nurture.services.report import Scope, build_report
from nurture.services.validate import validate_project
from nurture.store import database as db
from tests.conftest import write_project
from tests.consent_support import MONDAY, build, eml, rows

GUIDE, ARTICLE = "cold/welcome-guide", "cold/article-best-practices"
JOURNEY = f"""
    id: ab
    name: A/B welcome
    purpose: newsletter
    entry: {{ when: "stage == 'lead'" }}
    reentry: 2d
    goal: "events.content.downloaded.count >= 1"
    steps:
      - id: welcome
        type: send
        channel: email
        variants:
          - {{ template: {GUIDE}, weight: 70 }}
          - {{ template: {ARTICLE}, weight: 30 }}
      - {{ id: pause, type: wait, duration: 1d }}
"""
SUBJECTS = {GUIDE: "your guide to a team schedule", ARTICLE: "5 scheduling habits"}


def _add_many(rt: Runtime, count: int) -> list[int]:
    """`count` leads who consented to the newsletter, in one transaction."""
    ids = []
    with rt.db.begin() as conn:
        for n in range(count):
            cid = contacts.add_contact(conn, rt.settings, MONDAY, email=f"lead{n}@example.com")
            consent_ledger.record_consent(
                conn, rt.settings, MONDAY, contact=contacts.find_contact(conn, str(cid)),
                channel="email", purpose="newsletter", action="granted",
                source="signup-form", evidence={"wording_version": "v1"})
            ids.append(cid)
    return ids


def _messages(rt: Runtime) -> list[dict[str, object]]:
    return rows(rt, db.message, journey_id="ab")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, list[int]]:
    rt = build(tmp_path_factory.mktemp("variants"), journeys={"ab": JOURNEY},
               copy_journeys=False)
    ids = _add_many(rt, 1000)
    tick(rt, MONDAY)
    return rt, ids


def test_a_two_variant_step_splits_contacts_near_the_weights(story):
    rt, ids = story
    sent = _messages(rt)
    assert len(sent) == 1000 and {m["contact_id"] for m in sent} == set(ids)
    assert all(m["state"] == "sent" and m["variant"] == m["template"] for m in sent)
    shares = Counter(m["variant"] for m in sent)
    assert set(shares) == {GUIDE, ARTICLE}
    assert 650 <= shares[GUIDE] <= 750, shares


def test_the_chosen_variants_template_is_the_one_rendered(story):
    rt, _ = story
    for message in _messages(rt)[:20]:
        subject = str(eml(rt, str(message["public_id"]))["Subject"])
        assert SUBJECTS[str(message["variant"])] in subject, (message["variant"], subject)


def test_the_variant_is_sticky_across_reentry_and_recomputation(story):
    rt, ids = story
    loaded = rt.journeys["ab"]
    step = loaded.steps["welcome"]
    first = {m["contact_id"]: m["variant"] for m in _messages(rt)}
    assert all(J.choose_variant(step, cid, "ab").template == first[cid]  # type: ignore[union-attr]
               for cid in ids)
    # the wait ends (completed) on day 1; the cool-down lets them in again on day 3
    tick(rt, MONDAY + timedelta(days=1, hours=1))
    tick(rt, MONDAY + timedelta(days=3, hours=1))
    again: dict[int, list[object]] = {}
    for m in _messages(rt):
        again.setdefault(int(str(m["contact_id"])), []).append(m["variant"])
    assert all(len(v) == 2 for v in again.values()), Counter(len(v) for v in again.values())
    assert all(v[0] == v[1] == first[cid] for cid, v in again.items())
    assert len(rows(rt, db.enrollment, journey_id="ab")) == 2000


def test_the_report_compares_variants_with_their_sample_sizes(tmp_path):
    rt = build(tmp_path, journeys={"ab": JOURNEY}, copy_journeys=False)
    ids = _add_many(rt, 40)
    tick(rt, MONDAY)
    sent = {int(str(m["contact_id"])): m for m in _messages(rt)}
    # a few of each variant reach the goal (a download, before the wait ends)
    winners = [cid for cid in ids if sent[cid]["variant"] == GUIDE][:3]
    winners += [cid for cid in ids if sent[cid]["variant"] == ARTICLE][:1]
    at = MONDAY + timedelta(hours=2)
    with rt.db.begin() as conn:
        for cid in winners:
            ingest(conn, rt, IncomingEvent("content.downloaded", "api", at, cid,
                                           source_event_id=f"dl-{cid}"), at)
    tick(rt, MONDAY + timedelta(hours=3))
    with rt.db.reader() as conn:
        data = build_report(conn, rt.journeys, MONDAY + timedelta(days=1), Scope())
    got = {t["variant"]: t for t in data["templates"] if t["template"] in (GUIDE, ARTICLE)}
    counts = Counter(m["variant"] for m in sent.values())
    assert set(got) == {GUIDE, ARTICLE}
    for variant, row in got.items():
        assert row["template"] == variant
        assert row["sent"] == row["messages"] == row["contacts"] == counts[variant]
        assert row["goal_reached"] == (3 if variant == GUIDE else 1)
    step = next(s for s in data["journeys"][0]["steps"] if s["step"] == "welcome")
    assert step["template"] == f"{GUIDE}, {ARTICLE}" and step["sent"] == 40


def test_a_single_template_step_records_no_variant(tmp_path):
    single = JOURNEY.split("        variants:")[0] + f"        template: {GUIDE}\n"
    rt = build(tmp_path, journeys={"ab": single}, copy_journeys=False)
    _add_many(rt, 3)
    tick(rt, MONDAY)
    assert [(m["template"], m["variant"]) for m in _messages(rt)] == [(GUIDE, None)] * 3


def test_choice_follows_the_weights_and_the_step():
    step = J.SendStep.model_validate({"id": "s", "type": "send", "channel": "email",
                                      "variants": [{"template": "a", "weight": 1},
                                                   {"template": "b", "weight": 3}]})
    picks = Counter(J.choose_variant(step, cid, "j").template  # type: ignore[union-attr]
                    for cid in range(4000))
    assert 900 <= picks["a"] <= 1100
    other = step.model_copy(update={"id": "t"})
    moved = sum(J.choose_variant(step, c, "j") != J.choose_variant(other, c, "j")
                for c in range(1000))
    assert moved > 200  # another step draws afresh: no contact is "always variant a"


# ---- authoring and validate -----------------------------------------------------------


def _read(tmp_path: Path, steps: str) -> list[str]:
    path = tmp_path / "ab.yaml"
    path.write_text("id: ab\nname: AB\npurpose: newsletter\nentry: { when: \"true\" }\n"
                    "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))
    _, problems = read_journey(path)
    return [f"{p.line}: {p.message}" for p in problems]


def test_the_loader_wants_exactly_one_of_template_and_variants(tmp_path):
    both = _read(tmp_path, f"""\
        - id: welcome
          type: send
          channel: email
          template: {GUIDE}
          variants:
            - {{ template: {GUIDE}, weight: 1 }}
            - {{ template: {ARTICLE}, weight: 1 }}
        """)
    assert both == ["6: step 'welcome': a send step needs exactly one of 'template' or "
                    "'variants'"]
    neither = _read(tmp_path, "- { id: welcome, type: send, channel: email }\n")
    assert neither == ["6: step 'welcome': 'template' is required"]
    one = _read(tmp_path, f"""\
        - id: welcome
          type: send
          channel: email
          variants:
            - {{ template: {GUIDE}, weight: 1 }}
        """)
    assert one == ["6: step 'welcome': 'variants' needs two or more templates (for one, "
                   "write 'template')"]


def test_the_loader_refuses_a_weight_that_is_not_above_zero(tmp_path):
    for weight in ("0", "-5", "lots"):
        found = _read(tmp_path, f"""\
            - id: welcome
              type: send
              channel: email
              variants:
                - {{ template: {GUIDE}, weight: 2 }}
                - {{ template: {ARTICLE}, weight: {weight} }}
            """)
        assert len(found) == 1 and found[0].startswith("11: step 'welcome': variants.weight"), found


def test_validate_reports_a_missing_variant_template_at_its_line(tmp_path):
    broken = JOURNEY.replace(f"{{ template: {ARTICLE}, weight: 30 }}",
                             "{ template: cold/welcome-guide-shrot, weight: 30 }")
    config = write_project(tmp_path, "", {"ab": broken})
    problems = [p for p in validate_project(config) if p.path.endswith("ab.yaml")]
    assert [(p.line, p.severity) for p in problems] == [(14, "error")], problems
    assert "cold/welcome-guide-shrot" in problems[0].message
    assert "did you mean 'cold/welcome-guide'?" in problems[0].message
