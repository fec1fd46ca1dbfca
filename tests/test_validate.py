"""`nurture validate`: a broken copy of the shipped project gets every problem at its line.

Each rule has a fixture in tests/fixtures/broken (a journey, and the templates it needs);
the expected line numbers were counted in those files, and each test also checks the text
found on that line, so a fixture edited without updating its line fails loudly.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.authoring.loader import read_journey
from nurture.cli.main import app
from nurture.config.settings import load_settings
from nurture.engine import membership as entry
from nurture.errors import ConfigError
from nurture.services import contacts
from nurture.services.validate import toml_key_lines, validate_project
from nurture.store import queries as store
from nurture.store import schema
from nurture.store.database import Database

REPO = Path(__file__).resolve().parent.parent
BROKEN = Path(__file__).resolve().parent / "fixtures" / "broken"
NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<message>.*)$")



@pytest.fixture(autouse=True)
def _project_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own files decide: not a database or config the shell happens to name."""
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)

@dataclass(frozen=True)
class Expected:
    """One problem: file (relative to the project), line, the text on it, message start."""

    path: str
    line: int
    text: str
    message: str


@dataclass(frozen=True)
class Rule:
    journey: str
    expected: tuple[Expected, ...]
    templates: tuple[str, ...] = ()


def journey_at(name: str, line: int, text: str, message: str) -> Expected:
    return Expected(f"journeys/{name}.yaml", line, text, message)


RULES = [
    Rule("dangling-goto", (journey_at(
        "dangling-goto", 13, "target: welcom",
        "step 'again' goes to 'welcom', which is not a step of this journey (did you mean "
        "'welcome'? steps: welcome, again)"),)),
    Rule("unknown-step-kind", (journey_at(
        "unknown-step-kind", 12, "type: snooze",
        "step 'later': unknown step type 'snooze' (known: send, wait, wait_for, branch, set, "
        "handoff, goto, move_to, exit)"),)),
    Rule("missing-template", (journey_at(
        "missing-template", 10, "template: cold/welcome-guid",
        "no email template 'cold/welcome-guid' for locale 'fr' (tried: "),)),
    Rule("jinja-syntax-error", (Expected(
        "templates/email/broken/syntax-error.html", 4,
        "<p>{% if contact.first_name %}Hi {{ contact.first_name }},{% endfor %}</p>",
        "syntax error: Encountered unknown tag 'endfor'. Jinja was looking for the following "
        "tags: 'elif' or 'else' or 'endif'."),),
        templates=("email/broken/syntax-error.html", "email/broken/syntax-error.subject")),
    Rule("undefined-variable", (Expected(
        "templates/email/broken/undefined-variable.html", 4, "<p>Hi {{ contact.nickname }},</p>",
        "undefined variable 'contact.nickname' (known: company, company_size, country, email, "
        "first_name, industry, last_name, locale, phone, role, score, stage, temperature, "
        "timezone)"), Expected(
        "templates/email/broken/undefined-variable.html", 5,
        "<p>Here is the guide we promised {{ company }}.</p>",
        "undefined variable 'company' (known: contact, journey, links, message, sender)")),
        templates=("email/broken/undefined-variable.html",
                   "email/broken/undefined-variable.subject")),
    Rule("unreachable-step", (journey_at(
        "unreachable-step", 13, "- id: forgotten",
        "step 'forgotten' can never run: no step leads to it (the step before it ends the "
        "journey or jumps elsewhere)"),)),
    Rule("unknown-key", (journey_at(
        "unknown-key", 11, "subject: Your guide",
        "step 'welcome': unknown key 'subject' (known keys: id, note, type, channel, template, "
        "variants, purpose)"),)),
    Rule("duplicate-step-id", (journey_at(
        "duplicate-step-id", 14, "- id: reminder",
        "duplicate step id 'reminder' (first at line 11)"),)),
    Rule("move-to-unknown-journey", (journey_at(
        "move-to-unknown-journey", 13, "journey: warm-considration",
        "step 'warm-up' moves contacts to journey 'warm-considration', which does not exist "
        "(did you mean 'warm-consideration'? journeys: "),)),
    Rule("loop-without-wait", (journey_at(
        "loop-without-wait", 7, "- id: welcome",
        "loop with no wait: welcome -> again -> welcome; a contact would go round it without "
        "pause: add a wait or wait_for step to it"),)),
    Rule("undeclared-purpose", (journey_at(
        "undeclared-purpose", 11, "purpose: promotions",
        "purpose 'promotions' is not declared in config.toml (declared: marketing, newsletter, "
        "sales, transactional; add [purposes.promotions] to declare it)"),)),
    Rule("sms-too-long", (Expected(
        "templates/sms/broken/too-long.txt", 1,
        "Hi{% if contact.first_name %} {{ contact.first_name }}{% endif %}, our spring offer",
        "SMS is 3 segments (GSM-7) with the sample contact and STOP mention; the limit is 2"),),
        templates=("sms/broken/too-long.txt",)),
    Rule("no-unsubscribe-link", (Expected(
        "templates/email/broken/no-unsubscribe.html", 1, "<html><body>",
        "marketing email has no unsubscribe link ({{ links.unsubscribe }})"),),
        templates=("email/broken/no-unsubscribe.html", "email/broken/no-unsubscribe.subject")),
    Rule("yaml-syntax-error", (journey_at(
        "yaml-syntax-error", 9, "channel: email",
        "YAML syntax error: expected <block end>, but found '<block mapping start>' (check the "
        "indentation of this line and the one before)"),)),
    Rule("bad-condition", (journey_at(
        "bad-condition", 6, "exit_when: \"stage = 'prospect'\"",
        "condition: unexpected '=' at column 7 in \"stage = 'prospect'\": use '==' to "
        "compare"),)),
    Rule("dangling-wait-for-target", (journey_at(
        "dangling-wait-for-target", 15, "on_timeout: remindr",
        "step 'wait-download' goes to 'remindr', which is not a step of this journey (did you "
        "mean 'reminder'? steps: welcome, wait-download, reminder)"),)),
    Rule("dangling-branch-target", (journey_at(
        "dangling-branch-target", 16, "else: webinar",
        "step 'engaged' goes to 'webinar', which is not a step of this journey (steps: "
        "welcome, engaged, digest)"),)),
    Rule("migrate-target-missing", (journey_at(
        "migrate-target-missing", 7, "old-reminder: remindr",
        "migrate sends contacts of removed step 'old-reminder' to 'remindr', which is not a "
        "step of this journey (did you mean 'reminder'? steps: welcome, reminder)"),)),
    # values against their vocabulary, attributes against [attributes], types
    Rule("unknown-stage", (journey_at(
        "unknown-stage", 5, "when: \"stage == 'leads' and temperature == 'cold'\"",
        "condition: unknown stage 'leads' (did you mean 'lead'? stages: lead, prospect, "
        "sales_accepted, customer, recycled)"),)),
    Rule("temperature-case", (journey_at(
        "temperature-case", 6, "exit_when: \"temperature == 'Warm'\"",
        "condition: unknown temperature 'Warm' (did you mean 'warm'? case matters; "
        "temperatures: cold, warm, hot)"),)),
    Rule("unknown-attribute", (journey_at(
        "unknown-attribute", 10, "- if: \"attributes.compnay_size >= 50\"",
        "condition: unknown attribute 'compnay_size' (did you mean 'company_size'? known: "
        "company, company_size, first_name, industry, last_name, needs_nudge, role; declare "
        "it as [attributes.compnay_size] in config.toml, or set it with a set step)"),)),
    Rule("text-vs-number", (journey_at(
        "text-vs-number", 6, "goal: \"score >= '40'\"",
        "condition: score is a number but '40' is text, so this never holds: write 40 without "
        "quotes"), journey_at(
        "text-vs-number", 7, "exit_when: \"attributes.company_size >= '50'\"",
        "condition: attributes.company_size is a number (type int) but '50' is "
        "text, so this never holds: write 50 without quotes"))),
    # warnings: printed, exit 0 on their own
    Rule("missing-translation", (journey_at(
        "missing-translation", 10, "template: broken/french-only",
        "warning: email template 'broken/french-only' has no 'en' version: contacts in 'en' "
        "get the 'fr' one (add templates/email/broken/french-only.en.subject and "
        "templates/email/broken/french-only.en.html)"),),
        templates=("email/broken/french-only.fr.subject", "email/broken/french-only.fr.html")),
    Rule("unguarded-personalisation", (Expected(
        "templates/email/broken/thanks.html", 3, "<p>Thanks for joining, {{ contact.first_name }}!",
        "warning: {{ contact.first_name }} prints nothing for a contact without first_name: "
        "write {{ contact.first_name | default('...') }} or put it inside "
        "{% if contact.first_name %}...{% endif %}"),),
        templates=("email/broken/thanks.subject", "email/broken/thanks.html")),
    Rule("sms-non-gsm-name", (Expected(
        "templates/sms/broken/name-budget.txt", 1, "Hi{% if contact.first_name %}",
        "warning: SMS is 4 segments (UCS-2) for a contact with a name outside GSM-7 "
        "(contact.first_name = 'Jérôme'); the limit is 2, so such contacts get no SMS "
        "(too_long)"),),
        templates=("sms/broken/name-budget.txt",)),
]
#: one file, six mistakes of every kind: two the schema refuses, four it cannot see
SIX_MISTAKES = Rule("six-mistakes", (
    journey_at("six-mistakes", 5, "when: \"stage == 'leads'\"",
               "condition: unknown stage 'leads' (did you mean 'lead'?"),
    journey_at("six-mistakes", 6, "exit_when: \"temperature == 'Warm'\"",
               "condition: unknown temperature 'Warm' (did you mean 'warm'? case matters"),
    journey_at("six-mistakes", 7, "goal: \"score >= '40'\"",
               "condition: score is a number but '40' is text"),
    journey_at("six-mistakes", 14, "type: snooze",
               "step 'later': unknown step type 'snooze' (known: "),
    journey_at("six-mistakes", 18, "duration: 3 days",
               "step 'pause': duration '3 days' is not valid: expected a duration"),
    journey_at("six-mistakes", 22, "- if: \"attributes.compnay_size >= 50\"",
               "condition: unknown attribute 'compnay_size' (did you mean 'company_size'?"),
))
RULES.append(SIX_MISTAKES)
#: contacts wait at a step removed from cold-education.yaml (see `contacts_at_removed_step`)
REMOVED_STEP = Expected(
    "journeys/cold-education.yaml", 11, "steps:",
    "1 contact(s) are waiting at step 'old-welcome', which was removed: add "
    "'migrate: {old-welcome: <step id>}' to say which step they continue at")


def copy_project(root: Path) -> Path:
    """The shipped config, journeys and templates, as a marketer's repository would hold them."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "config.toml", root / "config.toml")
    shutil.copytree(REPO / "journeys", root / "journeys")
    shutil.copytree(REPO / "templates", root / "templates")
    return root / "config.toml"


def break_with(root: Path, rule: Rule) -> None:
    shutil.copy(BROKEN / "journeys" / f"{rule.journey}.yaml", root / "journeys")
    for relative in rule.templates:
        (root / "templates" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BROKEN / "templates" / relative, root / "templates" / relative)


def contacts_at_removed_step(config: Path, step_id: str = "old-welcome",
                             state: str = "active") -> None:
    """A live database where one contact stands at a step cold-education.yaml no longer has."""
    settings = load_settings(config, env={})
    loaded, _ = read_journey(settings.journeys_path / "cold-education.yaml")
    assert loaded is not None
    database = Database(settings.database_url)
    schema.upgrade(database)
    try:
        with database.begin() as conn:
            contact = contacts.add_contact(conn, settings, NOW, email="camille@example.com")
            row = entry.enrollment_row(loaded, contact, NOW)
            store.insert_enrollments(conn, [{**row, "step_id": step_id, "state": state}])
    finally:
        database.dispose()


def run_validate(config: Path, *args: str) -> tuple[int, list[tuple[str, int, str]]]:
    """Exit code and (path relative to the project, line, message) of every line printed
    (a warning's message starts with `warning: `)."""
    result = CliRunner().invoke(app, ["--config", str(config), "validate", *args])
    root = config.parent
    found = []
    lines = result.stdout.splitlines()
    if result.exit_code == 0:
        assert lines[-1].startswith("ok: config, journeys and templates are valid")
        lines = lines[:-1]
    for text in lines:
        match = LINE.match(text)
        assert match, f"not a path:line: message line: {text!r}"
        path = Path(match["path"])
        shown = path.relative_to(root).as_posix() if path.is_absolute() else path.as_posix()
        found.append((shown, int(match["line"]), match["message"]))
    errors = sum(not m.startswith("warning: ") for _, _, m in found)
    warnings = len(found) - errors
    if errors:
        assert result.stderr.strip() == f"{errors} problem(s)" + (
            f" and {warnings} warning(s)" if warnings else "")
    elif warnings:
        assert lines != [] and result.stdout.splitlines()[-1].endswith(f"({warnings} warning(s))")
    return result.exit_code, found


def assert_reported(root: Path, found: list[tuple[str, int, str]],
                    expected: list[Expected]) -> None:
    assert sorted((p, n) for p, n, _ in found) == sorted((e.path, e.line) for e in expected)
    for want in expected:
        lines = (root / want.path).read_text(encoding="utf-8").splitlines()
        assert lines[want.line - 1].strip().startswith(want.text), want
        messages = [m for p, n, m in found if (p, n) == (want.path, want.line)]
        assert any(m.startswith(want.message) for m in messages), (want, messages)


# --- the shipped examples ----------------------------------------------------------------


def test_the_shipped_project_is_valid() -> None:
    """(The CLI on the repository itself: tests/test_cli_authoring.py.)"""
    assert validate_project(REPO / "config.toml") == []  # no error, no warning


def test_a_copy_of_the_shipped_project_is_valid(tmp_path: Path) -> None:
    assert run_validate(copy_project(tmp_path / "project")) == (0, [])


# --- one rule at a time -----------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.journey)
def test_each_rule_is_reported_at_its_line(tmp_path: Path, rule: Rule) -> None:
    config = copy_project(tmp_path / "project")
    break_with(config.parent, rule)
    code, found = run_validate(config)
    # warnings are printed, and fail nothing on their own
    assert code == (0 if all(e.message.startswith("warning: ") for e in rule.expected) else 1)
    assert_reported(config.parent, found, list(rule.expected))


def test_a_removed_step_with_contacts_on_it_needs_migrate(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    contacts_at_removed_step(config)
    code, found = run_validate(config)
    assert code == 1
    assert_reported(config.parent, found, [REMOVED_STEP])
    # naming where they continue settles it
    journey = config.parent / "journeys" / "cold-education.yaml"
    journey.write_text(journey.read_text().replace("steps:\n", "migrate:\n  old-welcome: "
                                                   "welcome\nsteps:\n", 1))
    assert run_validate(config) == (0, [])


def test_contacts_on_existing_steps_or_finished_are_fine(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    contacts_at_removed_step(config, step_id="article")
    assert run_validate(config) == (0, [])
    config = copy_project(tmp_path / "other")
    contacts_at_removed_step(config, state="completed")
    assert run_validate(config) == (0, [])


def test_contacts_past_a_final_wait_do_not_break_the_check(tmp_path: Path) -> None:
    """A contact past a journey's last wait stands at step None, beside others at a removed
    step of the same journey: sorting (journey, None) with (journey, 'x') must not crash."""
    config = copy_project(tmp_path / "project")
    contacts_at_removed_step(config, step_id=None)  # type: ignore[arg-type]
    settings = load_settings(config, env={})
    database = Database(settings.database_url)
    try:
        with database.begin() as conn:
            contact = contacts.add_contact(conn, settings, NOW, email="dominique@example.com")
            loaded, _ = read_journey(settings.journeys_path / "cold-education.yaml")
            assert loaded is not None
            row = entry.enrollment_row(loaded, contact, NOW)
            store.insert_enrollments(conn, [{**row, "step_id": "old-welcome"}])
    finally:
        database.dispose()
    code, found = run_validate(config)
    assert code == 1
    assert_reported(config.parent, found, [REMOVED_STEP])


def test_an_unreachable_database_skips_the_check_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A CI runner has no database: validate still checks the files, and says what it skipped."""
    config = copy_project(tmp_path / "project")
    monkeypatch.setenv("NURTURE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nurture")
    with caplog.at_level(logging.WARNING, logger="nurture.validate"):
        assert [p for p in validate_project(config) if p.is_error] == []
    assert "database not reachable, contacts on removed steps not checked" in caplog.text


# --- all of them at once ----------------------------------------------------------------


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    for rule in RULES:
        break_with(config.parent, rule)
    contacts_at_removed_step(config)
    code, found = run_validate(config)
    assert code == 1
    expected = [e for rule in RULES for e in rule.expected] + [REMOVED_STEP]
    assert len(found) == len(expected) == 34
    assert_reported(config.parent, found, expected)
    assert found == sorted(found, key=lambda p: (p[0], p[1], p[2]))  # by file, then line


# --- templates: locale fallback, templates outside journeys ---------------------------------


def test_a_template_missing_in_the_default_locale_is_an_error(tmp_path: Path) -> None:
    """`en` falls back to the default `fr`; `fr` has nothing to fall back to."""
    config = copy_project(tmp_path / "project")
    root = config.parent
    cold = root / "templates" / "email" / "cold"
    for suffix in ("subject", "html"):
        (cold / f"welcome-guide.fr.{suffix}").unlink()
    code, found = run_validate(config)
    assert code == 1
    assert [(p, n) for p, n, _ in found] == [("journeys/cold-education.yaml", 15)]
    assert found[0][2].startswith("no email template 'cold/welcome-guide' for locale 'fr'")
    # the English file removed instead: English contacts get the French one, which is
    # worth a warning (an error in production mode: see test_validate_rules.py)
    shutil.rmtree(root / "templates")
    shutil.copytree(REPO / "templates", root / "templates")
    for suffix in ("subject", "html"):
        (cold / f"welcome-guide.en.{suffix}").unlink()
    assert run_validate(config) == (0, [(
        "journeys/cold-education.yaml", 15, "warning: email template 'cold/welcome-guide' has "
        "no 'en' version: contacts in 'en' get the 'fr' one (add templates/email/cold/"
        "welcome-guide.en.subject and templates/email/cold/welcome-guide.en.html)")])


def test_an_incomplete_template_is_reported(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    (config.parent / "templates" / "email" / "cold" / "welcome-guide.fr.subject").unlink()
    code, found = run_validate(config)
    assert code == 1
    assert [(p, n) for p, n, _ in found] == [("journeys/cold-education.yaml", 15)]
    assert found[0][2].startswith("email template 'cold/welcome-guide' is incomplete: ")
    assert found[0][2].endswith("welcome-guide.fr.subject missing")


def test_templates_no_journey_names_are_checked_too(tmp_path: Path) -> None:
    """The consent confirmation and the sales notification are sent outside journeys."""
    config = copy_project(tmp_path / "project")
    confirm = config.parent / "templates" / "email" / "consent" / "confirm.en.subject"
    confirm.write_text("{{ contact.first_name }, please confirm\n", encoding="utf-8")
    code, found = run_validate(config)
    assert code == 1
    assert [(p, n) for p, n, _ in found] == [("templates/email/consent/confirm.en.subject", 1)]
    assert found[0][2].startswith("syntax error: unexpected '}'")


# --- config.toml ---------------------------------------------------------------------------


def edit_config(config: Path, old: str, new: str) -> int:
    """Replace `old` in config.toml; return the line where `new` starts."""
    text = config.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    config.write_text(text, encoding="utf-8")
    return text[: text.index(new)].count("\n") + 1


def validate_here(config: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """Run `nurture --config config.toml validate` from the project folder, as a marketer would
    (the lines printed)."""
    monkeypatch.chdir(config.parent)
    result = CliRunner().invoke(app, ["--config", "config.toml", "validate"])
    return result.exit_code, result.stdout.splitlines()


def test_an_unknown_config_key_is_reported_at_its_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, "tick_seconds = 30\n", "tick_seconds = 30\ntick_second = 10\n") + 1
    assert config.read_text().splitlines()[line - 1] == "tick_second = 10"
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: unknown key 'tick_second' (did you mean 'tick_seconds'? known "
        "keys: mode, database_url, public_base_url, trusted_proxies, default_locale, locales, "
        "default_timezone, "
        "default_region, journeys_dir, templates_dir, tick_seconds, batch_size, lease_seconds, "
        "allow_role_accounts, check_mx, providers, sender, sms, purposes, attributes, "
        "send_windows, frequency_caps, scoring, replies, handoff)"])


def test_config_problems_in_tables_are_at_their_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    sms = edit_config(config, "max_segments = 2\n", "max_segmnts = 2\n")
    # the second [[frequency_caps]] table: its `per` only (the first one has one too)
    text = config.read_text()
    first = text.index('per = "7d"')
    second = text.index('per = "7d"', first + 1)
    config.write_text(text[:second] + 'per = "7 days"' + text[second + len('per = "7d"'):])
    per = text[:second].count("\n") + 1
    code, lines = validate_here(config, monkeypatch)
    assert code == 1
    assert lines == [
        f"config.toml:{sms}: sms: unknown key 'max_segmnts' (did you mean 'max_segments'? "
        "known keys: max_segments, stop_mention, help_text)",
        f"config.toml:{per}: frequency_caps.per '7 days' is not valid: expected a duration "
        "such as 30m, 12h, 3d or 2w",
    ]


def test_config_values_say_what_is_expected(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    provider = edit_config(config, 'email = "outbox"', 'email = "mailgun"')
    country = edit_config(config, 'FR = "fr_sms"', 'FR = "fr-sms"')
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{provider}: providers.email 'mailgun' is not valid: expected 'outbox', "
        "'sendgrid' or 'smtp'",
        f"config.toml:{country}: send_windows.sms.countries.FR 'fr-sms' is not valid: expected "
        "keys and values or 'fr_sms' or 'us_tcpa'",
    ])


def test_a_toml_syntax_error_is_reported_at_its_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, 'default_locale = "fr"\n', 'default_locale = "fr\n')
    code, lines = validate_here(config, monkeypatch)
    assert code == 1
    assert len(lines) == 2
    # the journeys are still checked, on their own, and validate says so
    assert lines[0] == ("config.toml:1: warning: until config.toml can be read, journeys/ is "
                        "checked without it: their purposes, attributes and templates are not "
                        "checked")
    assert lines[1].startswith(f"config.toml:{line}: TOML syntax error: ")


def test_keys_resolved_from_the_environment_cannot_be_set(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, "tick_seconds = 30\n", 'secret_key = "hunter2hunter2hunter2"\n')
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: 'secret_key' cannot be set in config.toml"])


PRODUCTION = 'mode = "production"'


def production_config(tmp_path: Path) -> Path:
    config = copy_project(tmp_path / "project")
    edit_config(config, 'mode = "dev"', PRODUCTION)
    return config


@pytest.mark.parametrize("secret", [None, "", "change-me", "CHANGEME", "secret", "placeholder",
                                    "dev-insecure-secret-key", "short-but-real"])
def test_placeholder_secrets_are_refused_in_production(tmp_path: Path,
                                                       secret: str | None) -> None:
    config = production_config(tmp_path)
    env = {} if secret is None else {"NURTURE_SECRET_KEY": secret}
    with pytest.raises(ConfigError, match="NURTURE_SECRET_KEY"):
        load_settings(config, env=env)


def test_a_real_secret_is_accepted_in_production(tmp_path: Path) -> None:
    config = production_config(tmp_path)
    settings = load_settings(config, env={"NURTURE_SECRET_KEY": "9f2c1e7a5b3d8f60a4c2e1b7",
                                          "NURTURE_PUBLIC_BASE_URL": "https://mail.acme.test"})
    assert settings.mode == "production"
    assert settings.secret_key == "9f2c1e7a5b3d8f60a4c2e1b7"


def test_production_links_must_be_https(tmp_path: Path) -> None:
    """RFC 8058: the one-click unsubscribe URI in List-Unsubscribe must be HTTPS."""
    config = production_config(tmp_path)
    with pytest.raises(ConfigError, match="public_base_url must be https://"):
        load_settings(config, env={"NURTURE_SECRET_KEY": "9f2c1e7a5b3d8f60a4c2e1b7"})


def test_dev_and_demo_modes_accept_the_development_secret(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    assert load_settings(config, env={}).mode == "dev"
    edit_config(config, 'mode = "dev"', 'mode = "demo"')
    assert load_settings(config, env={"NURTURE_SECRET_KEY": "change-me"}).mode == "demo"


def test_validate_in_production_without_a_secret_points_at_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = production_config(tmp_path)
    line = next(number for number, text in enumerate(config.read_text().splitlines(), 1)
                if text.startswith(PRODUCTION))
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: NURTURE_SECRET_KEY must be set to a real secret in production"])


def test_toml_key_lines() -> None:
    text = '''\
mode = "dev"
"quoted key" = 1
[sms]
max_segments = 2
stop_mention = { fr = "STOP", en = "STOP" }
[purposes."very.special"]
description = """
fake = "not a key"
"""
marketing = false
[[frequency_caps]]
max = 3
[[frequency_caps]]
max = 1
[scoring]
rules.first = 1
lists = [
  ["a", "b"],
]
after = 2
'''
    lines = toml_key_lines(text)
    assert lines[("mode",)] == 1
    assert lines[("quoted key",)] == 2
    assert lines[("sms",)] == 3
    assert lines[("sms", "max_segments")] == 4
    assert lines[("sms", "stop_mention")] == 5
    assert lines[("purposes", "very.special")] == 6
    assert lines[("purposes", "very.special", "description")] == 7
    assert ("purposes", "very.special", "fake") not in lines  # inside a multi-line string
    assert lines[("purposes", "very.special", "marketing")] == 10
    assert lines[("frequency_caps", 0, "max")] == 12
    assert lines[("frequency_caps", 1, "max")] == 14
    assert lines[("scoring", "rules", "first")] == 16
    assert lines[("scoring", "after")] == 20  # a nested array line is no table header
