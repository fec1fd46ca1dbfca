"""`--json` of the contact commands: one checked shape each, and what changed said truly
(created, updated naming the fields, unchanged)."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nurture.cli.output import SHAPES
from tests.cli_support import applied_project, run, run_json

EMAIL = "camille@example.com"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return applied_project(tmp_path / "p", monkeypatch)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    return path


def test_every_command_here_has_a_registered_shape() -> None:
    for command in ("contact add", "contact show", "contact forget", "consent grant",
                    "consent withdraw", "stage", "event", "event import", "import"):
        assert command in SHAPES, command
    assert "contact export" not in SHAPES  # its output is the GDPR export format


def test_contact_add_says_created_then_unchanged_then_updated(project, monkeypatch, capsys):
    added = run_json(monkeypatch, capsys, "contact add", "Camille@Example.com", "--locale",
                     "fr", "--attr", "first_name=Camille")
    assert (added["change"], added["email"], added["fields"]) == ("created", EMAIL, [])
    before = run_json(monkeypatch, capsys, "contact show", EMAIL)["contact"]

    again = run_json(monkeypatch, capsys, "contact add", EMAIL, "--locale", "fr", "--attr",
                     "first_name=Camille")
    assert (again["contact_id"], again["change"], again["fields"]) == (
        added["contact_id"], "unchanged", [])
    # nothing was written: the contact is exactly as it was
    assert run_json(monkeypatch, capsys, "contact show", EMAIL)["contact"] == before

    moved = run_json(monkeypatch, capsys, "contact add", EMAIL, "--locale", "fr",
                     "--timezone", "America/New_York", "--attr", "first_name=Camille",
                     "--attr", "company_size=120")
    assert moved["change"] == "updated"
    assert moved["fields"] == ["timezone", "attributes.company_size"]
    after = run_json(monkeypatch, capsys, "contact show", EMAIL)["contact"]
    assert after["timezone"] == "America/New_York"
    assert after["attributes"] == {"first_name": "Camille", "company_size": 120}

    # a number given: the country follows it, and both are named
    texted = run_json(monkeypatch, capsys, "contact add", EMAIL, "--phone", "+33612345678")
    assert (texted["change"], texted["fields"], texted["phone"]) == (
        "updated", ["phone", "country"], "+33612345678")

    # for people: the line starts with what changed
    code, out, _ = run(monkeypatch, capsys, "contact", "add", EMAIL, "--locale", "en")
    assert (code, out) == (0, f"updated contact {added['contact_id']}: locale\n")
    code, out, _ = run(monkeypatch, capsys, "contact", "add", EMAIL, "--locale", "en")
    assert (code, out) == (0, f"unchanged contact {added['contact_id']}: {EMAIL}\n")


def test_contact_show_json_is_utc_with_scores_rounded_once(project, monkeypatch, capsys):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    run_json(monkeypatch, capsys, "event", EMAIL, "page.viewed", "--id", "w-1")
    shown = run_json(monkeypatch, capsys, "contact show", EMAIL)
    contact = shown["contact"]
    assert contact["created_at"].endswith("Z") and contact["timezone"] == "Europe/Paris"
    assert contact["score"] == round(contact["score"], 1)
    [event] = shown["events"]
    assert (event["type"], event["source"], event["source_event_id"]) == (
        "page.viewed", "cli", "w-1")
    assert event["occurred_at"].endswith("Z")


def test_consent_says_created_unchanged_updated(project, monkeypatch, capsys):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    grant = ("--channel", "email", "--purpose", "newsletter", "--source", "signup-form")
    first = run_json(monkeypatch, capsys, "consent grant", EMAIL, *grant)
    assert (first["change"], first["previous"], first["action"]) == ("created", None,
                                                                       "granted")
    again = run_json(monkeypatch, capsys, "consent grant", EMAIL, *grant)
    assert (again["change"], again["previous"]) == ("unchanged", "granted")
    assert again["record_id"] > first["record_id"]  # appended as evidence all the same
    basis = run_json(monkeypatch, capsys, "consent grant", EMAIL, *grant, "--basis",
                     "legitimate_interest")
    assert (basis["change"], basis["legal_basis"]) == ("updated", "legitimate_interest")
    withdrawn = run_json(monkeypatch, capsys, "consent withdraw", EMAIL, "--channel", "email",
                         "--purpose", "newsletter")
    assert (withdrawn["change"], withdrawn["previous"], withdrawn["action"]) == (
        "updated", "granted", "withdrawn")
    code, out, _ = run(monkeypatch, capsys, "consent", "withdraw", EMAIL, "--channel",
                       "email", "--purpose", "newsletter")
    assert code == 0 and re.fullmatch(
        rf"unchanged consent record \d+: withdrawn email/newsletter for {EMAIL} already; "
        "appended to the ledger as evidence\n", out)
    ledger = run_json(monkeypatch, capsys, "contact show", EMAIL)["consent"]
    assert [r["action"] for r in ledger] == ["granted"] * 3 + ["withdrawn"] * 2


def test_stage_says_updated_then_unchanged(project, monkeypatch, capsys):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    moved = run_json(monkeypatch, capsys, "stage", EMAIL, "customer", "--reason", "signed")
    assert (moved["previous"], moved["stage"], moved["change"]) == ("lead", "customer",
                                                                     "updated")
    same = run_json(monkeypatch, capsys, "stage", EMAIL, "customer")
    assert (same["previous"], same["change"]) == ("customer", "unchanged")


def test_event_replay_is_unchanged(project, monkeypatch, capsys):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    first = run_json(monkeypatch, capsys, "event", EMAIL, "page.viewed", "--id", "web-1",
                     "--prop", "url=/tarifs")
    assert first["change"] == "created" and isinstance(first["event_id"], int)
    assert first["past"] is False and first["occurred_at"].endswith("Z")
    replay = run_json(monkeypatch, capsys, "event", EMAIL, "page.viewed", "--id", "web-1")
    assert (replay["change"], replay["event_id"]) == ("unchanged", None)
    # the same through the explicit subcommand, and a past event (--at)
    past = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    old = run_json(monkeypatch, capsys, "event record", EMAIL, "content.downloaded",
                   "--at", past, "--id", "dl-1")
    assert (old["change"], old["past"]) == ("created", True)
    again = run_json(monkeypatch, capsys, "event record", EMAIL, "content.downloaded",
                     "--at", past, "--id", "dl-1")
    assert again["change"] == "unchanged"
    assert len(run_json(monkeypatch, capsys, "contact show", EMAIL)["events"]) == 2


def test_import_counts_created_updated_unchanged(project, monkeypatch, capsys, tmp_path):
    rows = [{"email": "ana@example.com", "first_name": "Ana"},
            {"email": "bob@example.com", "first_name": "Bob"}]
    file = write_csv(tmp_path / "list.csv", rows)
    first = run_json(monkeypatch, capsys, "import", str(file))
    assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
    again = run_json(monkeypatch, capsys, "import", str(file))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    rows[1]["first_name"] = "Robert"
    changed = run_json(monkeypatch, capsys, "import",
                       str(write_csv(tmp_path / "list.csv", rows)))
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 1)


def test_event_import_counts_created_and_unchanged(project, monkeypatch, capsys, tmp_path):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    at = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    file = write_csv(tmp_path / "events.csv", [
        {"email": EMAIL, "type": "page.viewed", "occurred_at": at, "id": "e-1"},
        {"email": EMAIL, "type": "content.downloaded", "occurred_at": at, "id": "e-2"}])
    first = run_json(monkeypatch, capsys, "event import", str(file))
    assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
    assert first["by_type"] == {"content.downloaded": 1, "page.viewed": 1}
    again = run_json(monkeypatch, capsys, "event import", str(file))
    assert (again["created"], again["unchanged"]) == (0, 2)


def test_contact_forget_json(project, monkeypatch, capsys):
    added = run_json(monkeypatch, capsys, "contact add", EMAIL)
    run_json(monkeypatch, capsys, "consent grant", EMAIL, "--channel", "email", "--purpose",
             "newsletter")
    gone = run_json(monkeypatch, capsys, "contact forget", EMAIL, "--yes")
    assert gone["contact_id"] == added["contact_id"]
    assert gone["rows"] == sum(gone["deleted"].values()) >= 2 and gone["suppressed"] == 1
    code, _, err = run(monkeypatch, capsys, "contact", "show", EMAIL)
    assert code == 1 and "no contact" in err


def test_withdrawing_the_whole_channel_says_whether_any_purpose_moved(project, monkeypatch,
                                                                      capsys):
    run_json(monkeypatch, capsys, "contact add", EMAIL)
    run_json(monkeypatch, capsys, "consent grant", EMAIL, "--channel", "email", "--purpose",
             "newsletter")
    everything = ("--channel", "email", "--purpose", "*")
    first = run_json(monkeypatch, capsys, "consent withdraw", EMAIL, *everything)
    assert (first["change"], first["previous"]) == ("updated", "granted")
    again = run_json(monkeypatch, capsys, "consent withdraw", EMAIL, *everything)
    assert again["change"] == "unchanged"
    # the newsletter is withdrawn in force: withdrawing it alone changes nothing either
    alone = run_json(monkeypatch, capsys, "consent withdraw", EMAIL, "--channel", "email",
                     "--purpose", "newsletter")
    assert alone["change"] == "unchanged"
