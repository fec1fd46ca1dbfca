"""The journey model and its pure graph helpers: successors, reachable, loops_without_wait."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nurture.authoring.journey import (
    STEP_KINDS,
    BranchStep,
    Journey,
    Step,
    jump_targets,
    loops_without_wait,
    named_targets,
    next_in_order,
    purposes_used,
    reachable,
    send_steps,
    step_map,
    successors,
)


def journey(*steps: dict[str, Any], **fields: Any) -> Journey:
    data: dict[str, Any] = {"id": "j", "name": "J", "purpose": "newsletter",
                            "entry": {"event": "content.downloaded"}, "steps": list(steps)}
    return Journey.model_validate({**data, **fields})


def send(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": "email", "template": "t", **extra}


def wait(step_id: str, duration: str = "1d") -> dict[str, Any]:
    return {"id": step_id, "type": "wait", "duration": duration}


def goto(step_id: str, target: str) -> dict[str, Any]:
    return {"id": step_id, "type": "goto", "target": target}


def branch(step_id: str, *targets: str, otherwise: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"id": step_id, "type": "branch",
                            "cases": [{"if": "score > 10", "goto": t} for t in targets]}
    if otherwise:
        step["else"] = otherwise
    return step


def wait_for(step_id: str, timeout: str = "2d", **outcomes: str) -> dict[str, Any]:
    return {"id": step_id, "type": "wait_for", "event": "email.clicked", "timeout": timeout,
            **outcomes}


def follows(j: Journey, step_id: str) -> list[str]:
    return successors(j, step_map(j)[step_id])


# --- successors ------------------------------------------------------------------------


def test_plain_steps_are_followed_by_the_next_in_file_order() -> None:
    j = journey(send("a"), wait("b"), {"id": "c", "type": "set", "score": 5},
                {"id": "d", "type": "handoff"})
    assert follows(j, "a") == ["b"]
    assert follows(j, "b") == ["c"]
    assert follows(j, "c") == ["d"]
    assert follows(j, "d") == []  # past the last step: the enrollment completes
    assert next_in_order(j, "d") is None


def test_goto_exit_and_move_to_do_not_fall_through() -> None:
    j = journey(goto("a", "c"), {"id": "b", "type": "exit"},
                {"id": "c", "type": "move_to", "journey": "other"}, send("d"))
    assert follows(j, "a") == ["c"]
    assert follows(j, "b") == []
    assert follows(j, "c") == []


def test_branch_goes_to_each_case_then_else_or_the_next_step() -> None:
    j = journey(branch("a", "c", "d"), send("b"), send("c"), send("d"))
    assert follows(j, "a") == ["c", "d", "b"]
    j = journey(branch("a", "c", otherwise="d"), send("b"), send("c"), send("d"))
    assert follows(j, "a") == ["c", "d"]
    j = journey(send("x"), branch("a", "x"))  # last step: no implicit next
    assert follows(j, "a") == ["x"]


def test_wait_for_outcomes_default_to_the_next_step() -> None:
    j = journey(wait_for("a"), send("b"), send("c"))
    assert follows(j, "a") == ["b"]  # both outcomes: one successor, listed once
    j = journey(wait_for("a", on_event="c"), send("b"), send("c"))
    assert follows(j, "a") == ["c", "b"]
    j = journey(wait_for("a", on_event="c", on_timeout="b"), send("b"), send("c"))
    assert follows(j, "a") == ["c", "b"]


def test_named_targets_say_which_key_names_each_step() -> None:
    steps = step_map(journey(
        goto("g", "x"), branch("b", "x", "y", otherwise="z"),
        wait_for("w", on_timeout="y"), send("x"), send("y"), send("z"),
    ))
    assert named_targets(steps["g"]) == [(("target",), "x")]
    assert named_targets(steps["b"]) == [
        (("cases", 0, "goto"), "x"), (("cases", 1, "goto"), "y"), (("else",), "z"),
    ]
    assert named_targets(steps["w"]) == [(("on_timeout",), "y")]
    assert named_targets(steps["x"]) == []
    assert jump_targets(steps["b"]) == ["x", "y", "z"]


# --- reachable -------------------------------------------------------------------------


def test_reachable_follows_every_path_from_the_first_step() -> None:
    j = journey(send("a"), branch("b", "e"), {"id": "c", "type": "exit"}, send("d"), send("e"))
    assert reachable(j) == {"a", "b", "c", "e"}  # d: after an exit, and nothing jumps to it


def test_a_step_after_goto_is_unreachable_unless_something_jumps_to_it() -> None:
    j = journey(goto("a", "c"), send("b"), send("c"))
    assert reachable(j) == {"a", "c"}
    j = journey(wait_for("a", on_event="c", on_timeout="c"), send("b"), send("c"))
    assert reachable(j) == {"a", "c"}


def test_reachable_ignores_dangling_targets() -> None:
    """The loader reports them; the helper must not crash on them."""
    j = journey(goto("a", "nowhere"), send("b"))
    assert reachable(j) == {"a"}


# --- loops_without_wait ----------------------------------------------------------------


def test_a_loop_through_a_wait_is_fine() -> None:
    j = journey(send("a"), wait("b", "7d"), goto("c", "a"))
    assert loops_without_wait(j) == []


def test_a_loop_through_wait_for_or_wait_until_is_fine() -> None:
    j = journey(send("a"), wait_for("b", on_event="a", on_timeout="a"))
    assert loops_without_wait(j) == []
    until = {"id": "b", "type": "wait", "until": {"time": "10:00", "days": ["tue"]}}
    assert loops_without_wait(journey(send("a"), until, goto("c", "a"))) == []


def test_a_goto_loop_without_wait_is_reported() -> None:
    j = journey(send("a"), {"id": "b", "type": "set", "score": 1}, goto("c", "a"))
    assert loops_without_wait(j) == [["a", "b", "c"]]


def test_a_goto_to_itself_is_a_loop() -> None:
    assert loops_without_wait(journey(goto("a", "a"))) == [["a"]]


def test_branch_cycles_are_reported_once() -> None:
    j = journey(send("a"), branch("b", "a"), send("c"))
    assert loops_without_wait(j) == [["a", "b"]]
    # two branches jumping back and forth: one cycle, whichever step it starts from
    j = journey(branch("a", "b"), branch("b", "a"), send("c"))
    assert loops_without_wait(j) == [["a", "b"]]


def test_every_distinct_loop_is_reported() -> None:
    j = journey(send("a"), branch("b", "a", "d"), send("c"), goto("d", "c"))
    assert sorted(loops_without_wait(j)) == [["a", "b"], ["c", "d"]]


def test_a_zero_wait_does_not_break_a_loop() -> None:
    """`wait: 0m` lets no time pass: the contact would still go round at every tick."""
    assert loops_without_wait(journey(send("a"), wait("b", "0m"), goto("c", "a"))) == [
        ["a", "b", "c"]]
    assert loops_without_wait(journey(send("a"), wait_for("b", "0s"), goto("c", "a"))) == [
        ["a", "b", "c"]]
    assert loops_without_wait(journey(send("a"), wait("b", "0.5h"), goto("c", "a"))) == []


def test_loops_only_through_pauses_are_not_reported() -> None:
    j = journey(wait("a"), wait_for("b", on_event="a", on_timeout="a"))
    assert loops_without_wait(j) == []


# --- the model -------------------------------------------------------------------------


def test_every_step_kind_of_the_spec_exists() -> None:
    assert set(STEP_KINDS) == {"send", "wait", "wait_for", "branch", "set", "handoff", "goto",
                               "move_to", "exit"}
    annotated = Step.__metadata__[0]  # type: ignore[attr-defined]
    assert annotated.discriminator == "type"


def test_branch_reads_if_and_else_as_written_in_files() -> None:
    j = journey(branch("a", "b", otherwise="b"), send("b"))
    step = step_map(j)["a"]
    assert isinstance(step, BranchStep)
    assert (step.cases[0].when, step.cases[0].goto, step.otherwise) == ("score > 10", "b", "b")


@pytest.mark.parametrize(
    ("step", "fragment"),
    [
        ({"id": "w", "type": "wait"}, "exactly one of 'duration' or 'until'"),
        ({"id": "w", "type": "wait", "duration": "1d", "until": {"time": "10:00"}},
         "exactly one of 'duration' or 'until'"),
        ({"id": "w", "type": "wait", "until": {"time": "10:00", "days": []}}, "at least 1 item"),
        ({"id": "w", "type": "wait", "until": {"time": "24:00"}}, "should match pattern"),
        ({"id": "w", "type": "wait", "duration": "3 days"}, "should match pattern"),
        ({"id": "s", "type": "set"}, "needs 'attribute'"),
        ({"id": "b", "type": "branch", "cases": []}, "at least 1 item"),
        ({"id": "a b", "type": "exit"}, "should match pattern"),
        ({"id": "s", "type": "send", "channel": "fax", "template": "t"}, "'email' or 'sms'"),
    ],
)
def test_invalid_steps_are_refused(step: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        journey(step)


def test_entry_needs_a_condition_or_an_event() -> None:
    with pytest.raises(ValidationError, match="entry needs"):
        journey(send("a"), entry={})


def test_purposes_used_and_send_steps() -> None:
    j = journey(send("a"), send("b", purpose="sales"), wait("c"), send("d", purpose="sales"))
    assert purposes_used(j) == {"newsletter", "sales"}
    assert [s.id for s in send_steps(j)] == ["a", "b", "d"]
