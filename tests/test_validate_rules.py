"""`nurture validate` rules about config.toml, and "all problems in one run" across files.

The journey and template rules have their fixtures in tests/fixtures/broken (see
tests/test_validate.py, RULES); these edit a copy of the shipped config.toml in place and
check the exact `config.toml:line` of each problem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nurture.cli.main import app
from tests.test_validate import (
    BROKEN,
    copy_project,
    edit_config,
    run_validate,
    validate_here,
)

SECRET = "9f2c1e7a5b3d8f60a4c2e1b7"


@pytest.fixture(autouse=True)
def _project_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET_KEY",
                 "NURTURE_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def line_of(config: Path, text: str) -> int:
    lines = config.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith(text))


# --- locales ---------------------------------------------------------------------------------


def test_default_locale_must_be_one_of_the_locales(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, 'default_locale = "fr"', 'default_locale = "de"')
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: default_locale 'de' is not one of locales (fr, en): every "
        "template falls back to it, and contacts without a locale get it (set it to one of "
        "them, or add it to locales)"])
    edit_config(config, 'default_locale = "de"', 'default_locale = "frr"')
    assert validate_here(config, monkeypatch)[1][0].endswith(
        "(did you mean 'fr'? set it to one of them, or add it to locales)")


def test_a_missing_translation_is_an_error_in_production(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    edit_config(config, 'mode = "dev"', 'mode = "production"')
    monkeypatch.setenv("NURTURE_SECRET_KEY", SECRET)
    monkeypatch.setenv("NURTURE_PUBLIC_BASE_URL", "https://mail.acme.test")
    for suffix in ("subject", "html"):
        (config.parent / "templates" / "email" / "cold" / f"welcome-guide.en.{suffix}").unlink()
    code, found = run_validate(config)
    assert code == 1
    assert found == [(
        "journeys/cold-education.yaml", 15, "email template 'cold/welcome-guide' has no 'en' "
        "version: contacts in 'en' get the 'fr' one (add templates/email/cold/"
        "welcome-guide.en.subject and templates/email/cold/welcome-guide.en.html)")]


def test_a_missing_translation_of_a_template_no_journey_names(tmp_path: Path) -> None:
    """The double opt-in confirmation is sent outside journeys: reported at its own file."""
    config = copy_project(tmp_path / "project")
    (config.parent / "templates" / "email" / "consent" / "confirm.en.subject").unlink()
    (config.parent / "templates" / "email" / "consent" / "confirm.en.html").unlink()
    assert run_validate(config) == (0, [(
        "templates/email/consent/confirm.fr.subject", 1, "warning: email template "
        "'consent/confirm' has no 'en' version: contacts in 'en' get the 'fr' one (add "
        "templates/email/consent/confirm.en.subject and templates/email/consent/"
        "confirm.en.html)")])


# --- fit rules: the scoring checks and the condition checks, at their line -----------------


def test_fit_rules_are_checked_like_journey_conditions(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    size = edit_config(config, 'when = "attributes.company_size >= 50 and '
                       'attributes.company_size <= 5000"', 'when = "attributes.compnay_size >= 50"')
    role = line_of(config, "when = \"attributes.role matches")
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('when = "attributes.role matches', 'when = "attributes.role =',
                                   1), encoding="utf-8")
    code, lines = validate_here(config, monkeypatch)
    assert code == 1
    assert lines == [
        f"config.toml:{role}: unexpected '=' at column 17 in \"attributes.role = "
        "'(?i)direct|head|chief|vp|coo|ceo|cto|g[ée]rant|responsable|manager'\": use '==' to "
        "compare",
        f"config.toml:{size}: scoring.fit 'company-size': condition: unknown attribute "
        "'compnay_size' (did you mean 'company_size'? known: company, company_size, "
        "first_name, industry, last_name, needs_nudge, role; declare it as "
        "[attributes.compnay_size] in config.toml, or set it with a set step)",
    ]


def test_fit_rules_compare_declared_types(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, 'when = "attributes.company_size < 10"',
                       "when = \"attributes.company_size < '10'\"")
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: scoring.fit 'too-small': condition: attributes.company_size is a "
        "number (type int) but '10' is text, so this never holds: write 10 without quotes"])


# --- the SMS sender for +1 numbers -----------------------------------------------------------

COUNTRIES = 'sms_from_countries = { US = "+12025550143", CA = "+12025550143" }'


def test_an_alphanumeric_sender_needs_numbers_for_the_us_and_canada(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    edit_config(config, COUNTRIES + "\n", "")
    line = line_of(config, 'sms_from = "AcmePlan"')
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: sender.sms_from 'AcmePlan' is a name, and carriers refuse named "
        "senders for US and Canadian (+1) numbers: SMS of hot-conversion, prospect-sales to "
        "them would not be sent (no_sender); give them a number: [sender] sms_from_countries = "
        '{ US = "+1...", CA = "+1..." }'])
    # one of the two given: the other is still missing
    edit_config(config, 'sms_from = "AcmePlan"\n',
                'sms_from = "AcmePlan"\nsms_from_countries = { US = "+12025550143" }\n')
    code, lines = validate_here(config, monkeypatch)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"config.toml:{line}: sender.sms_from 'AcmePlan' is a name")
    assert lines[0].endswith('[sender] sms_from_countries = { CA = "+1..." }')


def test_a_per_country_sender_for_plus_one_numbers_must_be_a_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, COUNTRIES,
                       'sms_from_countries = { US = "AcmeUS", CA = "+12025550143" }')
    assert validate_here(config, monkeypatch) == (1, [
        f"config.toml:{line}: sender.sms_from_countries.US 'AcmeUS' is a name, and carriers "
        "refuse named senders for +1 numbers: use a long code, toll-free or short code"])


def test_a_named_sender_is_fine_without_sms_journeys_or_with_a_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_project(tmp_path / "project")
    edit_config(config, COUNTRIES + "\n", "")
    for journey in ("hot-conversion", "prospect-sales"):  # the two that send SMS
        (config.parent / "journeys" / f"{journey}.yaml").unlink()
    # (their templates are still checked, as sent outside journeys: no STOP mention)
    assert validate_here(config, monkeypatch) == (0, [
        "ok: config, journeys and templates are valid"])
    config = copy_project(tmp_path / "numeric")
    edit_config(config, COUNTRIES + "\n", "")
    edit_config(config, 'sms_from = "AcmePlan"', 'sms_from = "+33700000000"')
    assert validate_here(config, monkeypatch)[0] == 0


# --- all problems in one run ----------------------------------------------------------------


def broken_journey(config: Path, name: str) -> None:
    shutil.copy(BROKEN / "journeys" / f"{name}.yaml", config.parent / "journeys")


UNKNOWN_STAGE = ("journeys/unknown-stage.yaml", 5, "condition: unknown stage 'leads' (did you "
                 "mean 'lead'? stages: lead, prospect, sales_accepted, customer, recycled)")


def test_config_errors_do_not_hide_journey_errors(tmp_path: Path) -> None:
    """What the file says right still holds: purposes, attributes and templates are checked
    as declared, the refused keys taking their defaults."""
    config = copy_project(tmp_path / "project")
    tick = edit_config(config, "tick_seconds = 30\n", "tick_second = 30\n")
    provider = edit_config(config, 'email = "outbox"', 'email = "mailgun"')
    broken_journey(config, "unknown-stage")
    broken_journey(config, "unknown-attribute")
    code, found = run_validate(config)
    assert code == 1
    assert [(path, line) for path, line, _ in found] == [
        ("config.toml", tick), ("config.toml", provider),
        ("journeys/unknown-attribute.yaml", 10), UNKNOWN_STAGE[:2]]
    assert found[2][2].startswith("condition: unknown attribute 'compnay_size' (did you mean "
                                  "'company_size'? known: company, company_size, first_name,")
    assert found[3] == UNKNOWN_STAGE


def test_a_refused_table_member_takes_its_default_and_the_rest_is_checked(
        tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    text = config.read_text()
    first = text.index('per = "7d"')
    config.write_text(text[:first] + 'per = "7 days"' + text[first + len('per = "7d"'):])
    per = text[:first].count("\n") + 1
    broken_journey(config, "unknown-stage")
    assert run_validate(config) == (1, [
        ("config.toml", per, "frequency_caps.per '7 days' is not valid: expected a duration "
         "such as 30m, 12h, 3d or 2w"),
        UNKNOWN_STAGE,
    ])


def test_an_unreadable_config_still_lets_journeys_be_checked(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, 'default_locale = "fr"\n', 'default_locale = "fr\n')
    broken_journey(config, "unknown-stage")
    code, found = run_validate(config)
    assert code == 1
    assert found[0] == ("config.toml", 1, "warning: until config.toml can be read, journeys/ is "
                        "checked without it: their purposes, attributes and templates are not "
                        "checked")
    assert found[1][:2] == ("config.toml", line)
    assert found[1][2].startswith("TOML syntax error: ")
    assert found[2:] == [UNKNOWN_STAGE]


def test_six_mistakes_and_a_config_error_in_one_run(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    line = edit_config(config, 'default_locale = "fr"', 'default_locale = "de"')
    broken_journey(config, "six-mistakes")
    code, found = run_validate(config)
    assert code == 1
    assert [(path, number) for path, number, _ in found] == [("config.toml", line)] + [
        ("journeys/six-mistakes.yaml", number) for number in (5, 6, 7, 14, 18, 22)]


# --- --json ----------------------------------------------------------------------------------


def validate_json(config: Path) -> tuple[int, list[dict[str, object]]]:
    result = CliRunner().invoke(app, ["--config", str(config), "validate", "--json"])
    return result.exit_code, json.loads(result.stdout)["problems"]


def test_validate_json_lists_every_problem_with_its_severity(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    code, problems = validate_json(config)
    assert (code, problems) == (0, [])  # the shipped project is clean
    sms = config.parent / "templates" / "sms" / "hot" / "trial-reminder.en.txt"
    sms.write_text(sms.read_text() + " Reply now to get your schedule planned for you today.")
    code, problems = validate_json(config)
    assert code == 0  # warnings only
    assert [(Path(str(p["path"])).relative_to(config.parent.resolve()).as_posix(), p["line"],
             p["severity"]) for p in problems] == [
        ("templates/sms/hot/trial-reminder.en.txt", 1, "warning")]
    assert "Jérôme" in str(problems[0]["message"])
    line = edit_config(config, 'default_locale = "fr"', 'default_locale = "de"')
    code, problems = validate_json(config)
    assert code == 1
    errors = [p for p in problems if p["severity"] == "error"]
    assert errors == [{"path": str(config), "line": line, "severity": "error", "message":
                       "default_locale 'de' is not one of locales (fr, en): every template "
                       "falls back to it, and contacts without a locale get it (set it to one "
                       "of them, or add it to locales)"}]
