"""GDPR access and erasure (module and CLI), and the audit that keeps the consent ledger
append-only everywhere but erasure."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import SQLModel
from typer.testing import CliRunner

from nurture.cli.main import app
from nurture.compliance.hygiene import address_hash
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import ContactError, NurtureError
from nurture.intake import ledger as consent_ledger
from nurture.intake.events import IncomingEvent
from nurture.intake.ingest import ingest
from nurture.services import contacts, gdpr
from nurture.store import database as db
from nurture.store import queries as store
from tests.consent_support import API_KEY, MONDAY, SECRET, add, build, ledger, messages, rows

EMAIL = "camille@example.com"
PHONE = "+33612345678"
NURTURE = Path(__file__).resolve().parent.parent / "nurture"


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return build(tmp_path / "project")


def _history(rt: Runtime) -> int:
    """A contact with a bit of everything: consent, a sent email, an event, a handoff."""
    cid = add(rt, EMAIL, MONDAY, phone=PHONE, attributes={"first_name": "Camille"},
              consents=(("email", "newsletter"), ("sms", "marketing")))
    add(rt, "other@example.com", MONDAY)
    tick(rt, MONDAY)
    with rt.db.begin() as conn:
        ingest(conn, rt, IncomingEvent("page.viewed", "web", MONDAY, cid,
                                       properties={"url": "/pricing", "seconds": 40}), MONDAY)
        store.insert_handoff(conn, cid, "demo requested", "test", MONDAY)
    return cid


def _find(rt: Runtime, who: str) -> object:
    with rt.db.begin() as conn:
        return contacts.find_contact(conn, who)


def test_export_holds_everything(rt):
    cid = _history(rt)
    with rt.db.begin() as conn:
        data = gdpr.export_contact(conn, contacts.find_contact(conn, EMAIL))
    assert data["profile"]["email"] == EMAIL and data["profile"]["phone"] == PHONE
    assert {r["purpose"] for r in data["consent_history"]} == {"newsletter", "marketing"}
    assert data["consent_state"] and data["enrollments"] and data["handoffs"]
    assert [m["template"] for m in data["messages"]] == ["cold/welcome-guide"]
    assert "page.viewed" in {e["type"] for e in data["events"]}
    for name, _table in gdpr.CONTACT_TABLES:
        assert all(r["contact_id"] == cid for r in data[name]), name
    assert data["suppression"] == []


def test_forget_erases_every_row_and_suppresses_the_hashes(rt):
    cid = _history(rt)
    other = _find(rt, "other@example.com")
    outbox_files = list(rt.settings.outbox_path.rglob("*.eml"))
    assert len(outbox_files) == 2
    with rt.db.begin() as conn:
        erasure = gdpr.forget_contact(conn, contacts.find_contact(conn, EMAIL), MONDAY)
    assert erasure.suppressed == 2 and erasure.deleted["consent_history"] == 2
    for _name, table in gdpr.CONTACT_TABLES:
        assert rows(rt, table, contact_id=cid) == []
    assert rows(rt, db.contact, id=cid) == []
    suppressed = {r["address_hash"]: r["reason"] for r in rows(rt, db.suppression)}
    assert suppressed == {address_hash(EMAIL): "erased", address_hash(PHONE): "erased"}
    dump = json.dumps(rows(rt, db.suppression), default=str)
    assert EMAIL not in dump and PHONE not in dump  # only hashes remain
    assert gdpr.erase_outbox_files(rt.settings.outbox_path, erasure.message_ids) == 1
    assert len(list(rt.settings.outbox_path.rglob("*.eml"))) == 1
    assert ledger(rt, other.id) and messages(rt, other.id)  # type: ignore[attr-defined]


def test_after_erasure_the_address_can_be_added_but_never_consented_or_mailed(rt):
    _history(rt)
    with rt.db.begin() as conn:
        gdpr.forget_contact(conn, contacts.find_contact(conn, EMAIL), MONDAY)
        cid = contacts.add_contact(conn, rt.settings, MONDAY, email=EMAIL)
        contact = contacts.find_contact(conn, EMAIL)
        with pytest.raises(ContactError, match="suppression list"):
            consent_ledger.record_consent(conn, rt.settings, MONDAY, contact=contact,
                                    channel="email", purpose="newsletter", action="granted",
                                    source="import")
        # even consent that slipped in by another path never leads to a send
        store.append_consent(conn, contact_id=cid, channel="email", purpose="newsletter",
                             action="granted", legal_basis="consent", source="legacy",
                             address=EMAIL, evidence={}, now=MONDAY)
    tick(rt, MONDAY + timedelta(minutes=5))
    assert [(m["state"], m["skip_reason"]) for m in messages(rt, cid)] == [
        ("skipped", "suppressed")]


def _cli(rt: Runtime, *args: str) -> object:
    config = str(rt.settings.root_path / "config.toml")
    env = {"NURTURE_SECRET_KEY": SECRET, "NURTURE_API_KEY": API_KEY}
    return CliRunner().invoke(app, ["--config", config, *args], env=env)


def test_cli_export_and_forget(rt, tmp_path):
    cid = _history(rt)
    out = tmp_path / "export.json"
    result = _cli(rt, "contact", "export", EMAIL, "--output", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    exported = json.loads(out.read_text())
    assert exported["profile"]["id"] == cid and exported["consent_history"]

    refused = _cli(rt, "contact", "forget", EMAIL)
    assert isinstance(refused.exception, NurtureError)  # type: ignore[attr-defined]
    assert "--yes" in str(refused.exception)  # type: ignore[attr-defined]
    assert ledger(rt, cid)  # nothing erased without --yes

    done = _cli(rt, "contact", "forget", EMAIL, "--yes")
    assert done.exit_code == 0 and "erased" in done.output  # type: ignore[attr-defined]
    assert rows(rt, db.contact, id=cid) == []

    again = _cli(rt, "contact", "add", EMAIL, "--locale", "fr")
    assert again.exit_code == 0, again.output  # type: ignore[attr-defined]
    grant = _cli(rt, "consent", "grant", EMAIL, "--channel", "email", "--purpose", "newsletter")
    assert isinstance(grant.exception, ContactError)  # type: ignore[attr-defined]
    assert "suppression list" in str(grant.exception)  # type: ignore[attr-defined]
    new_id = _find(rt, EMAIL).id  # type: ignore[attr-defined]
    assert ledger(rt, new_id) == []
    tick(rt, MONDAY + timedelta(days=1))
    assert all(m["state"] == "skipped" for m in messages(rt, new_id))


def test_erasure_covers_every_table_holding_contact_data():
    """A new table with a contact_id must be exported and erased too: add it to
    gdpr.CONTACT_TABLES."""
    holding = {t.name for t in SQLModel.metadata.sorted_tables if "contact_id" in t.c}
    assert holding == {table.name for _name, table in gdpr.CONTACT_TABLES}


# ---- audit: the consent ledger is append-only ----------------------------------------

LEDGER_NAMES = {"consent_record", "ConsentRecord"}
WRITES = {"update", "delete"}


def _mentions_ledger(node: ast.AST, aliases: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr in LEDGER_NAMES:
            return True
        if isinstance(sub, ast.Name) and (sub.id in LEDGER_NAMES or sub.id in aliases):
            return True
    return False


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _scope_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of one scope, without descending into nested functions (their own scopes)."""
    nodes, todo = [], list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, FUNCTIONS):
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def _aliases(nodes: list[ast.AST], known: set[str]) -> set[str]:
    """Names bound to the ledger table, directly or through another name or a loop over a
    collection holding it (`for name, table in TABLES: delete(table)`)."""
    aliases = set(known)
    while True:
        found = set(aliases)
        for node in nodes:
            value = getattr(node, "value", None)
            if isinstance(node, ast.Assign | ast.AnnAssign) and value is not None \
                    and _mentions_ledger(value, aliases):
                targets: list[ast.AST] = (list(node.targets) if isinstance(node, ast.Assign)
                                          else [node.target])
            elif isinstance(node, ast.For) and _mentions_ledger(node.iter, aliases):
                targets = [node.target]
            else:
                continue
            found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if found == aliases:
            return aliases
        aliases = found


def _ledger_writes(source: str) -> list[int]:
    """Lines that update or delete consent_record: `update(db.consent_record)`,
    `t = db.consent_record; delete(t)`, `consent_record.update()`, raw SQL strings."""
    tree = ast.parse(source)
    found = []
    module_aliases = _aliases(_scope_nodes(tree), set())
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, FUNCTIONS))]:
        nodes = _scope_nodes(scope)
        aliases = _aliases(nodes, module_aliases)
        for node in nodes:
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in WRITES:
                continue
            target = node.args[0] if node.args else func
            if isinstance(func, ast.Attribute) and not node.args:
                target = func.value
            if _mentions_ledger(target, aliases):
                found.append(node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = " ".join(node.value.lower().split())
            if "update consent_record" in text or "delete from consent_record" in text:
                found.append(node.lineno)
    return sorted(set(found))


def test_audit_finds_ledger_writes():
    """The scanner itself catches every form (so the audit below cannot pass vacuously)."""
    assert _ledger_writes("delete(db.consent_record)") == [1]
    assert _ledger_writes("def f():\n    t = db.consent_record\n    conn.execute(update(t))") \
        == [3]
    assert _ledger_writes("db.consent_record.delete().where(x)") == [1]
    assert _ledger_writes("TABLES: tuple = (db.message, db.consent_record)\n"
                          "def f():\n    for table in TABLES:\n        delete(table)") == [4]
    assert _ledger_writes("sql = 'DELETE FROM  consent_record WHERE id=1'") == [1]
    assert _ledger_writes("def f():\n    t = db.message\n    update(t)\n"
                          "def g():\n    t = db.consent_record\n    select(t)") == []
    assert _ledger_writes((NURTURE / "services" / "gdpr.py").read_text())  # erasure does delete


def test_consent_ledger_is_append_only_outside_erasure():
    offenders = {}
    for path in sorted(NURTURE.rglob("*.py")):
        if path == NURTURE / "services" / "gdpr.py":
            continue
        lines = _ledger_writes(path.read_text(encoding="utf-8"))
        if lines:
            offenders[str(path.relative_to(NURTURE.parent))] = lines
    assert offenders == {}, f"consent_record updated or deleted outside gdpr.py: {offenders}"
