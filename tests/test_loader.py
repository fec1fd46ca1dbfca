"""Journey files → `Journey`, with every problem at its `path:line`, in a marketer's words."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nurture.authoring.journey import SendStep
from nurture.authoring.loader import load_journeys, read_journey
from nurture.errors import Problem

REPO = Path(__file__).resolve().parent.parent
PURPOSES = {"newsletter", "marketing", "sales", "transactional"}
HEAD = """\
id: j
name: J
purpose: newsletter
entry:
  event: content.downloaded
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write a journey file; in `HEAD + body`, only the body is dedented."""
    head = HEAD if text.startswith(HEAD) else ""
    path = folder / name
    path.write_text(head + textwrap.dedent(text[len(head):]), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, name: str = "j.yaml") -> list[tuple[int, str]]:
    """(line, message) of every problem `load_journeys` finds with this one file."""
    write(tmp_path, name, text)
    _, problems = load_journeys(tmp_path, PURPOSES)
    assert all(p.path == str(tmp_path / name) for p in problems)
    return sorted((p.line or 1, p.message) for p in problems)


def line(path: Path, number: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[number - 1].strip()


# --- the shipped examples ----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "journeys").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_journeys_load_without_problems(path: Path) -> None:
    loaded, problems = read_journey(path)
    assert problems == []
    assert loaded is not None and loaded.id == path.stem
    assert len(loaded.version) == 16
    first = loaded.journey.steps[0]
    assert line(path, loaded.line_of("steps", 0, "id")) == f"- id: {first.id}"
    # every condition is compiled once, at load time
    assert set(loaded.conditions) >= {loaded.journey.exit_when} - {None}


def test_shipped_journeys_check_clean_together() -> None:
    loaded, problems = load_journeys(REPO / "journeys", PURPOSES)
    assert problems == []
    assert {j.id for j in loaded} == {"cold-education", "warm-consideration", "hot-conversion",
                                      "prospect-sales"}


def test_the_version_changes_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "j.yaml", HEAD + "steps:\n  - {id: a, type: exit}\n")
    first, _ = read_journey(path)
    write(tmp_path, "j.yaml", HEAD + "steps:\n  - {id: a, type: exit, reason: done}\n")
    second, _ = read_journey(path)
    assert first is not None and second is not None and first.version != second.version


def test_yml_files_are_read_too(tmp_path: Path) -> None:
    write(tmp_path, "j.yml", HEAD + "steps:\n  - {id: a, type: exit}\n")
    loaded, problems = load_journeys(tmp_path, PURPOSES)
    assert [j.id for j in loaded] == ["j"] and problems == []


# --- shape: unknown keys and types, missing keys, bad values -------------------------------


def test_unknown_step_type_points_at_its_type_line_and_suggests(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - id: welcome
            type: sned
            channel: email
        """) == [(8, "step 'welcome': unknown step type 'sned' (did you mean 'send'? known: "
                     "send, wait, wait_for, branch, set, handoff, goto, move_to, exit)")]


def test_a_step_without_type(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + "steps:\n  - id: welcome\n    channel: email\n") == [
        (7, "step 'welcome': the step has no 'type' (one of: send, wait, wait_for, branch, set, "
            "handoff, goto, move_to, exit)")]


def test_unknown_keys_name_the_step_and_the_keys_it_takes(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        colour: blue
        steps:
          - id: welcome
            type: send
            channel: email
            tempalte: cold/welcome-guide
            template: cold/welcome-guide
        """) == [
        (6, "unknown key 'colour' (known keys: id, name, description, purpose, entry, reentry, "
            "exit_when, goal, send_window, stop_on_reply, exclusive, priority, migrate, steps)"),
        (11, "step 'welcome': unknown key 'tempalte' (did you mean 'template'? known keys: id, "
             "note, type, channel, template, variants, purpose)"),
    ]


def test_nested_unknown_keys_say_where(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        send_window:
          email: {days: [tue], dayz: [wed]}
        steps:
          - id: check
            type: branch
            cases:
              - when: "score > 3"
                goto: check
        """) == [
        (7, "send_window.email: unknown key 'dayz' (did you mean 'days'? known keys: days, "
            "start, end, skip_holidays)"),
        (12, "step 'check': cases: 'if' is required"),
        (12, "step 'check': cases: unknown key 'when' (known keys: if, goto)"),
    ]


def test_branch_keys_are_read_as_written_in_the_schema_only(tmp_path: Path) -> None:
    """`otherwise` is the Python name of `else`: accepting it would disagree with the schema."""
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - id: check
            type: branch
            cases: [{if: "score > 3", goto: check}]
            otherwise: check
        """) == [(10, "step 'check': unknown key 'otherwise' (known keys: id, note, type, cases, "
                      "else)")]


def test_missing_keys(tmp_path: Path) -> None:
    assert problems_of(tmp_path, """\
        id: j
        entry: {event: content.downloaded}
        steps:
          - type: send
            channel: email
        """) == [
        (1, "'name' is required"),
        (1, "'purpose' is required"),
        (4, "step #1: 'id' is required"),
        (4, "step #1: 'template' is required"),
    ]


def test_bad_values_say_what_is_expected(tmp_path: Path) -> None:
    assert problems_of(tmp_path, """\
        id: Cold Leads
        name: J
        purpose: newsletter
        entry: {event: content.downloaded}
        reentry: 3 days
        send_window:
          fax: {}
        steps:
          - {id: pause, type: wait, duration: 3 days}
          - {id: text, type: send, channel: fax, template: t}
          - id: tuesday
            type: wait
            until: {time: "9:00", days: [tuesday]}
        """, name="cold-leads.yaml") == [
        (1, "id 'Cold Leads' is not valid: expected an id of lowercase letters, digits, '_' "
            "and '-' (no spaces)"),
        (5, "reentry '3 days' is not valid: expected 'never' or a duration such as 30m, 12h, "
            "3d or 2w"),
        (7, "send_window key 'fax' is not valid: expected 'email' or 'sms'"),
        (9, "step 'pause': duration '3 days' is not valid: expected a duration such as 30m, "
            "12h, 3d or 2w"),
        (10, "step 'text': channel 'fax' is not valid: expected 'email' or 'sms'"),
        (13, "step 'tuesday': until.days 'tuesday' is not valid: expected 'mon', 'tue', 'wed', "
             "'thu', 'fri', 'sat' or 'sun'"),
        (13, "step 'tuesday': until.time '9:00' is not valid: expected a time such as 09:30 "
             "(HH:MM)"),
    ]


def test_rules_of_one_step_and_non_mapping_steps(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - {id: pause, type: wait}
          - {id: tag, type: set}
          - welcome
          - {id: w, type: wait, until: {time: "10:00", days: []}}
        """) == [
        (7, "step 'pause': a wait step needs exactly one of 'duration' or 'until'"),
        (8, "step 'tag': a set step needs 'attribute' (with 'value') or 'score'"),
        (9, "step #3: 'welcome' is not valid: expected keys and values"),
        (10, "step 'w': until.days: List should have at least 1 item after validation, not 0"),
    ]


def test_a_key_written_twice_is_reported(tmp_path: Path) -> None:
    """YAML keeps the last one silently: `duration: 3d` would quietly become `4d`."""
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - id: pause
            type: wait
            duration: 3d
            duration: 4d
        """) == [(10, "key 'duration' is written twice (the last one would silently win)")]


def test_file_name_must_match_the_id(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + "steps:\n  - {id: a, type: exit}\n", name="k.yaml") == [
        (1, "journey id 'j' differs from the file name 'k.yaml' (name the file j.yaml)")]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "- a\n- b\n", "just text\n"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert problems_of(tmp_path, text) == [
        (1, "a journey file must be a YAML mapping (id: ..., name: ..., steps: ...)")]


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_bytes(HEAD.encode() + b"description: caf\xe9\n")
    _, problems = load_journeys(tmp_path, PURPOSES)
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'j.yaml'}:1: the file is not UTF-8 text: save it as UTF-8"]


# --- YAML syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: j\nsteps:\n  - id: a\n    type: send\n   channel: email\n",
         (5, "YAML syntax error: expected <block end>, but found '<block mapping start>' (check "
             "the indentation of this line and the one before)")),
        ("id: j\nname: 'Cold leads\npurpose: newsletter\n",
         (2, "YAML syntax error: a quote opened on this line is never closed")),
        ("id: j\n\tname: J\n",
         (2, "YAML syntax error: found character '\\t' that cannot start any token (indent "
             "with spaces, not tabs)")),
        ("id: j\nname: Webinar: register now\n",
         (2, "YAML syntax error: mapping values are not allowed here (put text that contains "
             "': ' in quotes)")),
        ("id: j\nentry: {event: content.downloaded\nname: J\n",
         (3, "YAML syntax error: expected ',' or '}', but got ':' (in the {...} mapping that "
             "starts at line 2)")),
        ("id: j\ndays: [mon, tue\nname: J\n",
         (3, "YAML syntax error: expected ',' or ']', but got ':' (in the [...] list that "
             "starts at line 2)")),
        ("id: j\nname: \"Cold leads\npurpose: newsletter\n",
         (2, "YAML syntax error: a quote opened on this line is never closed")),
        ("id: j\nexit_when: \"attributes.code matches '\\d+'\"\n",
         (2, "YAML syntax error: found unknown escape character 'd' (in double quotes a "
             "backslash starts an escape: write \\\\ or use single quotes)")),
    ],
    ids=["indentation", "open-quote", "tab", "colon-in-text", "open-brace", "open-bracket",
         "open-double-quote", "backslash-in-double-quotes"],
)
def test_yaml_syntax_errors_point_at_the_line_to_fix(tmp_path: Path, text: str,
                                                      expected: tuple[int, str]) -> None:
    assert problems_of(tmp_path, text) == [expected]


# --- conditions and events -------------------------------------------------------------------


def test_bad_conditions_are_reported_at_their_line(tmp_path: Path) -> None:
    found = problems_of(tmp_path, """\
        id: j
        name: J
        purpose: newsletter
        entry:
          when: "stage = 'lead'"
        exit_when: "scroe > 3"
        goal: "score >> 3"
        steps:
          - id: check
            type: branch
            cases:
              - if: "temperature in ['warm', 'hot'"
                goto: done
            else: done
          - {id: done, type: exit}
        """)
    assert [n for n, _ in found] == [5, 6, 7, 12]
    assert found[0][1] == ("condition: unexpected '=' at column 7 in \"stage = 'lead'\": use '==' "
                           "to compare")
    assert found[1][1].startswith("condition: unknown field 'scroe' at column 1")
    assert "did you mean 'score'?" in found[1][1]
    assert all(message.startswith("condition: ") for _, message in found)


def test_unknown_event_types_are_reported_wherever_they_are_used(tmp_path: Path) -> None:
    """A typo in an event name would count 0 forever: the branch would never be taken."""
    found = problems_of(tmp_path, """\
        id: j
        name: J
        purpose: newsletter
        entry:
          event: content.donwloaded
        exit_when: "events.x.webinar.attended.count >= 1 or events.page.veiwed.count_7d > 3"
        steps:
          - id: wait-click
            type: wait_for
            event: email.clickd
            timeout: 3d
        """)
    assert [(n, m.split(" (")[0]) for n, m in found] == [
        (5, "unknown event type 'content.donwloaded'"),
        (6, "condition: unknown event type 'page.veiwed'"),
        (10, "unknown event type 'email.clickd'"),
    ]
    assert "did you mean 'content.downloaded'? custom events start with 'x.'" in found[0][1]
    assert "did you mean 'page.viewed'?" in found[1][1]
    assert "did you mean 'email.clicked'?" in found[2][1]


# --- graph and cross references --------------------------------------------------------------


def test_dangling_targets_point_at_the_key_that_names_them(tmp_path: Path) -> None:
    found = problems_of(tmp_path, HEAD + """\
        steps:
          - id: wait-click
            type: wait_for
            event: email.clicked
            timeout: 3d
            on_event: offr
            on_timeout: nudge
          - id: nudge
            type: branch
            cases:
              - if: "score > 10"
                goto: offer
              - if: "score > 5"
                goto: ofer
            else: end
          - {id: offer, type: goto, target: wait-clik}
        """)
    assert [(n, m.split(", which")[0]) for n, m in found] == [
        (11, "step 'wait-click' goes to 'offr'"),
        (19, "step 'nudge' goes to 'ofer'"),
        (20, "step 'nudge' goes to 'end'"),
        (21, "step 'offer' goes to 'wait-clik'"),
    ]
    assert found[0][1] == ("step 'wait-click' goes to 'offr', which is not a step of this "
                           "journey (did you mean 'offer'? steps: wait-click, nudge, offer)")
    assert found[2][1].endswith("(steps: wait-click, nudge, offer)")


def test_duplicate_step_ids_are_reported_without_a_phantom_loop(tmp_path: Path) -> None:
    """With two 'reminder' steps, file order is ambiguous: a loop reported there is noise."""
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: reminder, type: wait, duration: 3d}
          - {id: reminder, type: send, channel: email, template: t}
        """) == [(9, "duplicate step id 'reminder' (first at line 8)")]


def test_unreachable_steps_and_loops(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: again, type: goto, target: welcome}
          - {id: lost, type: exit}
        """) == [
        (7, "loop with no wait: welcome -> again -> welcome; a contact would go round it "
            "without pause: add a wait or wait_for step to it"),
        (9, "step 'lost' can never run: no step leads to it (the step before it ends the "
            "journey or jumps elsewhere)"),
    ]


def test_purposes_must_be_declared(tmp_path: Path) -> None:
    assert problems_of(tmp_path, """\
        id: j
        name: J
        purpose: newsleter
        entry: {event: content.downloaded}
        steps:
          - {id: a, type: send, channel: email, template: t, purpose: promotions}
        """) == [
        (3, "purpose 'newsleter' is not declared in config.toml (did you mean 'newsletter'? "
            "declared: marketing, newsletter, sales, transactional; add [purposes.newsleter] "
            "to declare it)"),
        (6, "purpose 'promotions' is not declared in config.toml (declared: marketing, "
            "newsletter, sales, transactional; add [purposes.promotions] to declare it)"),
    ]


def test_migrate_rules(tmp_path: Path) -> None:
    assert problems_of(tmp_path, HEAD + """\
        migrate:
          old-reminder: remindr
          welcome: reminder
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: reminder, type: send, channel: email, template: t}
        """) == [
        (7, "migrate sends contacts of removed step 'old-reminder' to 'remindr', which is not "
            "a step of this journey (did you mean 'reminder'? steps: welcome, reminder)"),
        (8, "migrate lists 'welcome', but 'welcome' is still a step: migrate is only for "
            "removed steps"),
    ]


def test_move_to_a_journey_that_does_not_exist(tmp_path: Path) -> None:
    write(tmp_path, "warm.yaml", HEAD.replace("id: j", "id: warm") + "steps:\n  - {id: a, "
                                                                       "type: exit}\n")
    found = problems_of(tmp_path, HEAD + "steps:\n  - {id: up, type: move_to, journey: wram}\n")
    assert found == [(7, "step 'up' moves contacts to journey 'wram', which does not exist "
                         "(did you mean 'warm'? journeys: j, warm)")]


def test_move_to_a_journey_whose_file_has_problems_is_not_a_second_error(
        tmp_path: Path) -> None:
    """The marketer fixes warm.yaml; saying `move_to` is wrong too would send them astray."""
    write(tmp_path, "warm.yaml", "id: warm\nname: [oops\n")
    write(tmp_path, "j.yaml", HEAD + "steps:\n  - {id: up, type: move_to, journey: warm}\n")
    _, problems = load_journeys(tmp_path, PURPOSES)
    assert [(Path(p.path).name, p.line) for p in problems] == [("warm.yaml", 3)]


def test_duplicate_journey_ids(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", HEAD + "steps:\n  - {id: a, type: exit}\n")
    write(tmp_path, "j.yaml", HEAD + "steps:\n  - {id: a, type: exit}\n")
    _, problems = load_journeys(tmp_path, PURPOSES)
    assert Problem(str(tmp_path / "j.yaml"), 1,
                   f"duplicate journey id 'j' (also in {tmp_path / 'a.yaml'})") in problems


def test_problems_in_several_files_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "id: a\nname: [\n")
    write(tmp_path, "b.yaml", HEAD.replace("id: j", "id: b") + "steps:\n  - {id: x, type: nope}\n")
    write(tmp_path, "c.yaml", HEAD.replace("id: j", "id: c") + "steps:\n  - {id: x, type: goto, "
                                                               "target: y}\n")
    loaded, problems = load_journeys(tmp_path, PURPOSES)
    assert [j.id for j in loaded] == ["c"]
    assert sorted(Path(p.path).name for p in problems) == ["a.yaml", "b.yaml", "c.yaml"]


def test_a_loaded_journey_looks_steps_up_by_id(tmp_path: Path) -> None:
    path = write(tmp_path, "j.yaml", HEAD + """\
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: done, type: exit}
        """)
    loaded, _ = read_journey(path)
    assert loaded is not None
    assert isinstance(loaded.steps["welcome"], SendStep)
    assert loaded.following == {"welcome": "done", "done": None}
    assert loaded.line_of("steps", 1) == 8
    assert loaded.line_of("steps", 7, "nothing") == 6  # deepest known prefix: `steps:`


# --- a schema error in one place hides nothing elsewhere -------------------------------------


def test_a_refused_step_does_not_hide_the_rest_of_the_file(tmp_path: Path) -> None:
    """Before: the first step refused by the schema was the only problem reported."""
    found = problems_of(tmp_path, """\
        id: j
        name: J
        purpose: newsleter
        entry:
          when: "stage == 'leads'"
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: later, type: snooze}
          - {id: pause, type: wait, duration: 3 days}
          - {id: check, type: branch, cases: [{if: "score >", goto: welcome}]}
          - {id: again, type: goto, target: welcom}
        """)
    assert [(n, m.split(" (")[0].split(": expected")[0]) for n, m in found] == [
        (3, "purpose 'newsleter' is not declared in config.toml"),
        (5, "condition: unknown stage 'leads'"),
        (8, "step 'later': unknown step type 'snooze'"),
        (9, "step 'pause': duration '3 days' is not valid"),
        (10, "condition: unexpected end of expression at column 8 in \"score >\""),
        (11, "step 'again' goes to 'welcom', which is not a step of this journey"),
    ]


def test_a_refused_step_makes_no_phantom_problems_around_it(tmp_path: Path) -> None:
    """Its id still exists, it may lead wherever its text says, and it closes no loop."""
    assert problems_of(tmp_path, HEAD + """\
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: choose, type: brnach, cases: [{if: "score > 5", goto: offer}], else: nudge}
          - {id: nudge, type: goto, target: choose}
          - {id: offer, type: goto, target: welcome}
        """) == [(8, "step 'choose': unknown step type 'brnach' (did you mean 'branch'? known: "
                     "send, wait, wait_for, branch, set, handoff, goto, move_to, exit)")]


def test_refused_top_level_keys_do_not_hide_the_steps(tmp_path: Path) -> None:
    found = problems_of(tmp_path, """\
        id: j
        name: J
        reentry: 3 days
        entry: {event: content.downloaded, segment: vip}
        steps:
          - {id: a, type: goto, target: b}
        """)
    assert [(n, m.split(" (")[0].split(": expected")[0]) for n, m in found] == [
        (1, "'purpose' is required"),  # no second problem about an undeclared purpose ''
        (3, "reentry '3 days' is not valid"),
        (4, "entry: unknown key 'segment'"),
        (6, "step 'a' goes to 'b', which is not a step of this journey"),
    ]


def test_a_salvaged_journey_is_for_checking_only(tmp_path: Path) -> None:
    path = write(tmp_path, "j.yaml", HEAD + """\
        steps:
          - {id: welcome, type: send, channel: email, template: t}
          - {id: later, type: snooze}
        """)
    assert read_journey(path)[0] is None  # what the engine gets: nothing to run
    salvaged, problems = read_journey(path, salvage=True)
    assert salvaged is not None and not salvaged.complete and len(problems) == 1
    assert salvaged.unreadable == {("steps", 1)}
    assert [step.id for step in salvaged.journey.steps] == ["welcome", "later"]
    assert load_journeys(tmp_path, PURPOSES)[0] == []
    partial, _ = load_journeys(tmp_path, PURPOSES, partial=True)
    assert [j.id for j in partial] == ["j"] and not partial[0].complete


def test_conditions_are_checked_against_the_declared_attributes(tmp_path: Path) -> None:
    """`set` steps write attributes too: conditions may read them without a declaration."""
    found = problems_of(tmp_path, HEAD + """\
        exit_when: "attributes.nudged == true or attributes.compnay_size > '50'"
        steps:
          - {id: tag, type: set, attribute: nudged, value: true}
        """)
    assert found == []  # no declarations given: names and their types are not checked
    write(tmp_path, "j.yaml", HEAD + """\
        exit_when: "attributes.nudged == true or attributes.compnay_size > '50'"
        steps:
          - {id: tag, type: set, attribute: nudged, value: true}
        """)
    _, problems = load_journeys(tmp_path, PURPOSES, attributes={"company_size": "int"})
    assert [(p.line, p.message) for p in problems] == [
        (6, "condition: unknown attribute 'compnay_size' (did you mean 'company_size'? known: "
            "company_size, nudged; declare it as [attributes.compnay_size] in config.toml, or "
            "set it with a set step)")]
