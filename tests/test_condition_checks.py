"""Conditions that parse but can never hold as meant: vocabulary, attribute names, types."""

from __future__ import annotations

import pytest

from nurture.authoring.condition_checks import attribute_types, check
from nurture.authoring.conditions import parse

ATTRIBUTES = {"company_size": "int", "first_name": "string", "vip": "bool", "zip": "string"}
STAGES = "stages: lead, prospect, sales_accepted, customer, recycled"


def mistakes(source: str, attributes: dict[str, str] | None = ATTRIBUTES) -> list[str]:
    return check(parse(source), attributes)


@pytest.mark.parametrize("source", [
    "stage == 'lead' and temperature in ['warm', 'hot']",
    "stage not in ['customer', 'recycled'] or temperature != 'cold'",
    "'prospect' == stage",
    "score >= 40 and fit > -5 and 40 <= score and score > fit",
    "events.page.viewed.count_7d >= 2",
    "attributes.company_size >= 50 and attributes.company_size in [10, 20]",
    "attributes.first_name matches '(?i)^j' and attributes.first_name contains 'é'",
    "attributes.zip == 75001",  # a digit string meets a number as one: documented
    "attributes.vip == true or attributes.vip == null or not attributes.vip",
    "attributes.first_name == null and attributes.company_size != null",
    "stage contains 'lead'",
])
def test_conditions_that_can_hold_have_no_mistakes(source: str) -> None:
    assert mistakes(source) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("stage == 'leads'", f"unknown stage 'leads' (did you mean 'lead'? {STAGES})"),
    ("stage != 'Prospect'", f"unknown stage 'Prospect' (did you mean 'prospect'? case matters; "
                            f"{STAGES})"),
    ("stage in ['lead', 'custmer']", f"unknown stage 'custmer' (did you mean 'customer'? "
                                     f"{STAGES})"),
    ("'leeds' == stage", f"unknown stage 'leeds' (did you mean 'lead'? {STAGES})"),
    ("stage == 'vip'", f"unknown stage 'vip' ({STAGES})"),
    ("temperature == 'Warm'", "unknown temperature 'Warm' (did you mean 'warm'? case matters; "
                              "temperatures: cold, warm, hot)"),
    ("temperature not in ['HOT']", "unknown temperature 'HOT' (did you mean 'hot'? case "
                                   "matters; temperatures: cold, warm, hot)"),
])
def test_values_are_checked_against_their_vocabulary(source: str, expected: str) -> None:
    assert mistakes(source) == [expected]


def test_stages_have_no_order() -> None:
    assert mistakes("stage > 'lead'") == [
        "stage has no order ('>' compares its names alphabetically): use == or in [...]"]


@pytest.mark.parametrize(("source", "expected"), [
    ("score >= '40'", "score is a number but '40' is text, so this never holds: write 40 "
                      "without quotes"),
    ("'40' <= score", "score is a number but '40' is text, so this never holds: write 40 "
                      "without quotes"),
    ("fit == 'high'", "fit is a number but 'high' is text, so this never holds"),
    ("events.demo.requested.count > true", "events.demo.requested is a number but true is a "
                                           "boolean, so this never holds"),
    ("stage == 5", "stage is text but 5 is a number, so this never holds: write '5' in quotes"),
    ("attributes.company_size in [10, '50']", "attributes.company_size is a number (type "
                                              "int) but '50' is text, so this never holds: "
                                              "write 50 without quotes"),
    ("attributes.vip == 'yes'", "attributes.vip is a boolean (type bool) but 'yes' "
                                "is text, so this never holds"),
    ("score matches '^4'", "'matches' works on text, but score is a number, so this never holds"),
    ("attributes.company_size contains 5", "'contains' works on text, but "
                                           "attributes.company_size is a number (type "
                                           "int), so this never holds"),
    ("score == stage", "score is a number but stage is text: they never compare, so this never "
                       "holds"),
])
def test_types_that_never_compare(source: str, expected: str) -> None:
    assert mistakes(source) == [expected]


def test_attribute_names_are_checked_against_the_declared_ones() -> None:
    assert mistakes("attributes.compnay_size >= 50 and attributes.compnay_size < 500") == [
        "unknown attribute 'compnay_size' (did you mean 'company_size'? known: company_size, "
        "first_name, vip, zip; declare it as [attributes.compnay_size] in config.toml, or set "
        "it with a set step)"]  # once, however often it is read
    assert mistakes("attributes.role == 'cto'", {}) == [
        "unknown attribute 'role' (declare it as [attributes.role] in config.toml, or set it "
        "with a set step)"]
    # no declarations to compare with: names are not checked, the rest still is
    assert mistakes("attributes.anything > 3 and stage == 'leads'", None) == [
        f"unknown stage 'leads' (did you mean 'lead'? {STAGES})"]


def test_every_mistake_of_a_condition_is_listed() -> None:
    assert mistakes("stage == 'leads' or (temperature == 'Warm' and score > '10') "
                    "or attributes.sise > 3") == [
        "unknown attribute 'sise' (known: company_size, first_name, vip, zip; declare it as "
        "[attributes.sise] in config.toml, or set it with a set step)",
        f"unknown stage 'leads' (did you mean 'lead'? {STAGES})",
        "unknown temperature 'Warm' (did you mean 'warm'? case matters; temperatures: cold, "
        "warm, hot)",
        "score is a number but '10' is text, so this never holds: write 10 without quotes",
    ]


def test_attributes_written_by_set_steps_are_known_with_the_type_of_their_value() -> None:
    known = attribute_types({"role": "string"}, [("needs_nudge", True), ("tier", 2),
                                                 ("role", 3), ("note", "x")])
    assert known == {"role": "string", "needs_nudge": "bool", "tier": "float", "note": "string"}
    assert check(parse("attributes.needs_nudge == 'yes'"), known) == [
        "attributes.needs_nudge is a boolean (type bool) but 'yes' is text, so "
        "this never holds"]
