"""The published JSON Schema (`nurture schema`) agrees with the loader, so editors can trust it."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from nurture.authoring.journey import STEP_KINDS, Journey
from nurture.authoring.loader import load_journeys, read_journey
from nurture.authoring.schema import SCHEMA_ID, journey_schema
from nurture.cli.main import app

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "journeys").glob("*.yaml"))
PURPOSES = {"newsletter", "marketing", "sales", "transactional"}
#: one journey using every step kind and every journey-level key
EVERYTHING = textwrap.dedent("""\
    id: everything
    name: Every step kind
    description: A journey that uses the whole language.
    purpose: newsletter
    entry:
      when: "stage == 'lead' and temperature in ['warm', 'hot']"
      event: content.downloaded
    reentry: 30d
    exit_when: "stage == 'customer'"
    goal: "events.trial.started.count_30d >= 1"
    send_window:
      email: {days: [tue, wed, thu], start: "09:00", end: "17:00", skip_holidays: true}
      sms: {start: "10:00", end: "18:00"}
    stop_on_reply: false
    exclusive: false
    priority: 5
    migrate:
      old-welcome: welcome
    steps:
      - {id: welcome, type: send, channel: email, template: cold/welcome-guide, note: hello}
      - {id: pause, type: wait, duration: 3d}
      - {id: tuesday, type: wait, until: {days: [tue], time: "10:00"}}
      - id: wait-download
        type: wait_for
        event: content.downloaded
        timeout: 7d
        on_event: check
        on_timeout: text
      - {id: text, type: send, channel: sms, template: hot/trial-reminder, purpose: marketing}
      - {id: done, type: exit, reason: finished}
      - id: check
        type: branch
        cases:
          - {if: "score >= 40", goto: to-sales}
          - {if: "attributes.company_size >= 50", goto: tag}
        else: again
      - {id: tag, type: set, attribute: big_company, value: true, score: 5, reason: size}
      - {id: again, type: goto, target: pause}
      - {id: to-sales, type: handoff, reason: qualified, notify: false}
      - {id: upgrade, type: move_to, journey: prospect-sales}
    """)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """What `nurture schema` prints, as an editor would read it."""
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(validator: Draft202012Validator, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_the_cli_prints_the_published_schema(schema: dict[str, Any]) -> None:
    assert schema == json.loads(json.dumps(journey_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] == "nurture journey"  # not pydantic's "Journey"
    assert set(schema["required"]) == {"id", "name", "purpose", "entry", "steps"}


def test_every_step_kind_is_in_the_schema(schema: dict[str, Any]) -> None:
    kinds = {d["properties"]["type"]["const"] for d in schema["$defs"].values()
             if "type" in d.get("properties", {})}
    assert kinds == set(STEP_KINDS)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_journeys_round_trip(validator: Draft202012Validator, path: Path) -> None:
    """load → model → the schema validates the YAML, and the model dumps back to it."""
    loaded, problems = read_journey(path)
    assert problems == [] and loaded is not None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert errors(validator, data) == []
    dumped = loaded.journey.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == data
    assert errors(validator, dumped) == []
    assert Journey.model_validate(dumped, by_alias=True, by_name=False) == loaded.journey


def test_a_journey_using_the_whole_language_round_trips(validator: Draft202012Validator,
                                                        tmp_path: Path) -> None:
    (tmp_path / "everything.yaml").write_text(EVERYTHING, encoding="utf-8")
    (tmp_path / "prospect-sales.yaml").write_text((REPO / "journeys" / "prospect-sales.yaml")
                                                  .read_text(encoding="utf-8"))
    loaded, problems = load_journeys(tmp_path, PURPOSES)
    assert problems == []
    journey = next(j for j in loaded if j.id == "everything").journey
    data = yaml.safe_load(EVERYTHING)
    assert errors(validator, data) == []
    full = journey.model_dump(mode="json", by_alias=True)  # defaults included
    assert errors(validator, full) == []
    assert Journey.model_validate(full, by_alias=True, by_name=False) == journey


def shipped() -> dict[str, Any]:
    return yaml.safe_load((REPO / "journeys" / "cold-education.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["steps"][0].update(type="snooze"), "is not valid under any of the given"),
        (lambda d: d["steps"][0].update(subject="Your guide"),
         "is not valid under any of the given"),
        (lambda d: d.update(colour="blue"), "Additional properties are not allowed ('colour'"),
        (lambda d: d["entry"].update(segment="vip"),
         "Additional properties are not allowed ('segment'"),
        (lambda d: d["steps"][1].update(duration="3 days"), "is not valid under any of the given"),
        (lambda d: d["steps"][0].update(channel="fax"), "is not valid under any of the given"),
        (lambda d: d.update(id="Cold Education"), "does not match"),
        (lambda d: d.pop("purpose"), "'purpose' is a required property"),
        (lambda d: d.update(steps=[]), "should be non-empty"),
    ],
    ids=["unknown-step-type", "unknown-step-key", "unknown-key", "unknown-entry-key",
         "bad-duration", "bad-channel", "bad-id", "missing-purpose", "no-steps"],
)
def test_the_schema_rejects_what_the_loader_rejects(validator: Draft202012Validator,
                                                    tmp_path: Path, change: Any,
                                                    fragment: str) -> None:
    """An editor flags what `nurture validate` would: same mistakes, both refuse them."""
    data = copy.deepcopy(shipped())
    change(data)
    found = errors(validator, data)
    assert found and any(fragment in message for message in found), found
    (tmp_path / "cold-education.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    loaded, problems = read_journey(tmp_path / "cold-education.yaml")
    assert loaded is None and problems


def test_the_unknown_step_is_pinned_down_to_its_type(validator: Draft202012Validator) -> None:
    """The best match points at the step's `type`, so editors underline the right word."""
    data = copy.deepcopy(shipped())
    data["steps"][2]["type"] = "snooze"
    (error,) = validator.iter_errors(data)
    assert list(error.absolute_path) == ["steps", 2]
    contexts = [list(e.absolute_path) for e in error.context or []]
    assert ["steps", 2, "type"] in contexts


def test_branch_keys_are_if_and_else_in_the_schema(schema: dict[str, Any]) -> None:
    assert set(schema["$defs"]["BranchCase"]["properties"]) == {"if", "goto"}
    assert "else" in schema["$defs"]["BranchStep"]["properties"]
    assert "otherwise" not in schema["$defs"]["BranchStep"]["properties"]
