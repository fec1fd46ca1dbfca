"""The budget of one template render: steps, CPU time and size, and what each
amplifying operation would build *before* it is built (see nurture/content/sandbox.py,
which charges them).

A step is a loop iteration, a call, a filter or an include. A size is a string's length,
or a list's items with what they hold (`weight`): about what printing it would take.
"""

from __future__ import annotations

import builtins
import itertools
import re
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace, generate_lorem_ipsum

#: the largest string or list a template may build with `*`, and the largest power
MAX_PRODUCT = 100_000
MAX_EXPONENT = 64
#: the longest string (or heaviest list, counting what it holds) one operation may build
MAX_LENGTH = 1_000_000
#: all the values one render builds, together
MAX_RENDER_SIZE = 10_000_000
#: loop iterations, calls, filters and includes in one render
MAX_STEPS = 100_000
#: CPU time one render may take (its own thread's)
MAX_RENDER_SECONDS = 0.5
#: the largest integer arithmetic may produce, in bits
MAX_INT_BITS = 4096
#: words `lipsum()` may generate (n × max)
MAX_LIPSUM_WORDS = 10_000
#: how deep lists may nest in one another
MAX_DEPTH = 100

TEXT = (str, bytes, bytearray)
SEQUENCES = (*TEXT, list, tuple)
_ITEMS: type = type({}.items())
CONTAINERS: tuple[type, ...] = (list, tuple, set, frozenset, dict, type({}.keys()),
                                 type({}.values()), _ITEMS)
# printf-style conversions: %(name)-08.3f; `*` takes the width from the arguments
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


class RenderBudget:
    """What one render has spent so far."""

    __slots__ = ("steps", "size", "started", "_weights")

    def __init__(self) -> None:
        self.steps = 0
        self.size = 0
        self.started = 0.0  # on the first step: most renders (an SMS) take none
        #: id → (container, weight) of the containers this render built; holding the
        #: container keeps its id from being reused while the render lasts
        self._weights: dict[int, tuple[object, int]] = {}

    def step(self) -> None:
        self.steps += 1
        if self.steps == 1:
            self.started = time.thread_time()
        elif self.steps > MAX_STEPS:
            raise SecurityError(f"the template takes more than {MAX_STEPS} steps (loop "
                                "iterations, calls, filters) in one render")
        if not self.steps & 7 and time.thread_time() - self.started > MAX_RENDER_SECONDS:
            raise SecurityError(f"the template takes more than {MAX_RENDER_SECONDS:g} s "
                                "of CPU time to render")

    def charge(self, value: object, size: int) -> None:
        self.size += size
        if self.size > MAX_RENDER_SIZE:
            raise SecurityError(f"the template builds more than {MAX_RENDER_SIZE} "
                                "characters and items in one render")
        if isinstance(value, CONTAINERS):
            self._weights[id(value)] = (value, size)

    def weight(self, value: object) -> int:
        return weight(value, self._weights)


BUDGET: ContextVar[RenderBudget | None] = ContextVar("nurture_render_budget", default=None)


class _Scope:
    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token: Token[RenderBudget | None] | None = (
            BUDGET.set(RenderBudget()) if BUDGET.get() is None else None)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            BUDGET.reset(self._token)


def budgeted() -> _Scope:
    """`with budgeted():` renders under a fresh budget (a render within a render, such
    as a macro module's import, shares the outer one)."""
    return _Scope()


def weight(value: object, known: Mapping[int, tuple[object, int]] | None = None) -> int:
    """About how many characters `str(value)` would hold: a string's length, a list's
    items with what they hold (a shared item counts each time). Counting stops soon
    after MAX_LENGTH: any result above it only means "too heavy"."""
    memo: dict[int, int] = {}
    seen = known or {}

    def walk(item: object, depth: int) -> int:
        if isinstance(item, TEXT):
            return len(item)
        if isinstance(item, int):
            return 1 + item.bit_length() // 32
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        if not isinstance(item, CONTAINERS):
            return 1
        key = id(item)
        if key in seen:
            return seen[key][1]
        if key in memo:
            return memo[key]
        if depth > MAX_DEPTH:
            raise SecurityError(f"lists nested more than {MAX_DEPTH} deep")
        memo[key] = 1  # a cycle: printed as [...]
        total = 1
        members: Iterable[Any] = item  # type: ignore[assignment]  # one of CONTAINERS
        if isinstance(item, dict | _ITEMS):
            pairs: Iterable[tuple[Any, Any]] = item.items() if isinstance(item, dict) else members
            for k, v in pairs:
                total += walk(k, depth + 1) + walk(v, depth + 1)
                if total > MAX_LENGTH:
                    break
        else:
            for element in members:
                total += walk(element, depth + 1)
                if total > MAX_LENGTH:
                    break
        memo[key] = total
        return total

    return walk(value, 0)


def refuse_past(limit: int, what: str, size: int) -> None:
    if size > limit:
        raise SecurityError(f"{what} would build {size} characters or items; "
                            f"the limit is {limit}")


def int_bits(value: object) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


# ---- what an amplifying operation would build, before it is built --------------------


def printf_widths(fmt: str | bytes | bytearray) -> int:
    """The padding and precision a printf-style format asks for, in total."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes | bytearray) else fmt
    total = 0
    for width, precision, _ in _PRINTF.findall(text):
        if "*" in (width, precision):
            raise SecurityError("'*' widths are not allowed in % formats: write the number")
        total += int(width or 0) + int(precision or 0)
    return total


def method_size(owner: str | bytes | bytearray, name: str, args: tuple[Any, ...],
                kwargs: Mapping[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """(what a str/bytes method call would build, the arguments to call it with: an
    iterable `join` would consume is read here, so it is counted first)."""
    size = len(owner)
    if name in ("ljust", "rjust", "center", "zfill") and args:
        size = max(size, _number(args[0]))
    elif name == "expandtabs":
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        size += tabs * max(_number(args[0] if args else kwargs.get("tabsize", 8)), 0)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], TEXT):
        old: Any = args[0]
        new: Any = args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        hits = owner.count(old) if old else len(owner) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        size += hits * (len(new) - len(old))
    elif name == "join" and args:
        items = list(itertools.islice(args[0], MAX_LENGTH + 1))
        size = sum(len(i) for i in items if isinstance(i, TEXT)) + len(owner) * max(
            len(items) - 1, 0)
        size = max(size, len(items))
        args = (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        size *= max(longest, 1)
    return size, args


def filter_size(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                ) -> tuple[int, tuple[Any, ...]]:
    """(what a filter would build at most, the arguments to call it with: an iterable
    `join` or `sum` would consume is read here, so it is counted first)."""
    value, rest = (args[0], args[1:]) if args else ("", ())

    def arg(index: int, key: str, default: Any) -> Any:
        return rest[index] if len(rest) > index else kwargs.get(key, default)

    text = value if isinstance(value, str) else ""
    size = 0
    if name in ("join", "sum") and isinstance(value, Iterable):
        items = list(itertools.islice(value, MAX_LENGTH + 1))
        args = (items, *rest)
        if name == "join":
            size = len(items) * (1 + len(str(arg(0, "d", "")))) + weight(items)
        elif isinstance(arg(1, "start", 0), list | tuple):
            size = len(items) * weight(items)  # adding lists copies every partial sum
    elif name == "center":
        size = _number(arg(0, "width", 80))
    elif name == "indent":
        width = arg(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else _number(width)
        size = len(text) + (text.count("\n") + 1) * per_line
    elif name == "format":
        size = len(text) + printf_widths(text)
    elif name == "wordwrap":
        size = len(text) * (1 + len(str(arg(2, "wrapstring", None) or "\n")))
    elif name == "replace":
        text = value if isinstance(value, str) else str(value)
        old, new, count = str(arg(0, "old", "")), str(arg(1, "new", "")), arg(2, "count", None)
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        size = len(text) + hits * max(len(new) - len(old), 0)
    elif name == "batch" and arg(1, "fill_with", None) is not None:
        size = _number(arg(0, "linecount", 0))
    elif name == "slice":
        size = _number(arg(0, "slices", 0))
    elif name == "tojson":
        indent = arg(0, "indent", None)
        width = len(indent) if isinstance(indent, str) else _number(indent or 0)
        size = MAX_LENGTH + 1 if width > 16 else 0
    elif name == "urlize":
        extra = sum(len(v) for v in (arg(2, "target", None), arg(3, "rel", None))
                    if isinstance(v, str))
        size = MAX_LENGTH + 1 if extra > 1000 else 0
    return size, args


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20,  # noqa: A002 - Jinja's names
                   max: int = 100) -> str:  # noqa: A002
    """Jinja's `lipsum()`, for at most MAX_LIPSUM_WORDS words."""
    if _number(n) * builtins.max(_number(min), _number(max)) > MAX_LIPSUM_WORDS:
        raise SecurityError(f"lipsum(n={n}, max={max}) asks for more than "
                            f"{MAX_LIPSUM_WORDS} words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if int_bits(left) + int_bits(right) > MAX_INT_BITS:
            raise SecurityError(f"a number of more than {MAX_INT_BITS} bits")
        return
    for seq, count in ((left, right), (right, left)):
        if (isinstance(seq, SEQUENCES) and isinstance(count, int)
                and weight(seq) * count > MAX_PRODUCT):
            raise SecurityError(f"a product of more than {MAX_PRODUCT} items")
