from __future__ import annotations

import pytest

from nurture.config.settings import ReplyRule
from nurture.errors import ConfigError
from nurture.scoring.replies import (
    DEFAULT_POINTS,
    DEFAULT_RULES,
    Classification,
    Classifier,
    Intent,
    Rule,
    normalize,
    rules_from_config,
    strip_quoted,
)

OPT_OUT, OPT_IN, HELP = Intent.OPT_OUT, Intent.OPT_IN, Intent.HELP
POSITIVE, MEETING, NEGATIVE, NEUTRAL = (
    Intent.POSITIVE,
    Intent.MEETING_REQUEST,
    Intent.NEGATIVE,
    Intent.NEUTRAL,
)

EXAMPLES = [
    # carrier keywords, whole message only; casing, accents, spaces and punctuation ignored
    ("STOP", OPT_OUT),
    ("stop", OPT_OUT),
    ("Stop.", OPT_OUT),
    (" stop ", OPT_OUT),
    ("STOP !!!", OPT_OUT),
    ("Stop\u00a0!", OPT_OUT),
    ("STOPALL", OPT_OUT),
    ("Unsubscribe", OPT_OUT),
    ("END", OPT_OUT),
    ("quit", OPT_OUT),
    ("Cancel", OPT_OUT),
    ("REVOKE", OPT_OUT),
    ("optout", OPT_OUT),
    ("ARRÊT", OPT_OUT),
    ("arret", OPT_OUT),
    ("Arrêt", OPT_OUT),
    ("STOP SMS", OPT_OUT),
    ("stop  sms", OPT_OUT),
    ("Désabonner", OPT_OUT),
    ("DESABONNER", OPT_OUT),
    ("désinscription", OPT_OUT),
    ("START", OPT_IN),
    ("unstop", OPT_IN),
    ("YES", OPT_IN),
    ("Yes!", OPT_IN),
    ("HELP", HELP),
    ("info", HELP),
    ("Aide ?", HELP),
    # stop, with politeness around it, is still the whole message
    ("Stop merci", OPT_OUT),
    ("STOP svp", OPT_OUT),
    ("Stop, merci !", OPT_OUT),
    ("please stop", OPT_OUT),
    ("Arrêtez svp", OPT_OUT),
    # opt-out sentences
    ("Merci de ne plus m'envoyer de messages", OPT_OUT),
    ("merci de ne plus m\u2019envoyer de SMS", OPT_OUT),
    ("Please stop texting me", OPT_OUT),
    ("stop sending me emails", OPT_OUT),
    ("Désabonnez-moi", OPT_OUT),
    ("desabonnez moi svp", OPT_OUT),
    ("unsubscribe me", OPT_OUT),
    ("How do I unsubscribe from this?", OPT_OUT),
    ("Je ne veux plus recevoir vos SMS", OPT_OUT),
    ("Ne m'écrivez plus.", OPT_OUT),
    ("Arrêtez de m'envoyer des messages", OPT_OUT),
    ("Plus de SMS svp", OPT_OUT),
    ("Retirez-moi de votre liste", OPT_OUT),
    ("Supprimez mes données", OPT_OUT),
    ("Merci de ne pas me contacter", OPT_OUT),
    ("remove me from your list", OPT_OUT),
    ("Do not contact me", OPT_OUT),
    ("don't email me, text me instead", OPT_OUT),  # withdraws email at least: err on opt-out
    ("no more texts please", OPT_OUT),
    ("leave me alone", OPT_OUT),
    # "stop" inside an unrelated sentence is not an opt-out
    ("I can't stop thinking about your demo, call me", MEETING),
    ("Don't stop sending these, very interested", POSITIVE),
    ("Quel prix pour le forfait Stop & Go ?", POSITIVE),
    ("stopwatch", NEUTRAL),
    ("I'll stop by your booth", NEUTRAL),
    # meeting requests beat negative and positive
    ("Oui, rappelez-moi", MEETING),
    ("Rappelez-moi demain", MEETING),
    ("appelez moi", MEETING),
    ("Call me", MEETING),
    ("Can you call me back?", MEETING),
    ("I'd like to book a demo", MEETING),
    ("Une démo serait top", MEETING),
    ("demo?", MEETING),
    ("A demonstration would help", MEETING),  # listed on purpose
    ("RDV jeudi ?", MEETING),
    ("On peut prendre rendez-vous ?", MEETING),
    ("Je suis disponible mardi", MEETING),
    ("dispo demain 14h", MEETING),
    ("Available tomorrow afternoon", MEETING),
    ("meeting next week?", MEETING),
    ("On peut s'appeler demain ?", MEETING),
    ("Vous pouvez me contacter au 06 12 34 56 78", MEETING),
    ("Pas maintenant, rappelez-moi en septembre", MEETING),
    ("Not now but let's talk in June", MEETING),
    # a declined meeting is negative, not a meeting request
    ("Pas besoin de démo, merci", NEGATIVE),
    ("Pas intéressé par une démo", NEGATIVE),
    ("not interested in a demo", NEGATIVE),
    ("Don't call me", NEGATIVE),
    ("Ne m'appelez pas", NEGATIVE),
    ("Je dois annuler notre rdv", NEGATIVE),
    # negative beats positive ("pas intéressé" contains "intéressé")
    ("pas intéressé", NEGATIVE),
    ("Pas intéressée du tout", NEGATIVE),
    ("PAS INTERESSE", NEGATIVE),
    ("Je ne suis plus intéressé", NEGATIVE),
    ("Non merci", NEGATIVE),
    ("Non, merci.", NEGATIVE),
    ("non", NEGATIVE),
    ("Not interested", NEGATIVE),
    ("no thanks", NEGATIVE),
    ("No thank you, we already have a provider", NEGATIVE),
    ("pas pour le moment", NEGATIVE),
    ("Intéressé mais pas pour le moment", NEGATIVE),
    ("Nous sommes déjà équipés", NEGATIVE),
    # positive
    ("oui", POSITIVE),
    ("OUI", POSITIVE),  # "oui" alone is interest, not a carrier opt-in
    ("Oui !", POSITIVE),
    ("yes please", POSITIVE),
    ("intéressée", POSITIVE),
    ("INTERESSE", POSITIVE),
    ("Très intéressant", POSITIVE),
    ("I'm interested", POSITIVE),
    ("Je voudrais un devis", POSITIVE),
    ("Quel est le tarif ?", POSITIVE),
    ("What's the price?", POSITIVE),
    ("Sounds good", POSITIVE),
    ("ok", POSITIVE),
    ("OK 👍", POSITIVE),
    ("D'accord", POSITIVE),
    ("Plus d'infos svp", POSITIVE),
    ("No problem, sounds good", POSITIVE),
    # neutral
    ("Bonjour", NEUTRAL),
    ("Merci", NEUTRAL),
    ("Who is this?", NEUTRAL),
    ("démocratie", NEUTRAL),
    ("👍", NEUTRAL),
    ("", NEUTRAL),
    ("   ", NEUTRAL),
]


@pytest.mark.parametrize(("text", "intent"), EXAMPLES, ids=[repr(t) for t, _ in EXAMPLES])
def test_default_classification(text: str, intent: Intent) -> None:
    assert Classifier().classify(text).intent == intent


def test_keyword_match_reports_the_keyword_as_written() -> None:
    assert Classifier().classify(" arrêt. ") == Classification(OPT_OUT, "ARRÊT")


def test_pattern_match_reports_the_pattern() -> None:
    result = Classifier().classify("pas intéressé")
    assert result.intent == NEGATIVE
    assert any(result.matched in r.patterns for r in DEFAULT_RULES if r.intent == NEGATIVE)


def test_neutral_matches_nothing() -> None:
    assert Classifier().classify("Bonjour") == Classification(NEUTRAL, "")


def test_every_intent_has_default_points() -> None:
    assert set(DEFAULT_POINTS) == set(Intent)
    assert DEFAULT_POINTS[MEETING] > DEFAULT_POINTS[POSITIVE] > DEFAULT_POINTS[NEUTRAL] > 0
    assert DEFAULT_POINTS[NEGATIVE] < 0
    with pytest.raises(TypeError):
        DEFAULT_POINTS[POSITIVE] = 100  # type: ignore[index]


# --- normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  ARRÊT ! ", "arret"),
        ("Stop.", "stop"),
        ("«\u00a0Désabonnez-moi\u00a0»", "desabonnez-moi"),
        ("Merci de ne plus\n\tm\u2019envoyer  de SMS...", "merci de ne plus m'envoyer de sms"),
        ("Intéressée ?!", "interessee"),
        ("Œuvre", "oeuvre"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("OK 👍️", "ok"),
        ("...", ""),
        ("Non, merci.", "non, merci"),  # inner punctuation kept
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# --- strip_quoted ------------------------------------------------------------------------

GMAIL_FR = """Oui, rappelez-moi demain matin svp.

Le lun. 3 juin 2024 à 10:02, Claire de Acme <claire@acme.fr> a
écrit :

> Bonjour Jean,
>
> Souhaitez-vous une démo de notre outil ?
>
> Pour ne plus recevoir nos messages, répondez STOP ou désinscrivez-vous ici.
"""

OUTLOOK_EN = """Not interested, thanks.

Sent from my iPhone

________________________________
From: Claire at Acme <claire@acme.fr>
Sent: Monday, June 3, 2024 10:02 AM
To: John Smith <john@example.com>
Subject: Quick question

Hi John, would you like a demo? Reply STOP to unsubscribe.
"""

OUTLOOK_FR = """STOP

De : Claire <claire@acme.fr>
Envoyé : lundi 3 juin 2024 10:02
À : Jean Dupont <jean@example.fr>
Objet : Votre essai

Bonjour Jean, intéressé par un devis ?
"""


def test_strip_quoted_gmail_fr_with_wrapped_attribution() -> None:
    assert strip_quoted(GMAIL_FR) == "Oui, rappelez-moi demain matin svp."
    assert Classifier().classify(GMAIL_FR).intent == MEETING


def test_strip_quoted_gmail_one_line_attribution() -> None:
    text = "Le devis me va.\nLe 3 juin 2024 à 10:02, Claire <claire@acme.fr> a écrit\u00a0:\n> STOP"
    assert strip_quoted(text) == "Le devis me va."


def test_strip_quoted_outlook_en() -> None:
    assert strip_quoted(OUTLOOK_EN) == "Not interested, thanks."
    assert Classifier().classify(OUTLOOK_EN).intent == NEGATIVE


def test_strip_quoted_outlook_fr_keeps_a_bare_stop() -> None:
    assert strip_quoted(OUTLOOK_FR) == "STOP"
    assert Classifier().classify(OUTLOOK_FR) == Classification(OPT_OUT, "STOP")


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "-----Message d'origine-----",
        "-------- Message original --------",
        "---------- Forwarded message ---------",
        "On Mon, Jun 3, 2024 at 10:02 AM Claire <claire@acme.fr> wrote:",
        "Envoyé de mon iPhone",
        "Sent from my Galaxy",
        "Get Outlook for Android",
        "-- ",
    ],
)
def test_strip_quoted_cuts_at(separator: str) -> None:
    text = f"Sounds good\n\n{separator}\nPlease reply STOP to unsubscribe. Book a demo!"
    assert strip_quoted(text) == "Sounds good"


def test_strip_quoted_drops_inline_quotes_and_keeps_the_rest() -> None:
    text = "> Souhaitez-vous une démo ?\nOui\n> Quel jour ?\n  > (indenté)\nMardi 10h"
    assert strip_quoted(text) == "Oui\nMardi 10h"


def test_strip_quoted_keeps_body_lines_that_merely_look_like_headers() -> None:
    text = "Le tarif me convient.\nOn en reparle.\nDe : moi, à bientôt"
    assert strip_quoted(text) == text


def test_quoted_footer_never_reads_as_an_opt_out() -> None:
    reply = "Merci pour l'info\n\n> Répondez STOP pour ne plus recevoir nos messages.\n"
    assert Classifier().classify(reply).intent == NEUTRAL


def test_sms_text_is_untouched_by_strip_quoted() -> None:
    assert strip_quoted("  Oui, dispo jeudi  ") == "Oui, dispo jeudi"


# --- configured rules --------------------------------------------------------------------


def _classifier(*items: dict[str, object]) -> Classifier:
    return Classifier(rules_from_config(items))


def test_configured_rules_come_before_defaults() -> None:
    rules = rules_from_config([{"intent": "meeting_request", "patterns": [r"\bdevis\b"]}])
    assert rules[0] == Rule(MEETING, patterns=(r"\bdevis\b",))
    assert rules[1:] == DEFAULT_RULES


def test_configured_pattern_beats_default_pattern() -> None:
    classifier = _classifier({"intent": "meeting_request", "patterns": [r"\bdevis\b"]})
    assert classifier.classify("Je voudrais un devis") == Classification(MEETING, r"\bdevis\b")
    assert Classifier().classify("Je voudrais un devis").intent == POSITIVE


def test_configured_keyword_beats_default_keyword() -> None:
    classifier = _classifier({"intent": "positive", "keywords": ["INFO"]})
    assert classifier.classify("Info") == Classification(POSITIVE, "INFO")


def test_configured_keywords_and_patterns_ignore_accents_and_case() -> None:
    classifier = _classifier(
        {"intent": "opt_out", "keywords": ["STOP PUB"]},
        {"intent": "positive", "patterns": [r"\bbanco\b", r"\bça marche\b"]},
    )
    assert classifier.classify("stop pub.").intent == OPT_OUT
    assert classifier.classify("BANCO pour moi").intent == POSITIVE
    assert classifier.classify("Ca MARCHE").intent == POSITIVE


def test_configured_pattern_cannot_override_a_carrier_keyword() -> None:
    classifier = _classifier({"intent": "positive", "patterns": ["stop"]})
    assert classifier.classify("STOP") == Classification(OPT_OUT, "STOP")
    assert classifier.classify("stop the presses").intent == POSITIVE


def test_rules_from_config_accepts_validated_settings() -> None:
    rule = ReplyRule(intent="negative", keywords=["bof"], patterns=[r"\bpas convaincu"])
    classifier = Classifier(rules_from_config([rule.model_dump()]))
    assert classifier.classify("Bof.").intent == NEGATIVE
    assert classifier.classify("Je suis pas convaincue").intent == NEGATIVE


def test_rules_from_config_with_no_items_is_the_defaults() -> None:
    assert rules_from_config([]) == DEFAULT_RULES
    assert rules_from_config([], defaults=()) == ()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"intent": "maybe", "keywords": ["bof"]}, r"replies.rules\[0\]: unknown or missing"),
        ({"keywords": ["bof"]}, "unknown or missing intent"),
        ({"intent": "positive", "patterns": ["(unclosed"]}, r"\.patterns: '\(unclosed'"),
        ({"intent": "positive", "keywords": "banco"}, "expected a list of strings"),
        ({"intent": "positive", "patterns": [42]}, "expected a list of strings"),
        ({"intent": "positive", "keywords": ["!!"]}, "empty once normalized"),
    ],
)
def test_rules_from_config_rejects_bad_rules(item: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rules_from_config([item])
