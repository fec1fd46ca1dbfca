"""Reply intent: what a lead's SMS or email reply means, in French or English.

Rules are tried in order, in two passes; the first match wins. (1) Keywords match the WHOLE
message only, with carrier semantics: "STOP" alone opts out, as at Twilio; "stop" inside a
sentence does not. (2) Patterns, regular expressions searched anywhere, rule by rule.

Both passes see `normalize(strip_quoted(text))`: quoted history goes first, so our own footer
("répondez STOP", "se désinscrire") quoted back in a reply never reads as an opt-out. Case
and accents never matter: keywords are normalized like the text; patterns are compiled with
IGNORECASE after their accents are stripped ("arrêt" == "arret").

Default precedence: carrier keywords; opt-out sentences; declined meetings ("pas besoin de
démo" is no meeting request); meeting requests; negative (before positive, since "pas
intéressé" contains "intéressé"); positive; else neutral. Word boundaries keep "stopwatch"
from "stop" and "démocratie" from "démo"; "demonstration" is listed on purpose.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from nurture.errors import ConfigError


class Intent(StrEnum):
    #: stop all messages on this channel: consent withdrawn
    OPT_OUT = "opt_out"
    #: carrier opt-in keyword alone (START, UNSTOP, YES)
    OPT_IN = "opt_in"
    #: carrier help keyword alone (HELP, INFO, AIDE)
    HELP = "help"
    #: interest: yes, interested, asks for a price or a quote
    POSITIVE = "positive"
    #: asks for a call, a demo or a meeting: the strongest signal
    MEETING_REQUEST = "meeting_request"
    #: declines: not interested, no thanks, not now
    NEGATIVE = "negative"
    #: a human replied; nothing more is known
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Rule:
    intent: Intent
    #: whole-message keywords (case- and accent-insensitive)
    keywords: tuple[str, ...] = ()
    #: regular expressions searched anywhere in the normalized message
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Classification:
    intent: Intent
    #: the keyword or pattern (as written in its rule) that matched; "" for neutral
    matched: str


#: score points per intent (config [replies] points may override them)
DEFAULT_POINTS: Mapping[Intent, float] = MappingProxyType({
    Intent.OPT_OUT: 0.0,
    Intent.OPT_IN: 0.0,
    Intent.HELP: 0.0,
    Intent.POSITIVE: 15.0,
    Intent.MEETING_REQUEST: 40.0,
    Intent.NEGATIVE: -20.0,
    Intent.NEUTRAL: 2.0,
})

# --- default rules (patterns are written against normalized text: lowercase, no accents) --

_DAYS = (
    "lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
    "|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
)
_WHEN = (
    f"{_DAYS}|demain|apres-demain|aujourd'hui|ce matin|cet apres-midi|cette semaine"
    "|la semaine prochaine|semaine prochaine|tomorrow|today|this week|next week"
    "|this morning|this afternoon"
)
_MEETING_NOUNS = (
    "demos?|demonstrations?|rdv|rendez[- ]vous|reunions?|visios?|meetings?|calls?"
    "|appels?|rappels?|rencontres?"
)
# "don't stop sending", "can't stop thinking", "never call me": the verb is negated
_NOT = r"(?<!n't )(?<!nt )(?<!not )(?<!never )"
_POLITE = (
    r"please|pls|plz|now|it|thanks|thank you|thx|merci|svp|stp|s'il vous plait"
    r"|s'il te plait|sms|messages?|texts?|e-?mails?|mails?|spam|all|everything|tout"
    r"|stop|arret"
)

_OPT_OUT_KEYWORDS = (
    "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "REVOKE",
    "OPTOUT", "OPT OUT", "OPT-OUT", "ARRÊT", "ARRÊTER", "STOP SMS", "DÉSABONNER",
    "DÉSABONNEMENT", "DÉSINSCRIRE", "DÉSINSCRIPTION",
)

_OPT_OUT_PATTERNS = (
    # "stop" / "arrêtez" alone give or take politeness: "Stop merci", "please stop", "STOP svp !"
    rf"^(?:(?:please|pls|svp|merci|ok)\W+)?(?:stop|arret(?:e[rz]?)?)(?:\W+(?:{_POLITE}))*$",
    rf"{_NOT}\bstop (?:texting|messaging|e-?mailing|mailing|sending|contacting|calling"
    r"|spamming|bothering|writing)\b",
    r"\bunsub\w*",
    r"\bopt(?:-| )?(?:me )?out\b",
    r"\b(?:remove|delete|erase) (?:me|my (?:phone )?(?:number|e-?mail|address|details|data))\b",
    r"\btake me off\b",
    # erring on the side of opt-out: "don't email me, text me" withdraws at least email
    r"\b(?:don't|dont|do not) (?:ever )?(?:contact|text|message|e-?mail|spam) me\b",
    r"\b(?:don't|dont|do not) (?:ever )?send me (?:again|anymore|any ?more|anything)\b",
    r"\bno more (?:texts|messages|e-?mails|sms|mails|spam)\b",
    r"\bleave me alone\b",
    r"\b(?:desabonn|desinscri|desincri)\w*",
    r"\bne (?:plus|jamais) (?:me |m'|nous )?(?:envoyer|contacter|ecrire|appeler|relancer"
    r"|solliciter|deranger|texter|spammer)",
    r"\bne pas (?:me |m')(?:contacter|relancer|solliciter|deranger|spammer)\b",
    r"\bne (?:me |m')?(?:envoy|contact|ecri|appel|rappel|relanc|sollicit|derang|spamm)\w*"
    r" (?:plus|jamais)\b",
    r"\b(?:veux|souhaite|desire) plus (?:recevoir|etre (?:contacte|sollicite|relance|derange))",
    r"\barret(?:e|ez|er)? (?:de |d')(?:m'|me |nous )?(?:envoyer|ecrire|contacter|appeler"
    r"|spammer|harceler|relancer|deranger|texter)",
    r"^(?:(?:merci|svp)\W+)?(?:plus|pas|stop) (?:de |d'|aux )(?:sms|messages?|mails?"
    r"|e-?mails?|textos?|relances?|spam|pubs?)\b",
    r"\b(?:retirez|supprimez|effacez|enlevez|retire|supprime|efface|enleve)[- ](?:moi"
    r"|mon (?:numero|adresse|e-?mail|contact)|mes (?:donnees|coordonnees))\b",
    r"\b(?:laissez|laisse|foutez|fichez)[- ]moi (?:tranquille|la paix)\b",
)

_DECLINED_MEETING = (
    rf"\bpas (?:besoin|envie) (?:de (?:la |une? )?|d'une? |d')(?:{_MEETING_NOUNS})\b",
    rf"\b(?:pas|plus) interesse\w* (?:par|pour) (?:une? |la |le |les |des |vos |votre )?"
    rf"(?:{_MEETING_NOUNS})\b",
    rf"\b(?:no need for|not interested in|(?:don't|dont|do not) (?:want|need))"
    rf" (?:a |an |any |the |your )?(?:{_MEETING_NOUNS})\b",
    r"\b(?:don't|dont|do not|never) call me\b",
    r"\bne (?:m'|me )(?:r?appel|telephon)\w* pas\b",
    rf"\b(?:cancel|annul)\w* (?:(?:the|my|our|le|la|mon|ma|notre|ce|cette) )?"
    rf"(?:{_MEETING_NOUNS})\b",
)

_MEETING = (
    rf"{_NOT}\b(?:call|phone|ring) (?:me|us)\b",
    r"\bgive (?:me|us) a (?:call|ring)\b",
    r"\bcall (?:me )?back\b",
    r"\b(?:book|schedule|set up|arrange|organi[sz]e|plan) (?:a |an )?(?:demo|call|meeting|time"
    r"|appointment|slot)\b",
    r"\b(?:can|could) we (?:talk|speak|chat|meet|have a call)\b",
    r"\blet'?s (?:talk|meet|chat|speak)\b",
    rf"\b(?:available|free|disponibles?|dispos?|libres?) (?:on |le |ce |cette |la )?(?:{_WHEN})\b",
    r"\b(?:demos?|demonstrations?|meetings?|appointments?|rdv|rendez[- ]vous|reunions?"
    r"|visio(?:conference)?s?|creneaux?)\b",
    r"\b(?:r?appel(?:ez|le|lez|er)?|telephonez|contactez)[- ](?:moi|nous)\b",
    r"\b(?:m'|me )(?:r?appeler|telephoner|contacter)\b",
    r"\b(?:on|nous) (?:peut|pourrait|pouvons|pourrions) (?:s'appeler|se parler|se voir"
    r"|echanger|en parler|en discuter)\b",
    r"\bpouvons[- ]nous (?:echanger|nous appeler|nous voir|en parler|en discuter)\b",
    r"\b(?:prendre|fixer|caler|planifier|organiser|programmer|faire) (?:un |une )?(?:rdv"
    r"|rendez-vous|creneau|appel|call|point|echange|demo|reunion|visio)\b",
    r"\bun call\b",
)

_NEGATIVE = (
    r"\b(?:pas|plus) (?:du tout |vraiment |trop |tellement |encore )?interess",
    r"\bnot (?:really |very |at all |currently |yet )?interested\b",
    r"\bno longer interested\b",
    r"\bno\W+thank(?:s| you)\b",
    r"\bnon\W+merci\b",
    r"^(?:non|nan|nope)\b",
    r"^no\b(?!\W+(?:problem|prob|worries|worry)\b)",
    r"\bpas (?:pour )?(?:le moment|l'instant|maintenant|tout de suite|cette annee)\b",
    r"\bnot (?:right now|now|at the moment|at this time|this year)\b",
    r"\b(?:pas (?:de |d')?besoin|no need)\b",
    r"\b(?:pas (?:de |le )?budget|no budget)\b",
    r"\b(?:not for (?:us|me)|pas pour (?:nous|moi)|pas la peine)\b",
    r"\balready (?:have|use|using|work with|working with|signed|chose|chosen|found)\b",
    r"\bdeja (?:equipes?|un (?:fournisseur|prestataire|partenaire|outil|contrat|logiciel)"
    r"|une solution)\b",
)

_POSITIVE = (
    r"\b(?:oui|ouais|yes|yep|yeah|sure|ok|okay|d'accord|daccord|parfait|super|genial|great"
    r"|perfect|absolutely|volontiers|avec plaisir|carrement|why not|pourquoi pas"
    r"|je veux bien|bien sur|of course)\b",
    r"\binteress(?:e|ee|es|ees|ant|ante|ants|antes)\b",
    r"\binterested\b",
    r"\b(?:devis|tarifs?|prix|prices?|pricing|quote|quotation|costs?|cout|combien|how much)\b",
    r"\bsounds (?:good|great|interesting|perfect)\b",
    r"\b(?:more|plus d'|d'autres|des) ?(?:infos?|informations?|details)\b",
    r"\b(?:send|envoyez|envoie)[- ](?:me|moi|nous)\b",
)

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(Intent.OPT_OUT, keywords=_OPT_OUT_KEYWORDS),
    Rule(Intent.OPT_IN, keywords=("START", "UNSTOP", "YES")),
    Rule(Intent.HELP, keywords=("HELP", "INFO", "AIDE")),
    Rule(Intent.OPT_OUT, patterns=_OPT_OUT_PATTERNS),
    Rule(Intent.NEGATIVE, patterns=_DECLINED_MEETING),
    Rule(Intent.MEETING_REQUEST, patterns=_MEETING),
    Rule(Intent.NEGATIVE, patterns=_NEGATIVE),
    Rule(Intent.POSITIVE, patterns=_POSITIVE),
)


class Classifier:
    """Classifies reply text with `rules`, compiled once; first match wins (see module doc)."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self._keywords: dict[str, tuple[Intent, str]] = {}
        self._patterns: list[tuple[Intent, str, re.Pattern[str]]] = []
        for rule in rules:
            for keyword in rule.keywords:
                self._keywords.setdefault(normalize(keyword), (rule.intent, keyword))
            for pattern in rule.patterns:
                self._patterns.append((rule.intent, pattern, _compile(pattern)))

    def classify(self, text: str) -> Classification:
        message = normalize(strip_quoted(text))
        if message in self._keywords:
            return Classification(*self._keywords[message])
        for intent, source, regex in self._patterns:
            if regex.search(message):
                return Classification(intent, source)
        return Classification(Intent.NEUTRAL, "")


def rules_from_config(
    items: Iterable[Mapping[str, object]], *, defaults: Sequence[Rule] = DEFAULT_RULES
) -> tuple[Rule, ...]:
    """Configured rules ([[replies.rules]] as dicts) followed by `defaults`, so they win.

    Within each pass (keywords, then patterns) configured rules are tried first; a
    configured pattern cannot override a default whole-message keyword such as STOP.
    Raises ConfigError naming the rule for an unknown intent or a pattern that does not
    compile.
    """
    rules = []
    for index, item in enumerate(items):
        where = f"replies.rules[{index}]"
        try:
            intent = Intent(str(item["intent"]))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{where}: unknown or missing intent {item.get('intent')!r}") from e
        keywords = _strings(item.get("keywords", ()), f"{where}.keywords")
        patterns = _strings(item.get("patterns", ()), f"{where}.patterns")
        if any(not normalize(k) for k in keywords):
            raise ConfigError(f"{where}.keywords: a keyword is empty once normalized")
        for pattern in patterns:
            try:
                _compile(pattern)
            except re.error as e:
                raise ConfigError(f"{where}.patterns: {pattern!r} does not compile: {e}") from e
        rules.append(Rule(intent, keywords=keywords, patterns=patterns))
    return (*rules, *defaults)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    items = tuple(value)
    if not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return items


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_fold(pattern), re.IGNORECASE)


# --- text normalization -------------------------------------------------------------------

_CHAR_MAP = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
                           "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"})


def _fold(text: str) -> str:
    """Curly apostrophes to ', ligatures spelled out, NFKD with the marks (accents) dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_CHAR_MAP))
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _is_edge(char: str) -> bool:
    """Whitespace, punctuation, symbols (emoji) and invisible format characters."""
    return unicodedata.category(char)[0] in "PSZC"


def normalize(text: str) -> str:
    """Casefold, strip accents, collapse whitespace, strip punctuation and symbols at the ends.

    "  ARRÊT ! " -> "arret"; "Merci de ne plus m’envoyer de SMS." -> "merci de ne plus
    m'envoyer de sms". Punctuation inside the text is kept.
    """
    collapsed = " ".join(_fold(text.casefold()).split())
    start, end = 0, len(collapsed)
    while start < end and _is_edge(collapsed[start]):
        start += 1
    while end > start and _is_edge(collapsed[end - 1]):
        end -= 1
    return collapsed[start:end]


# --- quoted history -----------------------------------------------------------------------

_ATTRIBUTION_END = re.compile(r"\b(?:wrote|ecrit)\s*:$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^(?:on|le)\b", re.IGNORECASE)
_CUT = re.compile(
    r"^(?:-{2,}\s*(?:original message|message d'origine|message original|forwarded message"
    r"|message transfere)\s*-{2,}"
    r"|--|_{5,}"
    r"|(?:sent from (?:my|mail for|outlook|yahoo mail)|envoye (?:de|depuis) (?:mon|ma)"
    r"|get outlook for|obtenir outlook pour|telecharger outlook pour)\b.*)$",
    re.IGNORECASE,
)
_FROM = re.compile(r"^\*?(?:from|de)\s*:", re.IGNORECASE)
_HEADER = re.compile(r"^\*?(?:sent|envoye|to|a|cc|date|subject|objet)\s*:", re.IGNORECASE)


def strip_quoted(text: str) -> str:
    """The new part of an email reply: drops '>' lines and cuts at the quoted history.

    Cuts at the first attribution ("On … wrote:", "Le … a écrit :", also when the mail
    client wrapped it onto two lines), "-----Original Message-----" and its French and
    forwarded variants, an Outlook "From:"/"De :" header block, a "-- " signature
    delimiter, or a "Sent from my iPhone"/"Envoyé de mon iPhone" line.
    """
    lines = text.splitlines()
    probes = [_fold(line).strip() for line in lines]
    for i in range(len(probes)):
        cut = _cut_at(probes, i)
        if cut is not None:
            lines = lines[:cut]
            break
    kept = [line for line in lines if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip()


def _cut_at(probes: list[str], i: int) -> int | None:
    probe = probes[i]
    if _CUT.match(probe):
        return i
    if _ATTRIBUTION_END.search(probe):  # look up to 2 lines back: clients wrap it
        for j in range(i, max(i - 3, -1), -1):
            if not probes[j]:
                break
            if _ATTRIBUTION_START.match(probes[j]):
                return j
    if _FROM.match(probe) and any(_HEADER.match(p) for p in probes[i + 1 : i + 5]):
        return i
    return None
