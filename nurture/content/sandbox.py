"""The template sandbox: Jinja's immutable sandbox, plus a budget for every render.

Templates are written by marketers, not trusted code. Jinja's sandbox keeps them away
from Python's internals; this one also keeps them from exhausting the machine:

- **work**: every loop iteration, call (macros, methods, `range`…), filter and include
  is a step; a render may take `MAX_STEPS` of them and `MAX_RENDER_SECONDS` of CPU
  time (its own thread's), whichever comes first;
- **size**: no single value (a string, a list counted with what it holds) may exceed
  `MAX_LENGTH`, checked *before* it is built wherever a bomb would build it in one go
  (padding widths, `%` and `format` specs, `*`, `join`, `replace`, `lipsum`…), and the
  values one render builds may not exceed `MAX_RENDER_SIZE` together.

Over budget, the render fails with a `SecurityError` raised at the template line at
fault (the catalog turns it into a `TemplateError` naming `path:line`): one bad template
costs its message, never the batch it is in, and `validate` reports it.
"""

from __future__ import annotations

import functools
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from markupsafe import Markup

from nurture.content.budget import (
    BUDGET,
    CONTAINERS,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_LENGTH,
    SEQUENCES,
    TEXT,
    bounded_lipsum,
    budgeted,
    check_product,
    filter_size,
    int_bits,
    method_size,
    printf_widths,
    refuse_past,
    weight,
)

__all__ = ["BoundedSandbox", "budgeted"]

_NUMBER = re.compile(r"\d+")


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, refusing widths that add up past MAX_LENGTH."""

    _widths = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._widths = 0
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._widths += sum(int(n) for n in _NUMBER.findall(format_spec))
        refuse_past(MAX_LENGTH, "format()", self._widths)
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


class _Metered:
    """A for loop's iterable, charging a step per item."""

    __slots__ = ("_iterable",)

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __len__(self) -> int:  # a TypeError tells Jinja's LoopContext to count by itself
        return len(self._iterable)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        budget = BUDGET.get()
        for item in self._iterable:
            if budget is not None:
                budget.step()
            yield item


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's compiler, routing through the environment what can grow without bound:
    loop iterables, `~`, list/tuple/dict literals and slices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ids of the for loops' iterable nodes, written as environment.metered(…)
        self._loop_iterables: set[int] = set()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.metered(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Jinja forbids custom nodes: the iterable is marked, then wrapped where written
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def _built(self, visit: Callable[[Any, Frame], None], node: nodes.Node,
               frame: Frame) -> None:
        self.write("environment.built(")
        visit(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self._built(super().visit_Concat, node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._built(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._built(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target: `for a, b in …`
            super().visit_Tuple(node, frame)
        else:
            self._built(super().visit_Tuple, node, frame)

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if isinstance(node.arg, nodes.Slice):
            self._built(super().visit_Getitem, node, frame)
        else:
            super().visit_Getitem(node, frame)


class BudgetedTemplate(jinja2.Template):
    """`render()` under a budget, for code that renders without the catalog."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        with budgeted():
            return super().render(*args, **kwargs)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with a budget of work and size for every render (see the
    module docstring)."""

    code_generator_class = BoundedCodeGenerator
    template_class = BudgetedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "-", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finalize", self.built)  # every {{ … }} is charged for
        super().__init__(*args, **kwargs)
        self.globals["lipsum"] = bounded_lipsum
        self.filters = {name: self._metered_filter(name, f) for name, f in self.filters.items()}

    def built(self, value: Any) -> Any:
        """A value the template just built: refused past MAX_LENGTH, charged to the render.
        Nothing (None: an attribute the contact lacks) prints as nothing, never "None"."""
        if value is None:
            return ""
        budget = BUDGET.get()
        if isinstance(value, TEXT):
            size = len(value)
        elif isinstance(value, CONTAINERS):
            size = budget.weight(value) if budget is not None else weight(value)
        else:
            return value
        refuse_past(MAX_LENGTH, "the template", size)
        if budget is not None:
            budget.charge(value, size)
        return value

    def concat(self, parts: Iterable[str]) -> str:
        """Joins the output of a render (or a block, a macro), refused past MAX_LENGTH
        before the joined string is built."""
        # the parts are references (a loop repeats the same text): a list of them is
        # small, the string they would join into may not be
        collected = parts if isinstance(parts, list) else list(parts)
        total = sum(map(len, collected))
        refuse_past(MAX_LENGTH, "the template's output", total)
        return "".join(collected)  # not charged: it is, where it is printed or kept

    def metered(self, iterable: Iterable[Any]) -> _Metered:
        return _Metered(iterable)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            if isinstance(right, int) and int_bits(left) * max(right, 0) > MAX_INT_BITS:
                raise SecurityError(f"a number of more than {MAX_INT_BITS} bits")
        elif operator == "*":
            check_product(left, right)
        elif operator in ("+", "-"):
            if max(int_bits(left), int_bits(right)) >= MAX_INT_BITS:
                raise SecurityError(f"a number of more than {MAX_INT_BITS} bits")
            if operator == "+" and isinstance(left, SEQUENCES):
                refuse_past(MAX_LENGTH, "+", weight(left) + weight(right))
        elif operator == "%" and isinstance(left, TEXT):
            refuse_past(MAX_LENGTH, "%", len(left) + printf_widths(left) + weight(right))
        return self.built(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is not None:
            budget.step()
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (self.metered(args[0]), *args[1:])
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, TEXT) and isinstance(obj, types.BuiltinMethodType
                                                   | types.MethodType):
            size, args = method_size(owner, obj.__name__, args, kwargs)
            refuse_past(MAX_LENGTH, f"{obj.__name__}()", size)
        return self.built(super().call(context, obj, *args, **kwargs))

    def _metered_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        # a filter marked @pass_context (or eval_context, environment) gets that first
        skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1

        @functools.wraps(func)
        def metered(*args: Any, **kwargs: Any) -> Any:
            budget = BUDGET.get()
            if budget is not None:
                budget.step()
            size, value_args = filter_size(name, args[skip:], kwargs)
            refuse_past(MAX_LENGTH, f"|{name}", size)
            return self.built(func(*args[:skip], *value_args, **kwargs))

        return metered

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map`, wrapped as Jinja does, with bounded widths."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
                value.__name__ not in ("format", "format_map")):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        formatter: string.Formatter = (
            _BoundedEscapeFormatter(self, escape=f_self.escape) if isinstance(f_self, Markup)
            else _BoundedFormatter(self))
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs = args[0]
                args = ()
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def get_template(self, name: str | jinja2.Template, parent: str | None = None,
                     globals: MutableMapping[str, Any] | None = None,  # noqa: A002
                     ) -> jinja2.Template:
        """Also `{% include %}`, `{% import %}` and `{% extends %}`: a step each."""
        budget = BUDGET.get()
        if budget is not None:
            budget.step()
        return super().get_template(name, parent, globals)

    def select_template(self, names: Iterable[str | jinja2.Template],
                        parent: str | None = None,
                        globals: MutableMapping[str, Any] | None = None,  # noqa: A002
                        ) -> jinja2.Template:
        budget = BUDGET.get()
        if budget is not None:
            budget.step()
        return super().select_template(names, parent, globals)

