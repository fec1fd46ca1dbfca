"""Conditions that parse but can never hold as meant, found before any contact meets them.

A condition is evaluated leniently: mismatched types and unknown values compare false,
never an error (see `conditions.py`). That keeps the daemon running, and it also lets
`stage == 'leads'`, `temperature == 'Warm'`, `attributes.compnay_size > 50` or
`score >= '40'` pass silently and match no one. These checks read the parsed tree
against the fixed vocabulary (stages, temperatures) and the declared contact
attributes, and say what is wrong in a marketer's words.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from nurture.authoring.conditions import (
    AllOf,
    AnyOf,
    Attribute,
    Compare,
    Condition,
    Constant,
    CoreField,
    EventCount,
    Node,
    Not,
)
from nurture.vocab import Stage, Temperature

#: the values a text field can hold, per field
VOCABULARY: Mapping[str, tuple[str, ...]] = {
    "stage": tuple(s.value for s in Stage),
    "temperature": tuple(t.value for t in Temperature),
}
#: what `[attributes.NAME] type` says a value is, in the words of the messages below
_ATTRIBUTE_KINDS = {"string": "text", "int": "number", "float": "number", "bool": "boolean"}
_ORDERING = frozenset({"<", "<=", ">", ">="})
_PLURAL = {"stage": "stages", "temperature": "temperatures"}

Field = CoreField | Attribute | EventCount


def check(condition: Condition, attributes: Mapping[str, str] | None = None) -> list[str]:
    """Every mistake in `condition`, once each: unknown attributes first, then comparisons.

    `attributes` maps each known attribute name to its `[attributes]` type (`string`,
    `int`, `float`, `bool`); None leaves attribute names and types unchecked.
    """
    found = [_unknown_attribute(name, attributes) for name in _attribute_names(condition.root)
             if attributes is not None and name not in attributes]
    for node in _compares(condition.root):
        found += _compare(node, attributes)
    return list(dict.fromkeys(found))


def _compares(node: Node) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Not):
        return _compares(node.operand)
    if isinstance(node, AllOf | AnyOf):
        return [c for item in node.items for c in _compares(item)]
    return []


def _attribute_names(node: Node) -> list[str]:
    if isinstance(node, Attribute):
        return [node.name]
    children: tuple[Node, ...] = ()
    if isinstance(node, Compare):
        children = (node.left, node.right)
    elif isinstance(node, Not):
        children = (node.operand,)
    elif isinstance(node, AllOf | AnyOf):
        children = node.items
    return list(dict.fromkeys(n for child in children for n in _attribute_names(child)))


def _kind(node: Node, attributes: Mapping[str, str] | None) -> str | None:
    """number, text or boolean; None when unknown (an undeclared attribute, a group)."""
    if isinstance(node, EventCount) or (isinstance(node, CoreField)
                                        and node.name in ("score", "fit")):
        return "number"
    if isinstance(node, CoreField):
        return "text"
    if isinstance(node, Attribute):
        declared = (attributes or {}).get(node.name)
        return _ATTRIBUTE_KINDS.get(declared) if declared else None
    if isinstance(node, Constant):
        return _value_kind(node.value)
    return None


def _value_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None  # null, a list, a regex


def _compare(node: Compare, attributes: Mapping[str, str] | None) -> list[str]:
    left, right, op = node.left, node.right, node.op
    if isinstance(right, Field) and isinstance(left, Constant) and op not in ("in", "contains"):
        left, right = right, left  # `40 <= score` reads as `score >= 40`
    if not isinstance(left, Field):
        return []
    if op == "matches":
        return _needs_text(left, "matches", attributes)
    if op == "contains":
        return _needs_text(left, "contains", attributes) + _contains_item(left, right)
    if op == "in" and isinstance(right, Constant):
        return [m for item in right.value for m in _against(left, op, item, attributes)]
    if isinstance(right, Constant):
        return _against(left, op, right.value, attributes)
    return _fields(left, right, attributes)


def _against(field: Field, op: str, value: Any, attributes: Mapping[str, str] | None) -> list[str]:
    """`field OP value` for ==, !=, in (one item at a time) and the orderings."""
    found: list[str] = []
    if isinstance(field, CoreField) and field.name in VOCABULARY:
        if op in _ORDERING:
            found.append(f"{field.name} has no order ('{op}' compares its names "
                         f"alphabetically): use == or in [...]")
        if isinstance(value, str) and value not in VOCABULARY[field.name]:
            return [*found, _unknown_value(field.name, value)]
    kind, given = _kind(field, attributes), _value_kind(value)
    if kind is None or given is None or kind == given:
        return found
    if kind == "text" and given == "number" and isinstance(field, Attribute):
        return found  # '42' from a CSV import meets 42 as a number: documented
    return [*found, _mismatch(field, kind, value, given, attributes)]


def _fields(left: Field, right: Node, attributes: Mapping[str, str] | None) -> list[str]:
    """Two fields compared with each other: `score > fit` fits, `score == stage` never holds."""
    mine, theirs = _kind(left, attributes), _kind(right, attributes)
    if mine is None or theirs is None or mine == theirs or not isinstance(right, Field):
        return []
    return [f"{left.path} is {_a(mine)} but {right.path} is {_a(theirs)}: "
            "they never compare, so this never holds"]


def _needs_text(field: Field, op: str, attributes: Mapping[str, str] | None) -> list[str]:
    kind = _kind(field, attributes)
    if kind in (None, "text"):
        return []
    return [f"'{op}' works on text, but {_described(field, kind, attributes)}, so this "
            "never holds"]


def _contains_item(field: Field, item: Node) -> list[str]:
    if (isinstance(field, CoreField) and field.name in VOCABULARY
            and isinstance(item, Constant) and not isinstance(item.value, str)):
        return [f"{field.name} is text but {_show(item.value)} is "
                f"{_a(_value_kind(item.value) or 'null')}, so this never holds"]
    return []


def _mismatch(field: Field, kind: str | None, value: Any, given: str,
              attributes: Mapping[str, str] | None) -> str:
    message = (f"{_described(field, kind, attributes)} but {_show(value)} is {_a(given)}, "
               "so this never holds")
    if kind == "number" and isinstance(value, str) and _numeric(value):
        message += f": write {value} without quotes"
    elif kind == "text" and given in ("number", "boolean"):
        message += f": write '{_show(value)}' in quotes"
    return message


def _described(field: Field, kind: str | None, attributes: Mapping[str, str] | None) -> str:
    if isinstance(field, Attribute) and attributes and field.name in attributes:
        return f"{field.path} is {_a(kind or 'text')} (type {attributes[field.name]})"
    return f"{field.path} is {_a(kind or 'text')}"


def _unknown_value(name: str, value: str) -> str:
    known = VOCABULARY[name]
    same_letters = [k for k in known if k.lower() == value.lower()]
    guess = same_letters or difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean '{guess[0]}'? " if guess else ""
    if same_letters:
        hint += "case matters; "
    return f"unknown {name} '{value}' ({hint}{_PLURAL[name]}: {', '.join(known)})"


def _unknown_attribute(name: str, attributes: Mapping[str, str]) -> str:
    known = sorted(attributes)
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{guess[0]}'? " if guess else ""
    listed = f"known: {', '.join(known)}; " if known else ""
    return (f"unknown attribute '{name}' ({hint}{listed}declare it as [attributes.{name}] "
            "in config.toml, or set it with a set step)")


def attribute_types(declared: Mapping[str, str], set_values: Iterable[tuple[str, Any]]
                    ) -> dict[str, str]:
    """Declared attributes with their type, plus those journeys `set` (typed by their value)."""
    known = dict(declared)
    for name, value in set_values:
        if name not in known:
            known[name] = {"boolean": "bool", "number": "float", "text": "string"}.get(
                _value_kind(value) or "", "")
    return known


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _a(kind: str) -> str:
    return {"number": "a number", "text": "text", "boolean": "a boolean", "null": "null"}[kind]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)
