from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

import pytest

from nurture.authoring.conditions import (
    MAX_DEPTH,
    Compare,
    Condition,
    ConditionContext,
    Constant,
    CoreField,
    SimpleContext,
    parse,
)
from nurture.errors import ConditionError

DAY = timedelta(days=1)


def holds(source: str, **context: Any) -> bool:
    return parse(source).evaluate(SimpleContext(**context))


def attrs(**attributes: Any) -> dict[str, Any]:
    return {"attributes": attributes}


# --- comparison operators ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("score == 40", True),
        ("score == 41", False),
        ("score != 41", True),
        ("score != 40", False),
        ("score < 41", True),
        ("score < 40", False),
        ("score <= 40", True),
        ("score <= 39.5", False),
        ("score > 39.5", True),
        ("score > 40", False),
        ("score >= 40", True),
        ("score >= 40.01", False),
        ("fit >= -5", True),
        ("fit > -4", False),
        ("40 == score", True),
        ("stage == 'prospect'", True),
        ('stage == "prospect"', True),
        ("stage == 'Prospect'", False),
        ("stage != 'lead'", True),
        ("temperature == 'hot'", True),
        ("temperature < 'warm'", True),
    ],
)
def test_comparison_operators(source: str, expected: bool) -> None:
    ctx = SimpleContext(score=40, fit=-5, stage="prospect", temperature="hot")
    assert parse(source).evaluate(ctx) is expected


def test_int_and_float_compare_as_numbers() -> None:
    assert holds("score == 40.0", score=40)
    assert holds("fit == 2", fit=2.0)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stage in ['lead', 'recycled']", True),
        ("stage in ['prospect']", False),
        ("stage in []", False),
        ("stage not in ['prospect', 'customer']", True),
        ("stage not in ['lead']", False),
        ("score in [1, 2, 40]", True),
        ("score in ['40']", False),
        ("not stage in ['lead']", False),
        ("stage in ['lead',]", True),
    ],
)
def test_in_and_not_in(source: str, expected: bool) -> None:
    assert holds(source, stage="lead", score=40) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("attributes.title contains 'VP'", True),
        ("attributes.title contains 'vp'", False),
        ("attributes.tags contains 'saas'", True),
        ("attributes.tags contains 'retail'", False),
        ("attributes.sizes contains 50", True),
        ("attributes.sizes contains '50'", False),
        ("['a', 'b'] contains 'b'", True),
        ("attributes.title contains 5", False),
        ("attributes.missing contains 'x'", False),
        ("attributes.count contains 1", False),
    ],
)
def test_contains(source: str, expected: bool) -> None:
    context = attrs(title="VP Marketing", tags=["saas", "b2b"], sizes=[10, 50], count=1)
    assert holds(source, **context) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("attributes.email matches '@acme\\.com$'", True),
        ("attributes.email matches '^jo'", True),
        ("attributes.email matches '^acme'", False),
        ("attributes.title matches '(?i)^vp'", True),
        ("attributes.title matches '^vp'", False),
        (r"attributes.phone matches '^\+33\d{9}$'", True),
        (r"attributes.phone matches '^\\+33'", True),
        ("attributes.missing matches '.*'", False),
        ("attributes.number matches '4'", False),
        ('attributes.email matches "it\'s"', False),
    ],
)
def test_matches(source: str, expected: bool) -> None:
    context = attrs(email="jo@acme.com", title="VP Sales", phone="+33612345678", number=42)
    assert holds(source, **context) is expected


def test_matches_compiles_the_regex_once_at_parse_time() -> None:
    condition = parse("attributes.role matches '^cto$'")
    assert isinstance(condition.root, Compare)
    assert isinstance(condition.root.right, Constant)
    assert condition.root.right.value == re.compile("^cto$")


def test_strings_unescape_only_quotes_and_backslashes() -> None:
    assert holds(r"attributes.name == 'O\'Brien'", **attrs(name="O'Brien"))
    assert holds(r'attributes.quote == "say \"hi\""', **attrs(quote='say "hi"'))
    assert holds(r"attributes.path == 'a\\b'", **attrs(path="a\\b"))
    assert holds(r"attributes.path == 'a\b'", **attrs(path="a\\b"))


def test_literals() -> None:
    assert holds("attributes.vip == true", **attrs(vip=True))
    assert holds("attributes.vip == false", **attrs(vip=False))
    assert not holds("attributes.vip == true", **attrs(vip=1))
    assert not holds("attributes.n == 1", **attrs(n=True))
    assert holds("attributes.plan == null")
    assert not holds("attributes.plan == null", **attrs(plan="free"))
    assert holds("attributes.plan != null", **attrs(plan="free"))
    assert holds("attributes.tags == ['a', 'b']", **attrs(tags=["a", "b"]))
    assert not holds("attributes.tags == ['a']", **attrs(tags=["a", "b"]))
    assert holds("true")
    assert not holds("false or null")


# --- boolean logic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true and false", False),
        ("true and true", True),
        ("false or true", True),
        ("false or false", False),
        ("not false", True),
        ("not not true", True),
        # and binds tighter than or
        ("true or true and false", True),
        ("(true or true) and false", False),
        ("false and false or true", True),
        ("false and (false or true)", False),
        # not binds tighter than and / or
        ("not true or true", True),
        ("not (true or true)", False),
        ("not false and false", False),
        ("not (false and false)", True),
        # not covers the whole comparison that follows
        ("not score > 50", True),
        ("not score > 5", False),
        ("((score > 5))", True),
    ],
)
def test_precedence_and_parentheses(source: str, expected: bool) -> None:
    assert holds(source, score=10) is expected


def test_and_or_short_circuit_over_many_terms() -> None:
    assert holds(" and ".join(["score > 1"] * 100), score=2)
    assert holds(" or ".join(["score > 5"] * 100 + ["score > 1"]), score=2)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("attributes.vip", attrs(vip=True), True),
        ("attributes.vip", attrs(vip=False), False),
        ("attributes.vip", {}, False),
        ("attributes.company", attrs(company=""), False),
        ("attributes.company", attrs(company="Acme"), True),
        ("attributes.tags", attrs(tags=[]), False),
        ("score", {"score": 0}, False),
        ("score and fit", {"score": 3, "fit": 1}, True),
        ("not attributes.vip", {}, True),
        ("events.reply.received.count", {}, False),
    ],
)
def test_bare_values_are_truth_tested(source: str, context: dict[str, Any], expected: bool) -> None:
    assert holds(source, **context) is expected


# --- null, missing and mismatched types -------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "attributes.size > 50",
        "attributes.size >= 50",
        "attributes.size < 50",
        "attributes.size <= 50",
        "attributes.size == 50",
        "attributes.size in [50]",
        "attributes.size contains 'z'",
        "attributes.size matches 'z'",
    ],
)
@pytest.mark.parametrize("size", [None, "abc", "", [50], {"a": 1}, True])
def test_null_missing_and_mismatched_types_are_false(source: str, size: Any) -> None:
    context = attrs() if size is None else attrs(size=size)
    assert holds(source, **context) is False


@pytest.mark.parametrize(
    "source",
    ["stage > 5", "score > 'a'", "score == '40'", "'40' == score", "null < 1", "score > null"],
)
def test_literal_strings_are_never_coerced(source: str) -> None:
    assert holds(source, score=40) is False


def test_not_equal_and_not_in_are_the_negations() -> None:
    assert holds("attributes.plan != 'free'")
    assert holds("attributes.plan not in ['free', 'trial']")
    assert holds("attributes.size != 50", **attrs(size="abc"))


# --- digit strings from CSV imports -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("attributes.employees > 50", "120", True),
        ("attributes.employees > 50", "20", False),
        ("attributes.employees >= 120", "120", True),
        ("attributes.employees == 120", "120", True),
        ("attributes.employees != 120", "120", False),
        ("attributes.employees < 0", "-3", True),
        ("attributes.employees == 2.5", "2.5", True),
        ("attributes.employees in [100, 120]", "120", True),
        ("attributes.employees not in [100, 120]", "120", False),
        ("attributes.employees in ['120']", "120", True),
        ("attributes.employees < score", "9", True),
        ("score > attributes.employees", "9", True),
        ("attributes.employees > 50", "120 ", False),
        ("attributes.employees > 50", "1e3", False),
        ("attributes.employees == '120'", "120", True),
        # both sides strings: compared as strings, no coercion
        ("attributes.employees > '50'", "120", False),
        ("attributes.employees contains 2", "120", False),
    ],
)
def test_digit_string_attributes_compare_with_numbers(
    source: str, value: str, expected: bool
) -> None:
    assert holds(source, score=10, **attrs(employees=value)) is expected


# --- events -----------------------------------------------------------------------------


def test_event_counts_with_and_without_window() -> None:
    ctx = SimpleContext(
        event_counts={
            ("page.viewed", None): 12,
            ("page.viewed", timedelta(days=7)): 3,
            ("demo.requested", timedelta(hours=12)): 1,
            ("x.webinar.attended", timedelta(days=14)): 2,
        }
    )
    assert parse("events.page.viewed.count == 12").evaluate(ctx)
    assert parse("events.page.viewed.count_7d >= 3").evaluate(ctx)
    assert not parse("events.page.viewed.count_7d > 3").evaluate(ctx)
    assert parse("events.page.viewed.count_30d == 0").evaluate(ctx)
    assert parse("events.demo.requested.count_12h > 0").evaluate(ctx)
    assert parse("events.x.webinar.attended.count_14d == 2").evaluate(ctx)
    assert parse("not events.email.opened.count").evaluate(ctx)


def test_event_count_is_asked_with_type_and_window() -> None:
    asked: list[tuple[str, timedelta | None]] = []

    class Recording(SimpleContext):
        def event_count(self, event_type: str, within: timedelta | None) -> int:
            asked.append((event_type, within))
            return 1

    parse("events.x.custom.thing.count_2w > 0 or events.reply.received.count").evaluate(Recording())
    assert asked == [("x.custom.thing", timedelta(weeks=2))]


def test_fields_and_event_windows() -> None:
    condition = parse(
        "score > 10 and attributes.role == 'cto' and (events.page.viewed.count_7d > 2"
        " or events.page.viewed.count > 10 or events.x.webinar.attended.count_14d >= 1)"
        " and stage not in ['customer'] and attributes.email matches '@acme'"
    )
    assert condition.fields() == {
        "score",
        "stage",
        "attributes.role",
        "attributes.email",
        "events.page.viewed",
        "events.x.webinar.attended",
    }
    assert condition.event_windows() == {
        ("page.viewed", timedelta(days=7)),
        ("page.viewed", None),
        ("x.webinar.attended", timedelta(days=14)),
    }
    assert parse("true").fields() == frozenset()
    assert parse("score > 1").event_windows() == frozenset()


# --- the API ----------------------------------------------------------------------------


def test_parse_is_cached_and_conditions_are_immutable() -> None:
    condition = parse("stage == 'lead'")
    assert parse("stage == 'lead'") is condition
    assert condition.source == "stage == 'lead'"
    assert condition.root == Compare("==", CoreField("stage"), Constant("lead"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        condition.root.op = "!="  # type: ignore[misc, union-attr]
    assert isinstance(condition, Condition)


def test_evaluate_returns_a_bool() -> None:
    assert (
        parse("attributes.company").evaluate(SimpleContext(attributes={"company": "Acme"})) is True
    )
    assert parse("score").evaluate(SimpleContext(score=3)) is True


def test_any_object_with_the_fields_is_a_context() -> None:
    @dataclasses.dataclass
    class Contact:
        score: float = 80
        fit: float = 10
        stage: str = "lead"
        temperature: str = "hot"
        attributes: dict[str, Any] = dataclasses.field(default_factory=dict)

        def event_count(self, event_type: str, within: timedelta | None) -> int:
            return 5 if event_type == "page.viewed" else 0

    ctx: ConditionContext = Contact()
    assert parse(
        "score >= 80 and temperature == 'hot' and events.page.viewed.count_1d == 5"
    ).evaluate(ctx)


def test_attribute_names_are_only_keys_never_python_attributes() -> None:
    for name in ("__class__", "__dict__", "get", "items", "__init__.__globals__"):
        assert parse(f"attributes.{name} == null").evaluate(SimpleContext())
    assert parse("attributes.__class__ == 'x'").evaluate(
        SimpleContext(attributes={"__class__": "x"})
    )
    assert parse("attributes.company-size > 10").evaluate(
        SimpleContext(attributes={"company-size": 50})
    )
    assert parse("attributes.address.city == 'Lyon'").evaluate(
        SimpleContext(attributes={"address.city": "Lyon"})
    )


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty condition"),
        ("   ", "empty condition"),
        (
            "scroe > 10",
            "unknown field 'scroe' at column 1 in \"scroe > 10\": did you mean 'score'?",
        ),
        ("stage == 'lead' and tempreature == 'hot'", "unknown field 'tempreature' at column 21"),
        ("country == 'FR'", "known fields: score, fit, stage, temperature, attributes.<name>"),
        ("attributes == 1", "unknown field 'attributes' at column 1"),
        ("stage == 'lead", "unclosed string at column 10"),
        ("stage == \"lead'", "unclosed string at column 10"),
        ("score = 10", "unexpected '=' at column 7 in \"score = 10\": use '==' to compare"),
        ("score > 1 && fit > 1", "unexpected '&' at column 11"),
        ("score >", 'unexpected end of expression at column 8 in "score >": expected a value'),
        ("score > and", "unexpected 'and' at column 9 in \"score > and\": expected a value"),
        ("score > 1 fit > 1", "unexpected 'fit' at column 11"),
        ("score > 1)", "unexpected ')' at column 10"),
        ("(score > 1", "unexpected end of expression at column 11 in \"(score > 1\": expected ')'"),
        ("()", "unexpected ')' at column 2"),
        ("1 < score < 5", "unexpected '<' at column 11 in \"1 < score < 5\": comparisons cannot"),
        ("stage in 'lead'", "unexpected string 'lead' at column 10"),
        ("stage in ['a' 'b']", "expected ',' or ']'"),
        ("stage in [stage]", "unexpected 'stage' at column 11"),
        ("stage not 'lead'", "unexpected 'not' at column 7"),
        ("__import__('os')", "unknown field '__import__' at column 1"),
        ("__import__('os').system('ls')", "unknown field '__import__' at column 1"),
        ("score.__class__ == 1", "unknown field 'score.__class__' at column 1"),
        ("lambda: 1", "unknown field 'lambda' at column 1"),
        ("score > 1 or os.system('ls')", "unknown field 'os.system' at column 14"),
        ("score > 1 or $", "unexpected '$' at column 14"),
        ("attributes.x matches '('", "invalid regex '(' (missing ), unterminated subpattern"),
        ("attributes.x matches attributes.y", "'matches' needs a regex in quotes"),
        ("events.page.viewed.count_7x > 1", "bad duration '7x' in 'events.page.viewed.count_7x'"),
        ("events.page.viewed.count_ > 1", "bad duration '' in"),
        ("events.page.viewed > 1", "bad event field 'events.page.viewed' at column 1"),
        ("events.count > 1", "bad event field 'events.count'"),
        ("score > 1 AND fit > 1", "unexpected 'AND' at column 11"),
        ("True", "unknown field 'True'"),
        ("score > 1 $", "unexpected '$' at column 11"),
        ("score > 1e3", "unexpected 'e3' at column 10"),
    ],
)
def test_bad_conditions_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(source)
    assert message in str(caught.value)


def test_nesting_is_limited() -> None:
    deep_enough = "(" * MAX_DEPTH + "score > 1" + ")" * MAX_DEPTH
    assert parse(deep_enough).evaluate(SimpleContext(score=2))
    with pytest.raises(ConditionError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse("(" * (MAX_DEPTH + 1) + "score > 1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ConditionError, match="nested deeper"):
        parse("not " * (MAX_DEPTH + 1) + "true")
    with pytest.raises(ConditionError, match="nested deeper"):
        parse("(not " * 26 + "true" + ")" * 26)


def test_length_is_limited() -> None:
    long_but_fine = " or ".join(["score > 1"] * 150)
    assert len(long_but_fine) <= 2000
    parse(long_but_fine)
    with pytest.raises(ConditionError, match="2001 characters long"):
        parse("score > 1 " + " " * 1991)


def test_non_text_is_refused() -> None:
    with pytest.raises(ConditionError, match="must be text"):
        parse(5)  # type: ignore[arg-type]
