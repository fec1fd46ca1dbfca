"""`nurture import FILE`: hygiene, merging, consent with evidence, idempotence, sends.

The fixture `tests/fixtures/import/contacts.csv` holds every kind of bad row; the CLI
runs in-process on a real SQLite project whose provider is the outbox.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import pytest
from sqlalchemy import select

from nurture.compliance.hygiene import address_hash, check_email
from nurture.config.settings import load_settings
from nurture.engine.build import build_runtime
from nurture.engine.runtime import Runtime
from nurture.intake import ledger
from nurture.services import contacts
from nurture.services.import_rows import EmailChecks
from nurture.services.importing import ImportOptions, import_contacts
from nurture.services.mx import MxChecker
from nurture.store import database as db
from nurture.store import queries as store
from tests.cli_support import HELLO
from tests.cli_support import run as nurture
from tests.conftest import write_project

FIXTURES = Path(__file__).parent / "fixtures" / "import"
ZIP = """
[attributes.zip]
description = "postal code: text, leading zeros kept"
"""
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = write_project(tmp_path / "p", ZIP, journeys={"hello": HELLO})
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    for name in ("contacts.csv", "newcomers.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return config


def runtime(config: Path) -> Runtime:
    return build_runtime(load_settings(config, env={}))


def table(config: Path, t: Any) -> list[dict[str, Any]]:
    rt = runtime(config)
    with rt.db.begin() as conn:
        found = [dict(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))
                 .mappings()]
    rt.db.dispose()
    return found


def snapshot(config: Path) -> dict[str, list[dict[str, Any]]]:
    return {t.name: table(config, t) for t in (db.contact, db.consent_record, db.consent_state,
                                               db.ledger_version, db.suppression,
                                               db.contact_change)}


def prepare(config: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
    """A contact already known, one erased, one address that bounced."""
    for args in (("contact", "add", "existing@example.com"),
                 ("contact", "add", "erased@example.com", "--attr", "first_name=Erased"),
                 ("contact", "forget", "erased@example.com", "--yes")):
        assert nurture(monkeypatch, capsys, *args)[0] == 0
    rt = runtime(config)
    with rt.db.begin() as conn:
        store.suppress(conn, address_hash("Bounced@Example.com"), "bounce", "550 no such user",
                       NOW)
    rt.db.dispose()


def import_fixture(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   file: Path, *extra: str) -> dict[str, Any]:
    code, out, err = nurture(monkeypatch, capsys, "import", file, "--consent",
                             "email:newsletter", "--source", "crm-export",
                             "--evidence", "wording_version=v3", *extra, "--json")
    assert code == 0, err
    return json.loads(out)


def test_every_kind_of_bad_row_is_counted_with_its_reason(project, monkeypatch, capsys):
    prepare(project, monkeypatch, capsys)
    version = table(project, db.ledger_version)[0]["version"]
    report = import_fixture(monkeypatch, capsys, project.parent.parent / "contacts.csv")

    assert report["rows"] == 14
    assert report["rejected_by_reason"] == {
        "bad_attribute": 1, "bad_email": 1, "bad_phone": 1, "disposable": 1, "erased": 1,
        "suppressed": 1}
    assert [(r["row"], r["reason"]) for r in report["rejected_rows"]] == [
        (3, "bad_email"), (4, "disposable"), (8, "bad_phone"), (9, "suppressed"),
        (10, "erased"), (11, "bad_attribute")]
    # rows 6 and 7 are camille again (the second in another case): merged into row 2
    assert report["duplicates_merged"] == 2
    assert (report["created"], report["updated"], report["unchanged"]) == (5, 1, 0)
    assert report["imported_rows"] == 8
    assert report["role_accounts"] == 1
    assert report["consent_recorded"] == {"email:newsletter:granted": 5}
    assert report["consent_without_address"] == 1  # the phone-only row has no email

    rejected = project.parent.parent / "contacts.csv.rejected.csv"
    with open(rejected, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["_row"], r["_reason"], r["email"]) for r in rows] == [
        ("3", "bad_email", "not-an-email"), ("4", "disposable", "x@mailinator.com"),
        ("8", "bad_phone", "lea@example.com"), ("9", "suppressed", "bounced@example.com"),
        ("10", "erased", "erased@example.com"), ("11", "bad_attribute", "paul@example.com")]
    assert rows[5]["_detail"] == "company_size: 'lots' is not a number (int)"
    assert rows[3]["_detail"] == "the email address is on the suppression list (bounce)"

    people = {c["email"] or c["phone"]: c for c in table(project, db.contact)}
    assert sorted(people) == ["+33655443322", "camille@example.com", "existing@example.com",
                              "info@acme-corp.fr", "nour@xn--bcher-kva.de", "sam@example.com"]
    camille = people["camille@example.com"]
    assert camille["phone"] == "+33612345678" and camille["country"] == "FR"
    assert camille["locale"] == "en"  # row 7, the latest, says en
    assert camille["attributes"] == {"first_name": "Camille", "last_name": "Martin",
                                     "company_size": 120, "zip": "01000"}
    assert people["sam@example.com"]["phone"] == "+33698765432"  # national number, FR region
    assert people["sam@example.com"]["attributes"]["zip"] == "75011"
    assert people["info@acme-corp.fr"]["role_account"] is True
    assert people["existing@example.com"]["attributes"] == {"first_name": "Existing",
                                                            "company_size": 40}
    assert all(c["evaluate_at"] is not None for c in people.values())

    ledger_rows = table(project, db.consent_record)
    assert {(r["address"], r["evidence"]["row"]) for r in ledger_rows} == {
        ("camille@example.com", 2), ("info@acme-corp.fr", 5), ("nour@xn--bcher-kva.de", 12),
        ("sam@example.com", 13), ("existing@example.com", 14)}
    first = ledger_rows[0]
    assert first["source"] == "crm-export" and first["evidence"]["file"] == "contacts.csv"
    assert first["evidence"]["wording_version"] == "v3"
    assert len(first["evidence"]["file_sha256"]) == 64
    # one chunk, one bump: the send path's guard sees the new consent
    assert table(project, db.ledger_version)[0]["version"] == version + 1


def test_reimporting_changes_nothing(project, monkeypatch, capsys):
    prepare(project, monkeypatch, capsys)
    file = project.parent.parent / "contacts.csv"
    import_fixture(monkeypatch, capsys, file)
    before = snapshot(project)
    rejected = (project.parent.parent / "contacts.csv.rejected.csv").read_text()

    again = import_fixture(monkeypatch, capsys, file)

    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert again["consent_recorded"] == {} and again["rejected"] == 6
    assert snapshot(project) == before
    assert (project.parent.parent / "contacts.csv.rejected.csv").read_text() == rejected


def test_rows_with_consent_are_sent_and_rows_without_are_not(project, monkeypatch, capsys):
    prepare(project, monkeypatch, capsys)
    import_fixture(monkeypatch, capsys, project.parent.parent / "contacts.csv")
    code, out, err = nurture(monkeypatch, capsys, "import",
                             project.parent.parent / "newcomers.csv", "--json")
    assert code == 0, err
    assert json.loads(out)["consent_recorded"] == {}

    assert nurture(monkeypatch, capsys, "apply")[0] == 0
    code, out, err = nurture(monkeypatch, capsys, "run", "--once")
    assert code == 0, err

    outbox = project.parent / "outbox" / "email"
    recipients = sorted(str(p.read_text()).split("\nTo: ")[1].split("\n")[0]
                        for p in outbox.glob("*.eml"))
    assert recipients == ["camille@example.com", "existing@example.com",
                          "nour@xn--bcher-kva.de", "sam@example.com"]
    messages = {(m["to_address"] or str(m["contact_id"])): (m["state"], m["skip_reason"])
                for m in table(project, db.message)}
    assert messages["info@acme-corp.fr"] == ("skipped", "role_account")
    assert messages["noconsent@example.com"] == ("skipped", "no_consent")


def test_dry_run_counts_and_writes_nothing(project, monkeypatch, capsys):
    prepare(project, monkeypatch, capsys)
    before = snapshot(project)
    report = import_fixture(monkeypatch, capsys, project.parent.parent / "contacts.csv",
                            "--dry-run")
    assert report["dry_run"] and report["created"] == 5 and report["rejected"] == 6
    assert report["rejected_file"] is None
    assert snapshot(project) == before
    assert not (project.parent.parent / "contacts.csv.rejected.csv").exists()


def test_consent_columns_mapping_and_evidence(project, monkeypatch, capsys, tmp_path):
    file = tmp_path / "crm.csv"
    file.write_text("Adresse e-mail;Newsletter opt-in;IP;Code postal;Taille\n"
                    "lea@example.com;oui;203.0.113.7;01000;1 200\n"
                    "paul@example.com;non;;;\n"
                    "remi@example.com;peut-être;;;\n", encoding="utf-8")
    nurture(monkeypatch, capsys, "contact", "add", "paul@example.com")
    nurture(monkeypatch, capsys, "consent", "grant", "paul@example.com", "--channel", "email",
            "--purpose", "newsletter")
    code, out, err = nurture(monkeypatch, capsys, "import", file, "--map",
                             "Newsletter opt-in=consent.email.newsletter", "--map",
                             "IP=evidence.ip", "--map", "Code postal=zip", "--map",
                             "Taille=company_size", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["consent_recorded"] == {"email:newsletter:granted": 1,
                                          "email:newsletter:withdrawn": 1}
    assert report["rejected_rows"] == [{"row": 4, "reason": "bad_consent", "detail":
                                        "consent.email.newsletter = 'peut-être': expected "
                                        "yes/no (oui/non, true/false, 1/0)"}]
    lea = next(c for c in table(project, db.contact) if c["email"] == "lea@example.com")
    assert lea["attributes"] == {"zip": "01000", "company_size": 1200}
    grants = [r for r in table(project, db.consent_record) if r["source"] == "import"]
    assert [(r["address"], r["action"], r["evidence"].get("ip")) for r in grants] == [
        ("lea@example.com", "granted", "203.0.113.7"), ("paul@example.com", "withdrawn", None)]


def test_a_list_never_overrides_a_withdrawal(project, monkeypatch, capsys, tmp_path):
    file = tmp_path / "list.csv"
    file.write_text("email\nlea@example.com\n")
    import_fixture(monkeypatch, capsys, file)
    nurture(monkeypatch, capsys, "consent", "withdraw", "lea@example.com", "--channel", "email",
            "--purpose", "newsletter", "--source", "one-click")
    before = snapshot(project)
    again = import_fixture(monkeypatch, capsys, file)
    assert again["consent_kept_withdrawn"] == 1 and again["consent_recorded"] == {}
    assert snapshot(project) == before


def test_a_number_that_texted_stop_stays_opted_out(project, monkeypatch, capsys, tmp_path):
    rt = runtime(project)
    with rt.db.begin() as conn:
        cid = contacts.add_contact(conn, rt.settings, NOW, email="old@example.com",
                                   phone="+33612345678")
        ledger.record_consent(conn, rt.settings, NOW, contact=contacts.find_contact(
            conn, str(cid)), channel="sms", purpose="marketing", action="granted",
            source="test")
        ledger.withdraw_number(conn, NOW, phone="+33612345678", source="twilio",
                               evidence={"text": "STOP"})
    rt.db.dispose()
    file = tmp_path / "sms.csv"
    file.write_text("email,phone\nnew@example.com,06 12 34 56 78\n")
    code, out, err = nurture(monkeypatch, capsys, "import", file, "--consent", "sms:marketing",
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["number_opt_outs_inherited"] == 1
    assert report["consent_kept_withdrawn"] == 1 and report["consent_recorded"] == {}
    new = next(c for c in table(project, db.contact) if c["email"] == "new@example.com")
    states = {(s["channel"], s["purpose"]): s["action"] for s in table(project, db.consent_state)
              if s["contact_id"] == new["id"]}
    assert states == {("sms", "*"): "withdrawn"}


def test_xlsx_cells_import_like_csv(project, monkeypatch, capsys, tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Email", "Phone", "zip", "company_size", "first_name"])
    sheet.append(["Ana@Example.com", 33612345678, "01000", 120.0, "Ana"])
    sheet.append(["bob@example.com", None, 75011, None, "Bob"])
    file = tmp_path / "list.xlsx"
    book.save(file)
    code, out, err = nurture(monkeypatch, capsys, "import", file, "--json")
    assert code == 0, err
    assert json.loads(out)["created"] == 2
    people = {c["email"]: c for c in table(project, db.contact)}
    assert people["ana@example.com"]["phone"] == "+33612345678"
    assert people["ana@example.com"]["attributes"] == {"zip": "01000", "company_size": 120,
                                                       "first_name": "Ana"}
    assert people["bob@example.com"]["attributes"]["zip"] == "75011"


@pytest.mark.parametrize(("args", "message"), [
    (("--map", "Nope=email"), "error: --map 'Nope': no such column"),
    (("--map", "first_name=shoe_size"), "error: --map first_name=shoe_size: 'shoe_size' is "
                                        "not a contact field"),
    (("--consent", "email:spam"), "error: consent 'email:spam': unknown purpose 'spam'"),
    (("--consent", "fax:newsletter"), "error: consent 'fax:newsletter': expected "
                                      "CHANNEL:PURPOSE"),
    (("--consent", "email:newsletter", "--basis", "contract"),
     "error: purpose 'newsletter' does not accept the basis 'contract'"),
])
def test_mapping_errors_are_one_line(project, monkeypatch, capsys, args, message):
    code, _, err = nurture(monkeypatch, capsys, "import", project.parent.parent / "newcomers.csv",
                           *args)
    assert code == 1 and err.strip().startswith(message), err
    assert table(project, db.contact) == []


def test_a_file_without_an_address_column_is_refused(project, monkeypatch, capsys, tmp_path):
    file = tmp_path / "names.csv"
    file.write_text("name,city\nLéa,Lyon\n")
    code, _, err = nurture(monkeypatch, capsys, "import", file)
    assert code == 1 and "no email or phone column among name, city" in err


FIT = """
[[scoring.fit]]
name = "size"
when = "attributes.company_size >= 50"
points = 30
"""


def test_fit_follows_the_imported_profile_and_chunks_bump_the_ledger(tmp_path):
    config = write_project(tmp_path / "p", FIT)
    rt = runtime(config)
    file = tmp_path / "five.csv"
    file.write_text("email,company_size\n" + "".join(f"u{i}@example.com,{i * 30}\n"
                                                     for i in range(5)))
    with rt.db.begin() as conn:
        before = store.ledger_version(conn)
    report = import_contacts(rt, file, ImportOptions(consents=["email:newsletter"], chunk=2),
                             NOW)
    assert report.created == 5
    with rt.db.begin() as conn:
        assert store.ledger_version(conn) == before + 3  # three chunks, each its own bump
        fits = {r.email: r.fit for r in conn.execute(select(db.contact))}
        changes = conn.execute(select(db.contact_change).where(
            db.contact_change.c.field == "fit")).mappings().all()
    assert fits == {"u0@example.com": 0, "u1@example.com": 0, "u2@example.com": 30,
                    "u3@example.com": 30, "u4@example.com": 30}
    assert {c["rule"] for c in changes} == {"size"} and len(changes) == 3


# ---- MX -------------------------------------------------------------------------------


@contextmanager
def dns_server(answers: dict[str, str | None], silent: bool = False) -> Iterator[Any]:
    """A DNS server on 127.0.0.1: MX answers per domain ("10 mx.example.", "0 ." for a
    null MX, None for NXDOMAIN); `silent` never answers (a dead resolver). Counts the
    queries it got."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    state = {"queries": 0, "stop": False}

    def serve() -> None:
        while not state["stop"]:
            try:
                data, peer = sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            state["queries"] += 1
            if silent:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text().rstrip(".")
            response = dns.message.make_response(query)
            found = answers.get(name)
            if found is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "MX", found))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = sock.getsockname()[1]
    try:
        yield resolver, state
    finally:
        state["stop"] = True
        thread.join()
        sock.close()


def test_mx_check_refuses_domains_that_take_no_mail(tmp_path):
    config = write_project(tmp_path / "p")
    file = tmp_path / "mx.csv"
    file.write_text("email\na@mail.example.net\nb@mail.example.net\nc@nomail.example.net\n"
                    "d@null.example.net\n")
    answers = {"mail.example.net": "10 mx.mail.example.net.", "null.example.net": "0 ."}
    with dns_server(answers) as (resolver, state):
        checker = MxChecker(resolver, timeout=2)
        report = import_contacts(runtime(config), file,
                                 ImportOptions(check_mx=True, mx=checker), NOW)
    assert report.created == 2 and report.mx_unchecked == 0
    assert [(r.row, str(r.reason), r.detail) for r in report.rejected] == [
        (4, "no_mx", "nomail.example.net accepts no mail (no usable MX record)"),
        (5, "no_mx", "null.example.net accepts no mail (no usable MX record)")]
    assert state["queries"] == 3  # one per domain


def test_a_dead_resolver_is_given_up_on_not_waited_for(tmp_path):
    config = write_project(tmp_path / "p")
    file = tmp_path / "many.csv"
    file.write_text("email\n" + "".join(f"a@domain{i}.example.net\n" for i in range(40)))
    with dns_server({}, silent=True) as (resolver, state):
        checker = MxChecker(resolver, timeout=0.2, workers=4, give_up_after=3)
        report = import_contacts(runtime(config), file,
                                 ImportOptions(check_mx=True, mx=checker), NOW)
    assert report.created == 40 and report.rejected == []
    assert report.mx_given_up and report.mx_unchecked == 40
    # the lookups in flight when it gave up, not one per domain
    assert checker.lookups <= 3 + 4 and state["queries"] < 40


@pytest.mark.parametrize("address", [
    "Bob@example.com", "a.b+news@Example.COM", "a..b@example.com", ".a@example.com",
    "info@example.com", "no_reply@example.com", "x" * 65 + "@example.com", "é@example.com",
    '"quoted"@example.com', "y@mailinator.com", "Y.Z@Mailinator.com", "a@example.com.",
    "a@sub.example.com", " padded@example.com ",
])
def test_the_per_file_email_check_answers_as_check_email(address):
    checks = EmailChecks()
    for seen in ("first@example.com", "first@mailinator.com", "first@example.com."):
        assert checks(seen) == check_email(seen)
    assert checks(address) == check_email(address)


@pytest.mark.postgres
def test_import_and_reimport_on_postgresql(tmp_path, pg_url):
    from nurture.services.event_import import EventImportOptions, import_events
    from nurture.store import schema
    from nurture.store.database import Database

    config = write_project(tmp_path / "p", ZIP)
    database = Database(pg_url)
    schema.upgrade(database)
    database.dispose()
    rt = build_runtime(load_settings(config, env={"NURTURE_DATABASE_URL": pg_url}))
    file = tmp_path / "contacts.csv"
    shutil.copy(FIXTURES / "contacts.csv", file)
    options = ImportOptions(consents=["email:newsletter"], chunk=3)
    first = import_contacts(rt, file, options, NOW)
    assert (first.created, first.merged, len(first.rejected)) == (8, 2, 4)
    with rt.db.begin() as conn:
        states = conn.execute(select(db.consent_state)).mappings().all()
        records = conn.execute(select(db.consent_record)).mappings().all()
    assert len(states) == len(records) == 7
    assert {s["record_id"] for s in states} == {r["id"] for r in records}
    again = import_contacts(rt, file, options, NOW)
    assert (again.created, again.updated, again.unchanged, sum(again.consents.values())) == (
        0, 0, 8, 0)
    events = tmp_path / "events.csv"
    events.write_text("email,type,occurred_at\n"
                      f"camille@example.com,content.downloaded,{NOW.isoformat()}\n")
    assert import_events(rt, events, EventImportOptions(), NOW).stored == 1
    rt.db.dispose()
