"""The operator's commands: contact, consent, event, run --once, status, show, demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import HELLO, applied_project, run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return applied_project(tmp_path / "p", monkeypatch, {"hello": HELLO})


def test_contact_consent_run_and_show(project, monkeypatch, capsys):
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    code, out, _ = nurture("contact", "add", "Camille@Example.com", "--locale", "fr",
                           "--timezone", "Europe/Paris", "--attr", "first_name=Camille",
                           "--attr", "company_size=120")
    assert code == 0 and out == "created contact 1: camille@example.com\n"
    code, out, _ = nurture("contact", "add", "nobody@example.com")
    assert code == 0
    code, out, _ = nurture("consent", "grant", "camille@example.com", "--channel", "email",
                           "--purpose", "newsletter", "--source", "signup-form",
                           "--evidence", "wording_version=v3", "--evidence", "ip=203.0.113.7")
    assert code == 0 and out.startswith("created consent record 1: granted email/newsletter "
                                       "for camille@example.com")

    code, out, _ = nurture("run", "--once")
    assert code == 0 and "entered=2" in out and "no_consent=1" in out
    outbox = list((project.parent / "outbox" / "email").glob("*.eml"))
    assert len(outbox) == 1

    code, out, _ = nurture("contact", "show", "camille@example.com", "--json")
    shown = json.loads(out)
    assert shown["contact"]["attributes"] == {"first_name": "Camille", "company_size": 120}
    assert [m["state"] for m in shown["messages"]] == ["sent"]
    [grant] = shown["consent"]
    assert grant["evidence"] == {"wording_version": "v3", "ip": "203.0.113.7"}
    code, out, _ = nurture("contact", "show", "nobody@example.com", "--json")
    assert [(m["state"], m["skip_reason"]) for m in json.loads(out)["messages"]] == [
        ("skipped", "no_consent")]

    code, out, _ = nurture("consent", "withdraw", "camille@example.com", "--channel", "email",
                           "--purpose", "newsletter", "--source", "phone-call")
    assert code == 0
    code, out, _ = nurture("contact", "show", "camille@example.com")
    assert code == 0 and "withdrawn" in out and "Consent history" in out

    code, out, _ = nurture("status", "--json")
    status = json.loads(out)
    assert status["messages_by_state"] == {"sent": 1, "skipped": 1}


def test_event_is_recorded_once_per_source_id(project, monkeypatch, capsys):
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    nurture("contact", "add", "lea@example.com")
    code, out, _ = nurture("event", "lea@example.com", "page.viewed", "--prop", "url=/tarifs",
                           "--prop", "seconds=45", "--id", "web-1")
    assert code == 0 and out.startswith("created event ")
    code, out, _ = nurture("event", "lea@example.com", "page.viewed", "--id", "web-1")
    assert code == 0 and out.startswith("unchanged event web-1: already recorded")
    code, out, _ = nurture("contact", "show", "lea@example.com", "--json")
    [event] = json.loads(out)["events"]
    assert event["properties"] == {"url": "/tarifs", "seconds": 45}


@pytest.mark.parametrize(("args", "message"), [
    (("contact", "add", "not-an-email"), "error: email 'not-an-email' refused (syntax)"),
    (("contact", "add", "x@mailinator.com"), "error: email 'x@mailinator.com' refused "
                                             "(disposable)"),
    (("contact", "show", "ghost@example.com"), "error: no contact 'ghost@example.com'"),
    (("event", "ghost@example.com", "page.viewed"), "error: no contact 'ghost@example.com'"),
    (("contact", "add", "a@example.com", "--timezone", "Mars/Olympus"),
     "error: unknown time zone 'Mars/Olympus' (use an IANA name)"),
    (("contact", "add", "a@example.com", "--attr", "oops"),
     "error: --attr 'oops' is not key=value"),
])
def test_errors_are_one_line_and_exit_1(project, monkeypatch, capsys, args, message):
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 1
    assert err.strip().splitlines()[0].startswith(message)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_event_type_and_purpose_are_refused(project, monkeypatch, capsys):
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    nurture("contact", "add", "lea@example.com")
    code, _, err = nurture("event", "lea@example.com", "page.veiwed")
    assert code == 1 and "unknown event type 'page.veiwed'" in err
    code, _, err = nurture("consent", "grant", "lea@example.com", "--channel", "email",
                           "--purpose", "spam")
    assert code == 1 and "unknown purpose 'spam'" in err


def test_demo_runs_the_engine_and_fills_the_outbox(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "demo"
    code, out, _ = run(monkeypatch, capsys, "demo", str(folder), "--days", "14")
    assert code == 0, out
    assert "Contacts after the simulation" in out
    assert "prospect" in out                       # the demo request qualified Camille
    emails = list((folder / "outbox" / "email").glob("*.eml"))
    assert len(emails) >= 5
    assert "no_consent" in out                     # the contact without consent got nothing
    # a second run resets its own folder; another folder is never overwritten
    assert run(monkeypatch, capsys, "demo", str(folder), "--days", "1")[0] == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run(monkeypatch, capsys, "demo", str(other))
    assert code == 1 and "not a demo folder" in err


def test_run_refuses_a_project_validate_rejects(project, monkeypatch, capsys):
    """`validate` means the daemon never runs what it rejects: one line, exit 1."""
    journeys = project.parent / "journeys"
    (journeys / "hello.yaml").write_text(HELLO.replace("duration: 3d", "duration: soon"))
    code, out, err = run(monkeypatch, capsys, "run", "--once")
    assert code == 1 and out == ""
    assert err.startswith("error: not starting: ") and "hello.yaml" in err
    assert len(err.strip().splitlines()) == 1
    for path in journeys.iterdir():
        path.unlink()
    journeys.rmdir()
    code, _, err = run(monkeypatch, capsys, "run", "--once")
    assert code == 1 and "journeys folder" in err and "does not exist" in err


def test_shell_completion_is_installable(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0 and "--install-completion" in out and "--show-completion" in out


def test_tick_summary_counts_failures_and_retries_by_cause(project, monkeypatch, capsys):
    """An unwritable outbox: the message is retried later, and the summary says why."""
    nurture = lambda *a: run(monkeypatch, capsys, *a)  # noqa: E731
    nurture("contact", "add", "camille@example.com", "--locale", "fr")
    nurture("consent", "grant", "camille@example.com", "--channel", "email",
            "--purpose", "newsletter", "--source", "signup-form")
    (project.parent / "outbox").mkdir(exist_ok=True)
    (project.parent / "outbox" / "email").write_text("a file where the folder goes")
    code, out, _ = nurture("run", "--once")
    assert code == 0
    assert "messages failed: none; retrying: outbox_unwritable=1" in out
