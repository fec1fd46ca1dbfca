"""HELP answers and the sender's identity: written from this project's [sender] and
[sms], in the language of the number's country; production refuses the samples."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.config.settings import Settings, load_settings
from nurture.engine.runtime import Runtime
from nurture.errors import ConfigError
from nurture.web.app import create_app
from tests.fakes import add_contact
from tests.test_webhooks_twilio import inbound

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TOKEN = "test-auth-token-0123456789"
BASE = "https://nurture.test"
ENGLISH = ("Acme Planning SAS: for help, contact hello@acme.test. Msg&data rates may apply. "
           "Reply STOP to opt out.")
FRENCH = ("Acme Planning SAS : pour toute question, contactez hello@acme.test. STOP pour ne "
          "plus recevoir de SMS.")


def answer(rt: Runtime, number: str, country: str, body: str = "HELP") -> str:
    """What a signed Twilio inbound SMS from `number` is answered (the TwiML message)."""
    client = TestClient(create_app(rt, lambda: NOW))
    params = inbound(body, "SM" + number.removeprefix("+").rjust(32, "0"), From=number,
                     FromCountry=country)
    url = f"{BASE}/webhooks/twilio/sms"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    response = client.post("/webhooks/twilio/sms", data=params,
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.text
    return ElementTree.fromstring(response.text).findtext("Message") or ""


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    return make_runtime()


def test_help_from_a_us_number_is_answered_in_english_with_the_company(rt: Runtime) -> None:
    # a French-speaking contact on a +1 number: carriers there expect English
    add_contact(rt, NOW, "camille@example.com", phone="+14155550123", locale="fr",
                consents=(("sms", "newsletter"),))
    assert answer(rt, "+14155550123", "US") == ENGLISH
    assert answer(rt, "+14155550123", "US", body="INFO") == ENGLISH


def test_help_from_unknown_numbers_follows_their_country(rt: Runtime) -> None:
    assert answer(rt, "+16045550199", "CA") == ENGLISH
    assert answer(rt, "+33612345678", "FR") == FRENCH  # the project's default is English


def test_help_elsewhere_follows_the_contact_then_the_default(rt: Runtime) -> None:
    add_contact(rt, NOW, "lena@example.com", phone="+4915112345678", locale="fr")
    assert answer(rt, "+4915112345678", "DE") == FRENCH
    assert answer(rt, "+4915199999999", "DE") == ENGLISH


def test_help_texts_are_written_from_the_sender() -> None:
    settings = Settings.model_validate({
        "sender": {"company": "Boulangeries Martin", "help_contact": "01 84 80 12 34",
                   "reply_to": "contact@boulangeries-martin.fr"},
        "sms": {"help_text": {"fr": "{company} - aide : {contact}. STOP au 36180"}}})
    assert settings.sms.help_text == {"fr": "Boulangeries Martin - aide : 01 84 80 12 34. "
                                            "STOP au 36180"}
    assert settings.help_text_for("US", "fr") == settings.sms.help_text["fr"]  # the only one
    defaults = Settings.model_validate({"sender": {"company": "Boulangeries Martin",
                                                   "reply_to": "Équipe <aide@martin.fr>"}})
    assert defaults.help_text_for("FR", None) == (
        "Boulangeries Martin : pour toute question, contactez aide@martin.fr. STOP pour ne "
        "plus recevoir de SMS.")
    assert "Nurture Demo" not in " ".join(defaults.sms.help_text.values())


# ---- production refuses the samples ---------------------------------------------------

REAL = {
    "email_from": "Boulangeries Martin <bonjour@boulangeries-martin.fr>",
    "company": "Boulangeries Martin SARL",
    "postal_address": "4 place du Marché, 35000 Rennes, France",
    "sms_from": "+33757000123",
}


def production(tmp_path: Path, sender: dict[str, str], extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in sender.items())
    config.write_text(textwrap.dedent("""\
        mode = "production"
        public_base_url = "https://mail.boulangeries-martin.fr"
        [sender]
        """) + lines + "\n" + textwrap.dedent(extra))
    return config


ENV = {"NURTURE_SECRET_KEY": "9f2c1e7a5b3d8f60a4c2e1b7"}
TWILIO = """
[providers]
sms = "twilio"
[sms]
stop_mention = { fr = "STOP au 36180", en = "Reply STOP to opt out" }
"""


def test_a_real_sender_is_accepted_in_production(tmp_path: Path) -> None:
    settings = load_settings(production(tmp_path, REAL, TWILIO), env=ENV)
    assert settings.help_text_for("FR", "fr").startswith("Boulangeries Martin SARL : ")


@pytest.mark.parametrize(("sender", "extra", "refused"), [
    ({k: v for k, v in REAL.items() if k != "email_from"}, "", "[sender] email_from"),
    ({**REAL, "company": "Nurture Demo SAS"}, "", "[sender] company"),
    ({k: v for k, v in REAL.items() if k != "postal_address"}, "", "[sender] postal_address"),
    ({**REAL, "postal_address": " "}, "", "[sender] postal_address is empty"),
    (REAL, '[sms]\nhelp_text = { fr = "Nurture Demo : infos au 01 00 00 00 00" }\n',
     "[sms] help_text.fr"),
    (REAL, '[providers]\nsms = "twilio"\n', "[sms] stop_mention.fr"),  # STOP au 36111
    ({k: v for k, v in REAL.items() if k != "sms_from"}, TWILIO, "[sender] sms_from"),
])
def test_production_refuses_the_samples(tmp_path: Path, sender: dict[str, str], extra: str,
                                        refused: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(production(tmp_path, sender, extra), env=ENV)
    assert refused in str(error.value)
    assert "production" in str(error.value)
    # the same files are fine to try things out
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('mode = "production"', 'mode = "dev"'))
    assert load_settings(config, env=ENV).mode == "dev"


def test_sms_samples_do_not_matter_when_no_sms_goes_out(tmp_path: Path) -> None:
    sender = {k: v for k, v in REAL.items() if k != "sms_from"}
    assert load_settings(production(tmp_path, sender), env=ENV).mode == "production"
