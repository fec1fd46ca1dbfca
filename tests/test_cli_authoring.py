"""The authoring commands a marketer runs: init, validate, schema, preview."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from nurture.cli.common import EXAMPLES
from nurture.cli.main import app, main

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config.toml"
OK = "ok: config, journeys and templates are valid"


def passes(stdout: str) -> bool:
    """`validate` said ok, with nothing before it: the shipped project is clean."""
    return stdout.splitlines() == [OK]



@pytest.fixture(autouse=True)
def _project_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own files decide: not a database or config the shell happens to name."""
    for name in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)

def nurture(*args: str, config: Path | None = CONFIG) -> Result:
    options = ["--config", str(config)] if config else []
    return CliRunner().invoke(app, [*options, *args])


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str, str]:
    """The console script itself (`main`), in-process: how errors reach a terminal."""
    monkeypatch.setattr(sys, "argv", ["nurture", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def flat(text: str) -> str:
    """Output with line wraps undone, to read a long subject as one sentence."""
    return " ".join(text.split())


# --- validate ------------------------------------------------------------------------------


def test_validate_passes_on_the_shipped_examples() -> None:
    result = nurture("validate")
    assert result.exit_code == 0 and passes(result.stdout), result.output


@pytest.mark.slow
def test_validate_passes_through_the_console_script() -> None:
    executable = shutil.which("nurture")
    assert executable, "the `nurture` console script is not installed"
    done = subprocess.run([executable, "--config", str(CONFIG), "validate"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, "") and passes(done.stdout)


def test_validate_finds_config_toml_in_the_current_folder_or_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert passes(nurture("validate", config=None).stdout)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURTURE_CONFIG", str(CONFIG))
    assert passes(nurture("validate", config=None).stdout)


def test_validate_without_a_config_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "validate")
    assert (code, out) == (1, "")
    assert err == "error: config.toml: no such config file (use --config or NURTURE_CONFIG)\n"


# --- init ----------------------------------------------------------------------------------


def test_init_writes_a_project_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "my-nurture"
    result = nurture("init", str(target), config=None)
    assert result.exit_code == 0, result.output
    assert flat(result.stdout).startswith(f"created {target}: config.toml, journeys/, templates/.")
    # the journeys are applied (the database holds them): `nurture run` just works
    assert sorted(p.name for p in target.iterdir()) == [
        "config.toml", "journeys", "nurture.db", "templates"]
    assert "Applied 4 journeys" in flat(result.stdout)
    assert sorted(p.stem for p in (target / "journeys").glob("*.yaml")) == [
        "cold-education", "hot-conversion", "prospect-sales", "warm-consideration"]
    comparison = filecmp.dircmp(EXAMPLES / "templates", target / "templates")
    assert not comparison.left_only and not comparison.right_only
    # both languages of the mission's four series
    assert (target / "templates" / "email" / "cold" / "welcome-guide.fr.html").is_file()
    assert (target / "templates" / "email" / "cold" / "welcome-guide.en.html").is_file()
    assert (target / "templates" / "sms" / "prospect" / "call-me.fr.txt").is_file()
    validated = nurture("validate", config=target / "config.toml")
    assert validated.exit_code == 0 and passes(validated.stdout), validated.output


def test_init_into_an_empty_folder_is_fine(tmp_path: Path) -> None:
    assert nurture("init", str(tmp_path), config=None).exit_code == 0
    assert (tmp_path / "config.toml").is_file()


def test_init_into_a_non_empty_folder_fails_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run_main(monkeypatch, capsys, "init", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path} exists and is not empty\n"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # nothing written


def test_the_examples_init_writes_are_the_shipped_project() -> None:
    """`init` copies nurture/examples: it must not drift from the repository's own files."""
    for folder in ("journeys", "templates"):
        comparison = filecmp.dircmp(EXAMPLES / folder, REPO / folder)
        assert not comparison.left_only and not comparison.right_only, folder
    for path in (EXAMPLES / "journeys").glob("*.yaml"):
        assert path.read_text() == (REPO / "journeys" / path.name).read_text(), path.name


# --- schema --------------------------------------------------------------------------------


def test_schema_is_json_on_stdout() -> None:
    result = nurture("schema", config=None)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "nurture journey"


# --- preview -------------------------------------------------------------------------------


def test_preview_an_email_in_french() -> None:
    result = nurture("preview", "cold/welcome-guide", "--locale", "fr")
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert text.startswith("Subject (fr): Camille, voici votre guide pour des plannings "
                           "d'équipe sans casse-tête")
    assert "Bonjour Camille," in text
    # the footer's link, built as a real message's is: from public_base_url, signed
    assert "](http://127.0.0.1:8000/u/" in text
    assert "<p>" not in result.stdout  # text part only, unless --html


def test_preview_defaults_to_the_configured_locale_and_falls_back() -> None:
    default = nurture("preview", "cold/welcome-guide")
    assert flat(default.stdout).startswith("Subject (fr): ")
    english = nurture("preview", "cold/welcome-guide", "--locale", "en")
    assert flat(english.stdout).startswith("Subject (en): Camille, here's your guide")
    # no German files: the default locale is used, and says so
    german = nurture("preview", "cold/welcome-guide", "--locale", "de")
    assert flat(german.stdout).startswith("Subject (fr): ")


def test_preview_html_is_the_inlined_html() -> None:
    result = nurture("preview", "cold/welcome-guide", "--locale", "en", "--html")
    assert result.exit_code == 0
    assert "<h1" in result.stdout and 'style="' in result.stdout


def test_preview_an_sms_with_its_segment_count() -> None:
    result = nurture("preview", "hot/trial-reminder", "--channel", "sms", "--locale", "fr")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header, text = lines[0], lines[-1]
    assert header == "SMS (fr, 1 segment(s), GSM-7)"
    assert text.startswith("Bonjour Camille, votre essai Acme Planning vous attend")
    assert text.endswith("STOP au 36111")  # the French STOP mention, appended
    english = nurture("preview", "hot/trial-reminder", "--channel", "sms", "--locale", "en")
    assert english.stdout.splitlines()[-1].endswith("Reply STOP to opt out")


def test_preview_with_contact_data_from_a_json_file(tmp_path: Path) -> None:
    contact = tmp_path / "contact.json"
    contact.write_text(json.dumps({"first_name": "Dominique", "industry": "Hôtellerie"}),
                       encoding="utf-8")
    result = nurture("preview", "cold/welcome-guide", "--locale", "fr", "--contact-json",
                     str(contact))
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert text.startswith("Subject (fr): Dominique, voici votre guide")
    assert "Bonjour Dominique," in text and "Camille" not in text
    assert "hôtellerie" in text  # the template lower-cases the industry
    sms = nurture("preview", "prospect/call-me", "--channel", "sms", "--contact-json",
                  str(contact))
    assert sms.stdout.splitlines()[-1].startswith("Bonjour Dominique, Julie d'Acme Planning.")


def test_preview_counts_ucs2_segments(tmp_path: Path) -> None:
    """An emoji in the contact's name turns the SMS into UCS-2: fewer characters per segment."""
    contact = tmp_path / "contact.json"
    contact.write_text(json.dumps({"first_name": "Camille 🙂"}), encoding="utf-8")
    result = nurture("preview", "hot/trial-reminder", "--channel", "sms", "--locale", "fr",
                     "--contact-json", str(contact))
    lines = result.stdout.splitlines()
    header, text = lines[0], lines[-1]
    segments = -(-len(text.encode("utf-16-le")) // 2 // 67)  # 67 UTF-16 units per part
    assert header == f"SMS (fr, {segments} segment(s), UCS-2)" and segments > 1
    assert lines[1].startswith("UCS-2 because of: 🙂")


def test_preview_html_variables_are_escaped(tmp_path: Path) -> None:
    contact = tmp_path / "contact.json"
    contact.write_text(json.dumps({"first_name": "<script>alert(1)</script>"}))
    result = nurture("preview", "cold/welcome-guide", "--locale", "en", "--html",
                     "--contact-json", str(contact))
    html = result.stdout[result.stdout.index("<html"):]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_preview_of_a_missing_template_is_a_one_line_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(monkeypatch, capsys, "--config", str(CONFIG), "preview",
                              "cold/welcome-guid")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("error: no email template 'cold/welcome-guid' for locale 'fr'")


def test_preview_prints_the_subject_as_written() -> None:
    result = nurture("preview", "cold/welcome-guide", "--locale", "fr")
    assert result.stdout.splitlines()[0] == ("Subject (fr): Camille, voici votre guide pour des "
                                             "plannings d'équipe sans casse-tête")


def test_commands_find_the_project_relative_to_config(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in config.toml are relative to it, not to the folder the command runs from."""
    assert nurture("init", str(tmp_path / "elsewhere"), config=None).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = nurture("preview", "cold/welcome-guide", config=Path("elsewhere/config.toml"))
    assert result.exit_code == 0, result.output
    assert passes(nurture("validate", config=Path("elsewhere/config.toml")).stdout)


def test_preview_refuses_an_unknown_channel(monkeypatch, capsys) -> None:
    code, _out, err = run_main(monkeypatch, capsys, "--config", str(CONFIG), "preview",
                               "cold/welcome-guide", "--channel", "fax")
    assert code == 1
    assert err.strip() == "error: --channel must be email or sms, not 'fax'"
