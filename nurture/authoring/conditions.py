r"""The condition language of journey files and fit rules: small, safe and documented.

Conditions are written in `entry.when`, `exit_when`, `goal`, `branch` cases and the fit
rules of config.toml. They are parsed once, at load time, into a small tree that is then
evaluated against a contact. The text is never handed to Python (`eval`, `exec`...), and
no Python attribute is ever looked up from it.

    stage == 'lead' and temperature in ['warm', 'hot']
    score >= 40 and not (attributes.role matches '(?i)student|intern')
    events.page.viewed.count_7d >= 3 or events.demo.requested.count > 0

Values
    numbers      42, -3, 2.5
    strings      'text' or "text". A backslash escapes a quote (\' \") or itself (\\);
                 any other backslash is kept as is, so regexes read naturally: '^\d+$'
    true  false  null
    lists        ['a', 'b', 3], of the values above

Fields
    score                            engagement score (a number)
    fit                              fit points (a number)
    stage                            lead, prospect, sales_accepted, customer, recycled
    temperature                      cold, warm, hot
    attributes.<name>                a contact attribute, null when missing; the rest of
                                     the name, dots included, is one key. Names use
                                     letters, digits, `_` and `-`
    events.<type>.count              how many events of that type the contact ever had
    events.<type>.count_<duration>   ... within that duration before now: count_12h,
                                     count_7d, count_2w. The type is everything between
                                     `events.` and `.count`: events.x.webinar.attended.count_14d

Operators, loosest first
    or                    either side holds
    and                   both sides hold
    not                   negates the comparison (or `not`, or group) that follows it:
                          `not score > 5` means `not (score > 5)`
    ==  !=  <  <=  >  >=  compare two values; one operator per comparison, so
                          `1 < score < 5` is an error (write `score > 1 and score < 5`)
    in [...]  not in [...]   the value is (not) one of a list written in the condition
    contains              a string contains a string, or a list contains an item
    matches '<regex>'     a string matches a Python regex anywhere (`re.search`);
                          `(?i)` at the start makes it case-insensitive
    ( ... )               grouping

Rules
- A value on its own is tested for truth: `attributes.vip`, `events.reply.received.count`.
  0, '', null, false and [] are false.
- `==` is exact: case-sensitive, and values of different types are never equal
  (`'5' == 5` and `1 == true` are false). `null == null` is true, so
  `attributes.plan == null` tests a missing attribute. `!=` is exactly `not ==`, and
  `not in` exactly `not (... in ...)`: `attributes.plan != 'free'` holds when plan is missing.
- `<`, `<=`, `>`, `>=`, `contains` and `matches` are false when a side is null or the
  types do not fit (`attributes.size > 50` with size 'abc' or missing); never an error.
  Strings are ordered character by character, so ISO dates compare:
  `attributes.signed_up >= '2024-01-31'`.
- One exception: an attribute holding a string of digits ('42', '-3', '2.5': what CSV
  imports give) compared with a number (==, !=, <, ..., in) is compared as a number.
- Keywords (and or not in contains matches true false null) are lowercase.
- Since mismatches compare false rather than fail, `nurture validate` (and loading a journey)
  reports what could never hold as meant: an unknown stage or temperature (`'leads'`,
  `'Warm'`), an attribute config.toml does not declare, text compared with a number
  (`score >= '40'`). See `condition_checks.py`.
- At most 2000 characters and 50 levels of nesting (parentheses and `not`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from nurture.durations import parse_duration
from nurture.errors import ConditionError

MAX_LENGTH = 2000
MAX_DEPTH = 50
CORE_FIELDS = ("score", "fit", "stage", "temperature")
_KNOWN_FIELDS = (
    "score, fit, stage, temperature, attributes.<name>, "
    "events.<type>.count, events.<type>.count_<duration>"
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "matches", "true", "false", "null"})
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_OPERATORS = frozenset({"==", "!=", "<", "<=", ">", ">=", "contains", "in", "matches"})
_NUMERIC_OPERATORS = frozenset({"==", "<", "<=", ">", ">=", "in"})
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>-?[0-9]+(?:\.[0-9]+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)
      | (?P<op>==|!=|<=|>=|<|>|[()\[\],])""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\([\\'\"])")
_NUMERIC = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_HINTS = {"=": "use '==' to compare", "!": "use '!=' or 'not'", "&": "use 'and'", "|": "use 'or'"}


class ConditionContext(Protocol):
    """What a condition sees of a contact. Read-only, so frozen dataclasses fit."""

    @property
    def score(self) -> float: ...
    @property
    def fit(self) -> float: ...
    @property
    def stage(self) -> str: ...
    @property
    def temperature(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    def event_count(self, event_type: str, within: timedelta | None) -> int: ...


@dataclass(frozen=True)
class SimpleContext:
    """A plain ConditionContext: for tests, the CLI preview, and the engine's prefetched counts."""

    score: float = 0
    fit: float = 0
    stage: str = "lead"
    temperature: str = "cold"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    event_counts: Mapping[tuple[str, timedelta | None], int] = field(default_factory=dict)

    def event_count(self, event_type: str, within: timedelta | None) -> int:
        return self.event_counts.get((event_type, within), 0)


# --- values ---------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value: Any) -> Any:
    """'42' → 42 (attributes imported from CSV); anything else unchanged."""
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_equal, a, b))
    return type(a) is type(b) and bool(a == b)


def _ordered(a: Any, b: Any) -> bool:
    """Only numbers with numbers and strings with strings have an order."""
    return (isinstance(a, str) and isinstance(b, str)) or (_is_number(a) and _is_number(b))


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return isinstance(b, str) and b in a
    if isinstance(a, (list, tuple, set, frozenset)):
        return any(_equal(item, b) for item in a)
    return False


#: `!=` and `not in` are `==` and `in`, negated
_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "<": lambda a, b: _ordered(a, b) and a < b,
    "<=": lambda a, b: _ordered(a, b) and a <= b,
    ">": lambda a, b: _ordered(a, b) and a > b,
    ">=": lambda a, b: _ordered(a, b) and a >= b,
    "contains": _contains,
    "in": lambda value, items: any(_equal(value, item) for item in items),
    "matches": lambda value, regex: isinstance(value, str) and regex.search(value) is not None,
}


# --- the tree: frozen nodes, each resolving itself against a context --------------------


@dataclass(frozen=True, slots=True)
class Constant:
    """A value written in the condition: a list is a tuple, a `matches` regex a Pattern."""

    value: Any

    def resolve(self, ctx: ConditionContext) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class CoreField:
    """score, fit, stage or temperature."""

    name: str

    def resolve(self, ctx: ConditionContext) -> Any:
        return getattr(ctx, self.name)

    @property
    def path(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str

    def resolve(self, ctx: ConditionContext) -> Any:
        return ctx.attributes.get(self.name)

    @property
    def path(self) -> str:
        return f"attributes.{self.name}"


@dataclass(frozen=True, slots=True)
class EventCount:
    event_type: str
    #: None counts every event ever
    window: timedelta | None

    def resolve(self, ctx: ConditionContext) -> Any:
        return ctx.event_count(self.event_type, self.window)

    @property
    def path(self) -> str:
        return f"events.{self.event_type}"


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    negate: bool = False
    #: the side is an attribute and `op` compares: a digit string there meets a number as one
    coerce_left: bool = False
    coerce_right: bool = False

    def resolve(self, ctx: ConditionContext) -> Any:
        a, b = self.left.resolve(ctx), self.right.resolve(ctx)
        test = _TESTS[self.op]
        held = test(a, b)
        if not held and self.coerce_left and isinstance(a, str):
            held = test(_as_number(a), b)
        if not held and self.coerce_right and isinstance(b, str):
            held = test(a, _as_number(b))
        return held != self.negate


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def resolve(self, ctx: ConditionContext) -> Any:
        return not self.operand.resolve(ctx)


@dataclass(frozen=True, slots=True)
class AllOf:
    """`and`"""

    items: tuple[Node, ...]

    def resolve(self, ctx: ConditionContext) -> Any:
        return all(item.resolve(ctx) for item in self.items)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """`or`"""

    items: tuple[Node, ...]

    def resolve(self, ctx: ConditionContext) -> Any:
        return any(item.resolve(ctx) for item in self.items)


Node = Constant | CoreField | Attribute | EventCount | Compare | Not | AllOf | AnyOf


def _walk(node: Node) -> Iterator[Node]:
    yield node
    children: tuple[Node, ...] = ()
    if isinstance(node, Compare):
        children = (node.left, node.right)
    elif isinstance(node, Not):
        children = (node.operand,)
    elif isinstance(node, AllOf | AnyOf):
        children = node.items
    for child in children:
        yield from _walk(child)


@dataclass(frozen=True)
class Condition:
    """A parsed condition; get one from `parse`."""

    source: str
    root: Node

    def evaluate(self, ctx: ConditionContext) -> bool:
        return bool(self.root.resolve(ctx))

    def fields(self) -> frozenset[str]:
        """Fields read, e.g. {"score", "attributes.role", "events.page.viewed"}."""
        leaves = (CoreField, Attribute, EventCount)
        return frozenset(n.path for n in _walk(self.root) if isinstance(n, leaves))

    def event_windows(self) -> frozenset[tuple[str, timedelta | None]]:
        """(event type, window) pairs counted, so the engine can fetch them in one query."""
        nodes = _walk(self.root)
        return frozenset((n.event_type, n.window) for n in nodes if isinstance(n, EventCount))


# --- parsing --------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse(source: str) -> Condition:
    """Parse a condition (cached: the same text gives the same Condition)."""
    if not isinstance(source, str):
        raise ConditionError(f"a condition must be text, not {type(source).__name__}")
    if len(source) > MAX_LENGTH:
        raise ConditionError(f"condition is {len(source)} characters long (max {MAX_LENGTH})")
    if not source.strip():
        raise ConditionError("empty condition")
    return Condition(source, _Parser(source).condition())


class _Token(NamedTuple):
    #: num, str, name, end, bad (a character that starts no token), or the keyword or operator
    kind: str
    text: str
    pos: int


def _error(source: str, pos: int, message: str, hint: str = "") -> ConditionError:
    text = f'{message} at column {pos + 1} in "{source}"'
    return ConditionError(f"{text}: {hint}" if hint else text)


def _tokenize(source: str) -> list[_Token]:
    """Tokens up to the end, or up to a `bad` one (reported when the parser reaches it)."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            return [*tokens, _Token("bad", source[pos], pos)]
        kind, text = match.lastgroup or "", match.group()
        if kind == "op" or (kind == "name" and text in _KEYWORDS):
            kind = text
        if kind != "space":
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    return [*tokens, _Token("end", "", len(source))]


def _unquote(text: str) -> str:
    return _ESCAPE.sub(r"\1", text[1:-1])


class _Parser:
    """Recursive descent, one method per rule, loosest first (`not in` looks two tokens ahead):

    condition  := any_of END
    any_of     := all_of ('or' all_of)*
    all_of     := negation ('and' negation)*
    negation   := 'not' negation | comparison
    comparison := operand [OP operand | ['not'] 'in' list | 'matches' STRING]
    operand    := NAME | scalar | list | '(' any_of ')'
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def fail(self, token: _Token, hint: str) -> ConditionError:
        if token.kind == "bad" and token.text in "'\"":
            return _error(self.source, token.pos, "unclosed string")
        if token.kind == "bad":
            hint = _HINTS.get(token.text, "")
        what = "end of expression" if token.kind == "end" else f"'{token.text}'"
        if token.kind == "str":
            what = f"string {token.text}"
        return _error(self.source, token.pos, f"unexpected {what}", hint)

    def expect(self, kind: str, hint: str) -> _Token:
        if self.peek().kind != kind:
            raise self.fail(self.peek(), hint)
        return self.take()

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(self.source, token.pos, f"nested deeper than {MAX_DEPTH} levels")

    def condition(self) -> Node:
        node = self.any_of()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "expected 'and', 'or' or the end")
        return node

    def any_of(self) -> Node:
        return self.junction("or", AnyOf, self.all_of)

    def all_of(self) -> Node:
        return self.junction("and", AllOf, self.negation)

    def junction(self, keyword: str, build: type[AnyOf | AllOf], part: Callable[[], Node]) -> Node:
        items = [part()]
        while self.peek().kind == keyword:
            self.take()
            items.append(part())
        return items[0] if len(items) == 1 else build(tuple(items))

    def negation(self) -> Node:
        if self.peek().kind != "not":
            return self.comparison()
        self.enter(self.take())
        node = Not(self.negation())
        self.depth -= 1
        return node

    def comparison(self) -> Node:
        left = self.operand()
        if not self.at_operator():
            return left
        node = self.compare(left, self.take())
        if self.at_operator():
            raise self.fail(self.peek(), "comparisons cannot be chained, join them with 'and'")
        return node

    def at_operator(self) -> bool:
        kind = self.peek().kind
        return kind in _OPERATORS or (kind == "not" and self.peek(1).kind == "in")

    def compare(self, left: Node, token: _Token) -> Compare:
        op, negate = token.kind, token.kind in ("!=", "not")
        if op == "matches":
            right: Node = Constant(self.regex())
        elif op in ("in", "not"):
            op = self.take().kind if op == "not" else op
            right = Constant(self.list_literal("'in' needs a list, e.g. ['a', 'b']"))
        else:
            op = "==" if op == "!=" else op
            right = self.operand()
        coerce = op in _NUMERIC_OPERATORS
        sides = coerce and isinstance(left, Attribute), coerce and isinstance(right, Attribute)
        return Compare(op, left, right, negate, *sides)

    def regex(self) -> re.Pattern[str]:
        token = self.expect("str", "'matches' needs a regex in quotes, e.g. '^vp'")
        try:
            return re.compile(_unquote(token.text))
        except re.error as e:
            raise _error(self.source, token.pos, f"invalid regex {token.text} ({e})") from e

    def operand(self) -> Node:
        token = self.peek()
        if token.kind == "name":
            return self.field(self.take())
        if token.kind == "[":
            return Constant(self.list_literal(""))
        if token.kind != "(":
            return Constant(self.scalar())
        self.enter(self.take())
        node = self.any_of()
        self.expect(")", "expected ')'")
        self.depth -= 1
        return node

    def list_literal(self, hint: str) -> tuple[Any, ...]:
        self.expect("[", hint)
        items = []
        while self.peek().kind != "]":
            items.append(self.scalar())
            if self.peek().kind != ",":
                break
            self.take()
        self.expect("]", "expected ',' or ']'")
        return tuple(items)

    def scalar(self) -> Any:
        token = self.take()
        if token.kind == "num":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "str":
            return _unquote(token.text)
        if token.kind in _CONSTANTS:
            return _CONSTANTS[token.kind]
        raise self.fail(token, "expected a value")

    def field(self, token: _Token) -> Node:
        name = token.text
        head, _, rest = name.partition(".")
        if name in CORE_FIELDS:
            return CoreField(name)
        if head == "attributes" and rest:
            return Attribute(rest)
        if head == "events" and rest:
            return self.event_count(token, rest)
        close = difflib.get_close_matches(name, CORE_FIELDS, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown field '{name}'"
        raise _error(self.source, token.pos, message, f"{guess}known fields: {_KNOWN_FIELDS}")

    def event_count(self, token: _Token, rest: str) -> EventCount:
        event_type, _, last = rest.rpartition(".")
        if not event_type or not (last == "count" or last.startswith("count_")):
            hint = "write events.<type>.count or events.<type>.count_<duration>"
            raise _error(self.source, token.pos, f"bad event field '{token.text}'", hint)
        if last == "count":
            return EventCount(event_type, None)
        try:
            return EventCount(event_type, parse_duration(last[6:]))
        except ValueError as e:
            message = f"bad duration '{last[6:]}' in '{token.text}'"
            raise _error(self.source, token.pos, message, "use e.g. 30m, 12h, 3d, 2w") from e
