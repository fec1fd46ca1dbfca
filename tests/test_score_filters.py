"""The filter syntax of score rules (`where`)."""

from __future__ import annotations

from typing import Any

import pytest

from nurture.scoring.filters import parse_filter, predicate

FILTERS = [
    # spec, property present, value, holds
    ("/pricing", True, "/pricing", True),
    ("/pricing", True, "/Pricing", False),
    ("/pricing", False, None, False),
    (30, True, 30, True),
    (30, True, "30", True),
    (30, True, 30.0, True),
    (30, True, True, False),
    (True, True, True, True),
    (True, True, 1, False),
    (False, True, False, True),
    ("~/(pricing|tarifs)", True, "https://acme.example/fr/tarifs?x=1", True),
    ("~/(pricing|tarifs)", True, "/features", False),
    ("~(?i)^/PRICING", True, "/pricing", True),
    ("~^4", True, 42, True),
    ("~x", False, None, False),
    (">=30", True, 30, True),
    (">=30", True, 29.9, False),
    (">=30", True, "45", True),
    (">=30", True, "forty", False),
    (">=30", True, True, False),
    (">=30", False, None, False),
    (">30", True, 30, False),
    ("<10", True, 9, True),
    ("<=-1.5", True, -2, True),
    ("!=demo", True, "webinar", True),
    ("!=demo", True, "demo", False),
    ("!=demo", False, None, True),
    ("!=30", True, "30", False),
    ("*", True, None, True),
    ("*", False, None, False),
    ("=~literal", True, "~literal", True),
    ("=*", True, "*", True),
]


@pytest.mark.parametrize(("spec", "present", "value", "holds"), FILTERS)
def test_filters(spec: Any, present: bool, value: Any, holds: bool) -> None:
    assert parse_filter(spec).holds(present, value) is holds


@pytest.mark.parametrize(("spec", "present", "value", "holds"), FILTERS)
def test_predicates_hold_as_the_filters(spec: Any, present: bool, value: Any,
                                            holds: bool) -> None:
    properties = {"key": value} if present else {"other": value}
    assert predicate("key", spec)(properties) is holds


@pytest.mark.parametrize("spec", [">=abc", ">= 3 days", "<", "~(unclosed"])
def test_bad_filters_say_why(spec: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_filter(spec)
    assert str(caught.value).startswith(repr(spec))


def test_booleans_and_numbers_are_different_filters() -> None:
    assert parse_filter(1).holds(True, 1) and not parse_filter(True).holds(True, 1)
    assert parse_filter(True).holds(True, True) and not parse_filter(1).holds(True, True)
