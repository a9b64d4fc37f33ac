"""Screening rule sources at load: what would fail on every event is refused when the rule is compiled.

The sandbox stops a template at run time from reaching internals or building too much, but a rule
that says so plainly would then pass ``rules check`` and fail one event at a time. Each
condition and template is therefore screened once, when it is compiled (``RefusedAtLoad``, which
the loader reports with the file, the line and the rule):

- **size of the source**: at most ``rules.max_template_tokens`` tokens, counted on Jinja's lexer
  before anything is parsed (a 200,000-item literal costs seconds and hundreds of MB to parse and
  compile; the count stops at the limit);
- **internals**: ``x._name`` / ``x.__class__``, ``x['__name__']``, the ``attr`` filter, an
  ``attribute=`` of ``map``/``sort``/``selectattr``… naming an underscore or an attribute the
  sandbox refuses, and a literal ``str.format``/``format_map`` string with an attribute lookup
  (``'{0.__class__}'``);
- **constants that go past a bound**: every subexpression made only of literals (``'a' * 10**9``,
  ``2 ** (10**9)``, ``'a'.ljust(10**9)``, ``('a' * 9999) | replace('a', 'bb')``) is evaluated
  here under the checks the sandbox applies per event (sizes checked *before* a value is built),
  within an evaluation budget of its own: too big is refused, never materialised.

What depends on the event (``event.x * 10**9``) is still bounded per event by ``reactor.rules.bounds``.
"""

from __future__ import annotations

import itertools
import operator
import string
from collections.abc import Callable, Sequence
from typing import Any

from jinja2 import Environment, Undefined, nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
)

from reactor.rules import bounds
from reactor.rules.bounds import BoundExceeded


class RefusedAtLoad(ValueError):  # noqa: N818 - reads as what happened, like BoundExceeded
    """A condition or template refused when it is compiled (it would fail on every event)."""


_UNSAFE_NAMES = frozenset(
    {
        "mro",
        *UNSAFE_FUNCTION_ATTRIBUTES,
        *UNSAFE_METHOD_ATTRIBUTES,
        *UNSAFE_GENERATOR_ATTRIBUTES,
        *UNSAFE_COROUTINE_ATTRIBUTES,
        *UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    }
)
#: Filters that look attributes up by a name given as an argument.
_BY_ATTRIBUTE = frozenset(
    {"map", "sort", "selectattr", "rejectattr", "groupby", "unique", "sum", "min", "max", "dictsort"}
)
_UNKNOWN: Any = object()


def _at(line: int) -> str:
    """Where in a template of several lines (nothing for the first: most are one line)."""
    return "" if line <= 1 else f"line {line} of the template: "


def _unknown(values: Sequence[Any]) -> bool:
    """Whether any value could not be folded (by identity: an Undefined refuses comparisons)."""
    return any(v is _UNKNOWN for v in values)


def _unsafe(name: str) -> bool:
    return name.startswith("_") or name in _UNSAFE_NAMES


# ---- the source's size ------------------------------------------------------------------------------


def check_source(env: Environment, source: str, expression: bool) -> None:
    """At most ``rules.max_template_tokens`` tokens (counted without parsing, stopping at the limit)."""
    limit = bounds.limits().max_template_tokens
    tokens = env.lexer.tokeniter(source, None, None, "variable" if expression else None)
    if sum(1 for _ in itertools.islice(tokens, limit + 1)) > limit:
        raise RefusedAtLoad(f"more than {limit:,} tokens (rules.max_template_tokens); refused before parsing")


# ---- internals --------------------------------------------------------------------------------------


def _names_in(path: str) -> list[str]:
    return [part for part in path.split(".") if part and not part.isdigit()]


def _format_fields(fmt: str) -> list[str]:
    """The field names of a ``str.format`` string, nested specs included."""
    fields = []
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is not None:
            fields.append(field)
        if spec:
            fields.extend(_format_fields(spec))
    return fields


def _check_format_string(fmt: str, where: int) -> None:
    """``'{0.__class__}'.format(x)``: a format field that looks an attribute up."""
    try:
        fields = _format_fields(fmt)
    except ValueError as exc:
        raise RefusedAtLoad(f"{_at(where)}invalid format string {fmt[:60]!r}: {exc}") from None
    for field in fields:
        if "." in field:
            raise RefusedAtLoad(
                f"{_at(where)}the format field {{{field[:60]}}} looks an attribute up "
                "(not allowed in rules; pass the value itself)"
            )


def _attribute_args(node: nodes.Filter) -> list[nodes.Expr]:
    if node.name not in _BY_ATTRIBUTE:
        return []
    named = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    positional = node.args[:1] if node.name in ("selectattr", "rejectattr", "groupby", "map") else []
    return named + positional


#: Filters (ours: ``any``/``all``) that apply a filter or test named by an argument.
_BY_NAME = frozenset({"map", "select", "reject", "selectattr", "rejectattr", "any", "all"})


def _format_receiver(node: nodes.Node) -> nodes.Expr | None:
    """What ``x.format(..)`` / ``x.format_map(..)`` formats (``x``), or None for any other node."""
    target = node.node if isinstance(node, nodes.Call) else None
    if isinstance(target, nodes.Getattr) and target.attr in ("format", "format_map"):
        return target.node
    return None


def _unsafe_attribute(node: nodes.Node) -> str | None:
    """``x._name``, ``{% set ns._name = .. %}``, ``x['__name__']``, ``__import__``."""
    if isinstance(node, nodes.Name) and node.name.startswith("__"):
        return f"{node.name} is not a name rules can use"
    if isinstance(node, nodes.Getattr | nodes.NSRef) and _unsafe(node.attr):
        hint = f" (a key: x[{node.attr!r}])" if not node.attr.startswith("__") else ""
        return f".{node.attr} reaches an internal attribute{hint}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        if isinstance(key, str) and key.startswith("__"):
            return f"[{key!r}] reaches an internal attribute"
    return None


def _unsafe_filter(node: nodes.Node) -> str | None:
    """``|attr``, ``map('attr', ..)``, ``map(attribute='__class__')``, ``selectattr('_x')``."""
    if not isinstance(node, nodes.Filter | nodes.Test):
        return None
    named = node.name in _BY_NAME and any(isinstance(a, nodes.Const) and a.value == "attr" for a in node.args)
    if node.name == "attr" or named:
        return "the attr filter is not allowed in rules (use x.name or x['name'])"
    if isinstance(node, nodes.Filter):
        for arg in _attribute_args(node):
            text = arg.value if isinstance(arg, nodes.Const) else None
            if isinstance(text, str) and any(_unsafe(name) for name in _names_in(text)):
                return f"{node.name}({text!r}) reaches an internal attribute"
    return None


def _check_internals(tree: nodes.Node) -> None:
    """Every node: internals reached by name. A literal ``str.format`` string with an attribute
    lookup is refused where it is formatted, and, when the source formats a string it holds in a
    variable (``{% set f = '{0.__class__}' %}{{ f.format(x) }}``), wherever it is written."""
    found = [tree, *tree.find_all(nodes.Node)]
    receivers = [r for r in map(_format_receiver, found) if r is not None]
    formats_a_variable = any(not isinstance(r, nodes.Const) for r in receivers)
    for node in found:
        reason = _unsafe_attribute(node) or _unsafe_filter(node)
        if reason is not None:
            raise RefusedAtLoad(f"{_at(node.lineno)}{reason}")
        receiver = _format_receiver(node)
        literal = receiver if isinstance(receiver, nodes.Const) else node if formats_a_variable else None
        if isinstance(literal, nodes.Const) and isinstance(literal.value, str) and "{" in literal.value:
            _check_format_string(literal.value, node.lineno)


# ---- constants --------------------------------------------------------------------------------------

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "**": operator.pow,
    "%": operator.mod,
}


def _passed(fn: Any) -> str | None:
    """What Jinja passes a filter first (``context``, ``eval_context``, ``environment``), if anything."""
    return getattr(getattr(fn, "jinja_pass_arg", None), "name", None)


#: Built-in filters that are pure functions of their arguments (folded with the sandbox's checks);
#: those given the template's context (``map``, ``select``…) or chance (``random``) are not.
_PURE_FILTERS = frozenset(
    name for name, fn in FILTERS.items() if _passed(fn) != "context" and name not in ("random", "attr")
)


class _Folder:
    """Evaluates the literal-only subexpressions of a tree, each once, bottom-up."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def fold(self, node: nodes.Node) -> Any:
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is None or isinstance(node, nodes.Name):
            for child in node.iter_child_nodes():
                self.fold(child)
            return _UNKNOWN
        return handler(node)

    def _all(self, items: Sequence[nodes.Node]) -> list[Any]:
        return [self.fold(i) for i in items]  # every item folded (checked) even when one is unknown

    def _Const(self, node: nodes.Const) -> Any:  # noqa: N802 - named after the node kind
        return node.value

    def _Output(self, node: nodes.Output) -> Any:  # noqa: N802
        for value in self._all(node.nodes):
            if value is not _UNKNOWN:
                bounds.check_text(value, "an output")  # what the renderer would turn into text
        return _UNKNOWN

    def _List(self, node: nodes.List) -> Any:  # noqa: N802
        items = self._all(node.items)
        return _UNKNOWN if _unknown(items) else bounds.produced(items)

    def _Tuple(self, node: nodes.Tuple) -> Any:  # noqa: N802
        items = self._all(node.items)
        return _UNKNOWN if _unknown(items) else bounds.produced(tuple(items))

    def _Dict(self, node: nodes.Dict) -> Any:  # noqa: N802
        pairs = [(self.fold(p.key), self.fold(p.value)) for p in node.items]
        if any(_unknown(pair) for pair in pairs):
            return _UNKNOWN
        try:
            return bounds.produced(dict(pairs))
        except TypeError:
            return _UNKNOWN

    def _binop(self, node: nodes.BinExpr) -> Any:
        left, right = self.fold(node.left), self.fold(node.right)
        if left is _UNKNOWN or right is _UNKNOWN:
            return _UNKNOWN
        if node.operator in bounds.INTERCEPTED_BINOPS:
            bounds.check_binop(node.operator, left, right)
        return self._run(lambda: _BINOPS[node.operator](left, right))

    _Add = _Sub = _Mul = _Div = _FloorDiv = _Pow = _Mod = _binop

    def _Neg(self, node: nodes.Neg) -> Any:  # noqa: N802
        value = self.fold(node.node)
        return _UNKNOWN if value is _UNKNOWN else self._run(lambda: -value)

    def _Concat(self, node: nodes.Concat) -> Any:  # noqa: N802
        parts = self._all(node.nodes)
        if _unknown(parts):
            return _UNKNOWN
        for part in parts:
            bounds.check_text(part)
        texts = [p if type(p) is str else str(p) for p in parts]
        bounds.check_size(sum(map(len, texts)), "a concatenation")
        return bounds.produced("".join(texts))

    def _Filter(self, node: nodes.Filter) -> Any:  # noqa: N802
        value = self.fold(node.node) if node.node is not None else _UNKNOWN
        args = self._all(node.args)
        kwargs = {str(kw.key): self.fold(kw.value) for kw in node.kwargs}
        for extra in (node.dyn_args, node.dyn_kwargs):
            if extra is not None:
                self.fold(extra)
        if node.name not in _PURE_FILTERS or _unknown([value, *args, *kwargs.values()]):
            return _UNKNOWN
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return _UNKNOWN
        guarded = self.env.filters[node.name]
        passed = _passed(FILTERS[node.name])
        first: tuple[Any, ...] = ()
        if passed == "eval_context":
            first = (nodes.EvalContext(self.env),)
        elif passed == "environment":
            first = (self.env,)
        return self._run(lambda: guarded(*first, value, *args, **kwargs))

    def _Call(self, node: nodes.Call) -> Any:  # noqa: N802
        target = node.node
        owner = self.fold(target.node) if isinstance(target, nodes.Getattr) else _UNKNOWN
        if not isinstance(target, nodes.Getattr | nodes.Name):
            self.fold(target)
        args = self._all(node.args)
        kwargs = {str(kw.key): self.fold(kw.value) for kw in node.kwargs}
        for extra in (node.dyn_args, node.dyn_kwargs):
            if extra is not None:
                self.fold(extra)
        if _unknown([*args, *kwargs.values()]) or node.dyn_args is not None or node.dyn_kwargs is not None:
            return _UNKNOWN
        if isinstance(target, nodes.Getattr) and isinstance(owner, str) and not _unsafe(target.attr):
            method = getattr(owner, target.attr, None)
            if callable(method):
                bounds.check_str_method(method, tuple(args), kwargs)
                return self._run(lambda: method(*args, **kwargs))
        return _UNKNOWN

    @staticmethod
    def _run(work: Callable[[], Any]) -> Any:
        """``work()`` counted like a value built per event; a failure other than a bound is left
        to the event (``1 / 0`` is the sandbox's to report, as it always was)."""
        try:
            value = work()
            return _UNKNOWN if isinstance(value, Undefined) else bounds.produced(value)
        except BoundExceeded:
            raise
        except MemoryError:
            raise BoundExceeded("out of memory") from None
        except Exception:  # any other failure of a literal is the event's to report
            return _UNKNOWN


def _check_constants(env: Environment, tree: nodes.Node) -> None:
    token = bounds.start_event()  # a budget of its own: time and output, as one event has
    try:
        bounds.arm_deadline()
        value = _Folder(env).fold(tree)
        if value is not _UNKNOWN:
            bounds.check_text(value, "a value")  # an expression's value is sent as text (JSON) too
    except BoundExceeded as exc:
        raise RefusedAtLoad(f"a constant goes past a bound: {exc}") from None
    finally:
        bounds.end_event(token)


def check_tree(env: Environment, tree: nodes.Node) -> None:
    """``RefusedAtLoad`` for a tree that reaches internals or holds a constant past a bound."""
    _check_internals(tree)
    _check_constants(env, tree)
