"""The pure scoring rules: filters, caps, decay, bands, fit, qualification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from nurture.config.settings import FitRule, ScoreRule, Scoring, Settings
from nurture.errors import ConfigError
from nurture.scoring import checks
from nurture.scoring import rules as scoring
from nurture.views import ContactView

DAY = timedelta(days=1)


def contact(**values: Any) -> ContactView:
    base: dict[str, Any] = {"id": 1, "email": "a@example.com", "phone": None, "locale": "en",
                            "timezone": "Europe/Paris", "country": "FR", "stage": "lead",
                            "temperature": "cold", "score": 0.0, "fit": 0.0}
    base.update(values)
    return ContactView(**base)


def _problems(**sections: Any) -> list[tuple[Any, str]]:
    return checks.config_problems(Settings.model_validate({"root": ".", **sections}))


def test_config_refuses_bad_rules_at_load() -> None:
    [(where, message)] = _problems(scoring={"rules": [
        {"name": "r", "event": "page.viewed", "points": 1, "where": {"seconds": ">=lots"}}]})
    assert where == ("scoring", "rules", 0, "where", "seconds") and "where.seconds" in message
    [(where, message)] = _problems(scoring={"rules": [
        {"name": "decay", "event": "page.viewed", "points": 1}]})
    assert where == ("scoring", "rules", 0, "name") and "engine uses" in message
    [(where, message)] = _problems(scoring={"fit": [
        {"name": "f", "when": "attrs.role == 'x'", "points": 1}]})
    assert where == ("scoring", "fit", 0, "when") and "unknown field" in message
    with pytest.raises(ConfigError, match="where.seconds"):
        checks.check(Settings.model_validate({"root": ".", "scoring": {"rules": [
            {"name": "r", "event": "page.viewed", "points": 1, "where": {"seconds": ">x"}}]}}))
    with pytest.raises(ValidationError, match="unique"):
        Scoring(rules=[ScoreRule(name="r", event="a.b", points=1),
                       ScoreRule(name="r", event="x.y", points=1)])
    with pytest.raises(ValidationError, match="hot_at"):
        Scoring(warm_at=50, hot_at=40)
    [(where, message)] = _problems(replies={"points": {"delighted": 5}})
    assert where == ("replies", "points") and "unknown intent" in message
    [(where, message)] = _problems(replies={"rules": [{"intent": "positive",
                                                       "patterns": ["(oui"]}]})
    assert where == ("replies", "rules") and "does not compile" in message


PRICING = ScoreRule(name="pricing", event="page.viewed", points=20, cap=2, cap_window="7d",
                    where={"url": "~/pricing", "seconds": ">=30"})
VIEW = ScoreRule(name="view", event="page.viewed", points=3)


def test_every_filter_must_hold_and_every_matching_rule_applies() -> None:
    rules = [PRICING, VIEW]
    both = scoring.matching_rules(rules, "page.viewed", {"url": "/pricing", "seconds": 45})
    assert [r.name for r in both] == ["pricing", "view"]
    short = scoring.matching_rules(rules, "page.viewed", {"url": "/pricing", "seconds": 5})
    assert [r.name for r in short] == ["view"]
    assert scoring.matching_rules(rules, "email.opened", {"url": "/pricing"}) == []


def test_caps_count_previous_hits() -> None:
    props = {"url": "/pricing", "seconds": 45}
    first = scoring.award_for(PRICING, "page.viewed", props, previous_hits=0)
    assert first == scoring.Award("pricing", 20, "page.viewed (url='/pricing', seconds=45); "
                                  "hit 1 of 2 per 7d")
    assert scoring.award_for(PRICING, "page.viewed", props, previous_hits=1) is not None
    assert scoring.award_for(PRICING, "page.viewed", props, previous_hits=2) is None
    assert scoring.award_for(VIEW, "page.viewed", props, previous_hits=99) is not None
    assert scoring.cap_window(PRICING) == 7 * DAY


def test_reply_points_come_from_the_intent() -> None:
    award = scoring.reply_award("positive", "Oui,   intéressée !", {"positive": 15})
    assert award == scoring.Award("reply:positive", 15, "reply 'Oui, intéressée !' reads as "
                                  "positive")
    assert scoring.reply_award("opt_out", "STOP", {"opt_out": 0}) is None


def test_decay_halves_every_half_life_toward_zero() -> None:
    assert scoring.decayed(80, 30 * DAY, 30 * DAY) == 40
    assert scoring.decayed(80, 60 * DAY, 30 * DAY) == 20
    assert scoring.decayed(-40, 30 * DAY, 30 * DAY) == -20
    assert scoring.decayed(80, 15 * DAY, 30 * DAY) == pytest.approx(56.57, abs=0.01)
    assert scoring.decayed(0.9, 30 * DAY, 30 * DAY) == 0  # settles instead of halving forever
    assert scoring.decayed(80, 30 * DAY, None) == 80
    assert scoring.decayed(80, timedelta(0), 30 * DAY) == 80
    award = scoring.decay_award(80, 30 * DAY, Scoring(half_life="30d"))
    assert award is not None and award.rule == "decay" and award.points == -40
    assert "half-life 30d" in award.reason and "30 day(s)" in award.reason
    assert scoring.decay_award(80, 30 * DAY, Scoring(half_life=None)) is None


@pytest.mark.parametrize(("score", "band"), [(-5, "cold"), (19.99, "cold"), (20, "warm"),
                                             (59, "warm"), (60, "hot"), (500, "hot")])
def test_temperature_bands(score: float, band: str) -> None:
    verdict = scoring.temperature_for(score, Scoring(warm_at=20, hot_at=60))
    assert verdict.value == band and verdict.rule == "bands"
    assert f"{score:g}" in verdict.reason


FIT = [FitRule(name="decision-maker", when="attributes.role matches '(?i)head|director'",
               points=30),
       FitRule(name="size", when="attributes.company_size >= 50", points=30),
       FitRule(name="tiny", when="attributes.company_size < 10", points=-30)]


def test_fit_sums_the_rules_that_hold_over_attributes() -> None:
    fit = scoring.fit_for(FIT, contact(attributes={"role": "Head of Ops", "company_size": "120"}))
    assert fit.points == 60
    assert fit.reason == "decision-maker +30, size +30"
    tiny = scoring.fit_for(FIT, contact(attributes={"company_size": 3}))
    assert (tiny.points, tiny.reason) == (-30, "tiny -30")
    assert scoring.fit_for(FIT, contact()).reason == "no fit rule holds"


def test_the_rule_index_matches_as_the_rules() -> None:
    rules = [PRICING, VIEW, ScoreRule(name="open", event="email.opened", points=2),
             ScoreRule(name="long", event="page.viewed", points=1, where={"seconds": ">=30"})]
    index = scoring.RuleIndex(rules)
    for kind, properties in [("page.viewed", {"url": "/pricing", "seconds": 45}),
                             ("page.viewed", {"url": "/pricing", "seconds": "5"}),
                             ("page.viewed", {}), ("email.opened", {"url": "/pricing"}),
                             ("email.clicked", {})]:
        assert index.matching(kind, properties) == scoring.matching_rules(rules, kind,
                                                                          properties)


def test_fits_are_remembered_by_what_the_rules_read() -> None:
    rules = [*FIT, FitRule(name="vip", when="attributes.vip == true", points=10)]
    fits = scoring.FitRules(rules)
    assert fits.by_profile
    profiles = [{"role": "Head of Ops", "company_size": 120}, {"role": "Intern"},
                {"role": "Head of Ops", "company_size": 120, "vip": True},
                {"role": "Head of Ops", "company_size": 120, "vip": 1},  # not `true`
                {"company_size": 120.0}, {"company_size": "120"}, {"company_size": [3]},
                {"role": "Head of Ops", "company_size": 120, "first_name": "Ann"}]
    for _ in range(2):  # computed, then remembered
        for attributes in profiles:
            assert fits(contact(attributes=attributes)) == scoring.fit_for(
                rules, contact(attributes=attributes)), attributes
    assert len(fits.known) == 6  # first_name is not read; a list is no key
    by_score = scoring.FitRules([FitRule(name="engaged", when="score > 10", points=5)])
    assert not by_score.by_profile
    assert [by_score(contact(score=s)).points for s in (5, 20, 5)] == [0, 5, 0]


CONFIG = Scoring(qualify_at=100, fit_threshold=50, demote_prospects_below=None)
DEMO = scoring.Signal("strong", "demo.requested")


def stage_after(stage: str, score: float, fit: float, previous: float = 0,
                signal: scoring.Signal | None = None, config: Scoring = CONFIG) -> str | None:
    verdict = scoring.next_stage(stage, score=score, previous_score=previous, fit=fit,
                                 scoring=config, signal=signal)
    return verdict.value if verdict else None


def test_qualification() -> None:
    assert stage_after("lead", 100, 60) == "prospect"
    assert stage_after("lead", 99, 60) is None
    assert stage_after("lead", 400, 10) is None  # engaged but not fitting: stays a lead
    assert stage_after("lead", 0, -30, signal=DEMO) == "prospect"  # strong: fit not required
    assert stage_after("recycled", 120, 60, previous=110) is None  # needs new evidence
    assert stage_after("recycled", 120, 60, previous=90) == "prospect"
    assert stage_after("recycled", 10, 0, signal=DEMO) == "prospect"
    assert stage_after("sales_accepted", 500, 90, signal=DEMO) is None
    assert stage_after("prospect", 0, 0) is None  # not demoted unless configured
    demoting = CONFIG.model_copy(update={"demote_prospects_below": 30})
    assert stage_after("prospect", 29, 60, config=demoting) == "lead"
    assert stage_after("prospect", 31, 60, config=demoting) is None
    buy = scoring.Signal("customer", "purchase.completed")
    for stage in ("lead", "prospect", "sales_accepted", "recycled"):
        assert stage_after(stage, 0, 0, signal=buy) == "customer"
    assert stage_after("customer", 0, 0, signal=DEMO) is None


def test_signals() -> None:
    config = Scoring()
    assert scoring.signal_for(config, "demo.requested") == DEMO
    assert scoring.signal_for(config, "purchase.completed") == scoring.Signal(
        "customer", "purchase.completed")
    assert scoring.signal_for(config, "reply.received", "meeting_request") == scoring.Signal(
        "strong", "reply meeting_request")
    assert scoring.signal_for(config, "reply.received", "positive") is None
    assert scoring.signal_for(config, "page.viewed") is None


def test_assess_explains_each_change_in_order() -> None:
    config = Scoring(fit=FIT, qualify_at=100, fit_threshold=50, warm_at=20, hot_at=60)
    lead = contact(attributes={"role": "Director", "company_size": 200})
    changes = scoring.assess(lead, config, [scoring.Award("pricing", 70, "page.viewed"),
                                            scoring.Award("download", 35, "ebook")])
    assert [(c.field, c.old, c.new, c.rule) for c in changes] == [
        ("score", 0, 70, "pricing"), ("score", 70, 105, "download"),
        ("fit", 0, 60, "decision-maker,size"), ("temperature", "cold", "hot", "bands"),
        ("stage", "lead", "prospect", "qualification")]
    assert changes[-1].reason == ("score 105 ≥ qualify_at 100 and fit 60 ≥ fit_threshold 50")
    assert (lead.score, lead.fit, lead.temperature, lead.stage) == (105, 60, "hot", "prospect")
    assert scoring.assess(lead, config) == []  # nothing new: nothing to record
