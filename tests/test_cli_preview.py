"""`nurture preview`: the project's sender and links, a real (or file, or sample) contact,
the channel found from the template's files, SMS segments and encoding."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from nurture.config.settings import load_settings
from nurture.store.database import Database
from tests.cli_support import run, run_json
from tests.conftest import apply_config, write_project

COMPANY = "Fromagerie Dupuis SARL"
ADDRESS = "3 place du Marché, 21000 Dijon, France"
SENDER = """
[sender]
email_from = "Fromagerie Dupuis <bonjour@fromagerie-dupuis.test>"
reply_to = "equipe@fromagerie-dupuis.test"
sms_from = "Dupuis"
company = "Fromagerie Dupuis SARL"
postal_address = "3 place du Marché, 21000 Dijon, France"
"""
#: prints what a contact may lack as it is, so a missing value shows as "None" if mishandled
HELLO_SUBJECT = "Hello {{ contact.first_name }}!"
HELLO_HTML = """<p>Hi {{ contact.first_name }} [{{ contact.phone }}] [{{ contact.company }}]
[{{ contact.country }}] ({{ contact.locale }}, {{ contact.score }})</p>
<p>{{ sender.company }} · {{ sender.postal_address }}</p>
<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose sender is nobody's sample, with a template printing raw fields and
    one template in both channels."""
    config = write_project(tmp_path / "p")
    source = config.read_text()
    start = source.index("[sender]")
    end = source.index("[attributes.first_name]")
    config.write_text(source[:start] + SENDER.lstrip() + "\n"
                      + source[end:].replace("[attributes.first_name]\n",
                                             '[attributes.first_name]\nsample = "Gaspard"\n'))
    templates = config.parent / "templates"
    (templates / "email" / "test").mkdir()
    (templates / "email" / "test" / "hello.en.subject").write_text(HELLO_SUBJECT)
    (templates / "email" / "test" / "hello.en.html").write_text(HELLO_HTML)
    (templates / "sms" / "test").mkdir()
    (templates / "sms" / "test" / "hello.en.txt").write_text("Hi {{ contact.first_name }}")
    for name in ("NURTURE_DATABASE_URL", "NURTURE_SECRET_KEY", "NURTURE_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    return config


def add_contact(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                *args: str) -> None:
    code, out, err = run(monkeypatch, capsys, "contact", "add", *args)
    assert code == 0, (out, err)


def write_json(tmp_path: Path, data: object) -> str:
    path = tmp_path / "contact.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_a_stored_contact_without_a_first_name_gets_the_config_sender(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    add_contact(monkeypatch, capsys, "dominique@example.com", "--locale", "en")
    code, out, err = run(monkeypatch, capsys, "preview", "test/hello", "--contact",
                         "dominique@example.com", "--html")
    assert code == 0, err
    assert "None" not in out
    assert out.startswith("Subject (en): Hello !\n")
    assert "To: dominique@example.com\nContact: contact 1 (score 0.0)\n" in out
    assert "From: Fromagerie Dupuis <bonjour@fromagerie-dupuis.test>" in out
    assert f"{COMPANY} · {ADDRESS}" in out  # the text part and the HTML both
    assert "\nHi [] [] [] (en, 0.0)\n" in out  # the text part
    assert "Acme" not in out and "12 rue de la Paix" not in out and "sample" not in out
    assert '<a href="https://nurture.test/u/' in out  # signed, from public_base_url
    # the shipped layout, for the same contact: no name, the config's sender in the footer
    code, out, err = run(monkeypatch, capsys, "preview", "cold/welcome-guide", "--contact",
                         "dominique@example.com")
    assert code == 0, err
    assert "Hi there," in out and "None" not in out and f"{COMPANY} · {ADDRESS}" in out


def test_a_stored_contact_is_rendered_in_its_locale_with_its_score(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    add_contact(monkeypatch, capsys, "ines@example.com", "--locale", "fr", "--phone",
                "+33612345678", "--attr", "first_name=Inès")
    database = Database(load_settings(project, env={}).database_url)
    with database.begin() as conn:
        conn.execute(text("UPDATE contact SET score = 92.55"))
    database.dispose()
    data = run_json(monkeypatch, capsys, "preview", "cold/welcome-guide", "--contact",
                    "+33612345678")
    assert (data["channel"], data["locale"], data["contact"], data["contact_source"]) == (
        "email", "fr", "ines@example.com", "database")
    assert data["score"] == 92.6 and data["to"] == "ines@example.com"
    assert data["subject"].startswith("Inès, voici votre guide")
    assert f"{COMPANY} · {ADDRESS}" in data["html"] and data["segments"] is None
    english = run_json(monkeypatch, capsys, "preview", "cold/welcome-guide", "--contact", "1",
                       "--locale", "en")
    assert english["locale"] == "en" and english["subject"].startswith("Inès, here's")
    code, _out, err = run(monkeypatch, capsys, "preview", "cold/welcome-guide", "--contact",
                          "nobody@example.com")
    assert code == 1 and err.strip() == "error: no contact 'nobody@example.com'"


def test_contact_json_is_the_whole_contact(project: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Absent attributes stay absent (no sample merged in) and null reads as empty."""
    path = write_json(tmp_path, {"email": "a@example.com", "first_name": None, "phone": None,
                                 "company_size": None, "industry": "Retail"})
    code, out, err = run(monkeypatch, capsys, "preview", "test/hello", "--contact-json", path,
                         "--html")
    assert code == 0, err
    assert "None" not in out and "Gaspard" not in out and "Camille" not in out
    assert "\nHi [] [] [] (en, 0.0)\n" in out  # the text part
    assert "To: a@example.com\nContact: from --contact-json (score 0.0)\n" in out
    data = run_json(monkeypatch, capsys, "preview", "test/hello", "--contact-json", path)
    assert (data["contact"], data["contact_source"], data["subject"]) == (
        "a@example.com", "file", "Hello !")
    typo = write_json(tmp_path, {"firstname": "Ana"})
    code, _out, err = run(monkeypatch, capsys, "preview", "test/hello", "--contact-json", typo)
    assert code == 1 and "unknown field(s) firstname" in err


def test_without_a_contact_the_sample_contact_says_so(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "preview", "test/hello")
    assert code == 0, err
    assert out.startswith("Subject (en): Hello Gaspard!\n")  # config.toml's sample
    assert "Contact: the sample contact (score 42.0)\n" in out and f"{COMPANY} · {ADDRESS}" in out
    data = run_json(monkeypatch, capsys, "preview", "test/hello")
    assert (data["contact"], data["contact_source"]) == ("sample", "sample")


def test_an_sms_template_previews_as_sms_with_segments_and_encoding(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "preview", "hot/trial-reminder")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["SMS (en, 1 segment(s), GSM-7)", "From: Dupuis", "To: +33612345678",
                         "Contact: the sample contact (score 42.0)"]
    # as really sent: the advertiser named first, the config's STOP mention last
    assert lines[-1].startswith(f"{COMPANY}: Hi Gaspard, your Acme Planning trial")
    assert lines[-1].endswith("Reply STOP to opt out")
    path = write_json(tmp_path, {"phone": "+12025550100", "first_name": "Jérôme"})
    data = run_json(monkeypatch, capsys, "preview", "hot/trial-reminder", "--contact-json", path)
    assert (data["channel"], data["encoding"], data["non_gsm"]) == ("sms", "UCS-2", ["ô"])
    assert data["segments"] == -(-len(data["text"]) // 67) > 1
    assert data["to"] == "+12025550100" and data["subject"] is None
    code, out, err = run(monkeypatch, capsys, "preview", "hot/trial-reminder",
                         "--contact-json", path)
    assert out.splitlines()[1].startswith("UCS-2 because of: ô")
    # a leading sms/ names the channel too
    data = run_json(monkeypatch, capsys, "preview", "sms/prospect/call-me")
    assert (data["channel"], data["template"]) == ("sms", "prospect/call-me")


def test_a_channel_the_template_lacks_is_refused_naming_the_one_it_has(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "preview", "hot/trial-reminder", "--channel",
                         "email")
    assert (code, out) == (1, "")
    assert err.strip() == ("error: no email template 'hot/trial-reminder': it exists for sms "
                           "only (use --channel sms)")
    code, _out, err = run(monkeypatch, capsys, "preview", "cold/welcome-guide", "--channel",
                          "sms")
    assert code == 1 and "it exists for email only" in err


def test_a_template_in_both_channels_is_email_unless_asked(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "preview", "test/hello")
    assert code == 0 and "Also a sms template: --channel sms to preview it" in out
    data = run_json(monkeypatch, capsys, "preview", "test/hello", "--channel", "sms")
    assert data["channel"] == "sms" and data["text"].startswith(f"{COMPANY}: Hi Gaspard")


def test_the_preview_is_what_the_send_path_sends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Same contact, same template: the journey's message in the outbox reads as the
    preview (only the message's own id, in its links, differs)."""
    journey = """
    id: hello
    name: Hello
    purpose: newsletter
    entry: { when: "stage == 'lead'" }
    steps:
      - { id: hi, type: send, channel: email, template: test/hello }
    """
    config = write_project(tmp_path / "p", journeys={"hello": journey})
    (config.parent / "templates" / "email" / "test").mkdir()
    (config.parent / "templates" / "email" / "test" / "hello.en.subject").write_text(
        HELLO_SUBJECT)
    (config.parent / "templates" / "email" / "test" / "hello.en.html").write_text(HELLO_HTML)
    for name in ("NURTURE_DATABASE_URL", "NURTURE_SECRET_KEY", "NURTURE_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NURTURE_CONFIG", str(config))
    apply_config(config)
    add_contact(monkeypatch, capsys, "noname@example.com", "--locale", "en")
    code, out, err = run(monkeypatch, capsys, "consent", "grant", "noname@example.com",
                         "--channel", "email", "--purpose", "newsletter")
    assert code == 0, err
    shown = run_json(monkeypatch, capsys, "preview", "test/hello", "--contact",
                     "noname@example.com", "--purpose", "newsletter")
    code, out, err = run(monkeypatch, capsys, "run", "--once")
    assert code == 0, err
    [eml] = (config.parent / "outbox" / "email").glob("*.eml")
    sent = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(sent, email.message.EmailMessage)
    body = sent.get_body(("plain",))
    assert body is not None
    token = re.compile(r"/u/[^)\s\"]+")
    assert (sent["Subject"], sent["From"], sent["To"]) == (
        shown["subject"], shown["sender"], shown["to"])
    assert token.sub("/u/…", body.get_content().strip()) == token.sub("/u/…", shown["text"])
    assert "None" not in shown["text"]

