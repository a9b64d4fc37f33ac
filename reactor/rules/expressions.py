"""Sandboxed conditions and templates for rules, on Jinja2's ``ImmutableSandboxedEnvironment``.

Why Jinja2: its sandbox is maintained and audited (no underscore attributes, no internals, no
mutation of containers, bounded ``range``), it has no imports or file access when no loader is
configured, ``StrictUndefined`` gives strict missing-field errors, and expressions compile to
Python bytecode once at load. We add StackStorm-like operators as tests and filters.

- A *condition* is one Jinja expression (``event.state == 1 and event.content.mode is defined``).
- A *template* is a string; when it is exactly one ``{{ expr }}`` the value keeps its type
  (number, list, dict, null), otherwise it renders as text.

Evaluation is bounded in time and size (``reactor.rules.bounds``): the sandbox's hooks (calls,
intercepted operators, filters) and the loops and outputs of templates (rewritten at compile time)
check the event's budget; going past it raises ``BoundExceeded``, never a failed condition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reactor.certs.info import certinfo as cert_facts
from reactor.events.model import NS_PER_S, Event
from reactor.rules import bounds, screen
from reactor.rules.bounds import BoundExceeded, RegexError
from reactor.rules.screen import RefusedAtLoad
from reactor.secrets import MASK, Secret, is_string_method

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
}
Compare = tuple[Callable[[Any, Any], Any], Any]
_N = TypeVar("_N", bound=nodes.Node)


def _shortcut(node: nodes.Expr) -> tuple[tuple[str, ...] | None, Compare | None]:
    """``a.b.c`` (a path) or ``a.b.c <op> <literal>`` (a comparison), read from Jinja's own parse
    tree; anything else runs the compiled template. Jinja compiles both to plain attribute steps
    through the sandbox's ``getattr`` and Python's comparison operators, which is what
    ``Expression._run`` does for them without creating a template context (nor a budget: a path
    and a comparison with a literal cannot loop or build anything)."""
    compare = None
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        operand = node.ops[0]
        if operand.op not in _COMPARE or not isinstance(operand.expr, nodes.Const):
            return None, None
        compare = (_COMPARE[operand.op], operand.expr.value)
        node = node.expr
    steps: list[str] = []
    while isinstance(node, nodes.Getattr):
        steps.append(node.attr)
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return None, None
    steps.append(node.name)
    return tuple(reversed(steps)), compare


_DAY_S = 86_400.0
_OPTIONAL_IDS = frozenset(
    {"thing_id", "channel_id", "config_id", "external_id", "user_id", "domain_id", "device"}
)


_MISSING = object()
_DICT_NAMES = frozenset(dir(dict))
#: What an Event holds as received (secrets in clear, untyped): not reachable from templates,
#: which see the decoded fields (secrets as Secrets) only.
_EVENT_RAW = frozenset({"payload", "raw", "secrets"})
_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Event)) - _EVENT_RAW


class ExpressionError(ValueError):
    """A condition or template that cannot compile, or fails when evaluated."""


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / NS_PER_S if value > 1e14 else float(value)  # nanoseconds or seconds
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        if "." in text:  # Go's RFC3339Nano has up to 9 fraction digits; Python takes 6
            head, _, tail = text.partition(".")
            digits = re.match(r"\d*", tail)
            frac = digits.group(0) if digits else ""
            text = f"{head}.{frac[:6].ljust(6, '0')}{tail[len(frac) :]}"
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ExpressionError(f"not a time: {value!r}")


def age_s(value: Any) -> float:
    """Seconds since ``value`` (a datetime, RFC3339 string, or ns/s epoch number)."""
    return time.time() - _to_datetime(value).timestamp()


def seconds_until(value: Any) -> float:
    """Seconds until ``value``; negative when it is past."""
    return -age_s(value)


def certinfo(pem: str) -> dict[str, Any]:
    """A certificate's facts for conditions (``reactor.certs.info.certinfo``: bounded, keyed by
    digest, ``days_left`` aged at every call): not_after, days_left, issuer, subject, serial."""
    return cert_facts(pem)


def days_until(value: Any) -> float:
    """Days until ``value``; negative when it is past (certificate ``not_after``)."""
    return seconds_until(value) / _DAY_S


def _matching(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and bounds.regex(str(pattern)).search(value)


def _imatching(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and bounds.regex(str(pattern), fold=True).search(value)


def _text_test(fn: Callable[[str, str], bool], fold: bool) -> Callable[[Any, Any], bool]:
    def test(value: Any, other: Any) -> bool:
        if not isinstance(value, str) or not isinstance(other, str):
            return False
        return fn(value.casefold(), other.casefold()) if fold else fn(value, other)

    return test


def _contains(value: Any, item: Any) -> bool:
    return isinstance(value, str | list | tuple | dict) and item in value


def _icontains(value: Any, item: Any) -> bool:
    if isinstance(value, str) and isinstance(item, str):
        return item.casefold() in value.casefold()
    if isinstance(value, list | tuple) and isinstance(item, str):
        return item.casefold() in (v.casefold() for v in value if isinstance(v, str))
    return False


# The clock's tests take the context, which Jinja never folds: over literals ('<date>' is
# expiringwithin(2)) they would otherwise be evaluated once, when the rule was compiled.
@pass_context
def _older_than(context: Context, value: Any, seconds: float) -> bool:
    return age_s(value) > seconds


@pass_context
def _newer_than(context: Context, value: Any, seconds: float) -> bool:
    return age_s(value) < seconds


@pass_context
def _expiring_within(context: Context, value: Any, days: float) -> bool:
    return days_until(value) < days


_TESTS: dict[str, Callable[..., Any]] = {
    "matching": _matching,
    "imatching": _imatching,
    "startingwith": _text_test(str.startswith, fold=False),
    "istartingwith": _text_test(str.startswith, fold=True),
    "endingwith": _text_test(str.endswith, fold=False),
    "iendingwith": _text_test(str.endswith, fold=True),
    "iequalto": _text_test(str.__eq__, fold=True),
    "containing": _contains,
    "icontaining": _icontains,
    "olderthan": _older_than,
    "newerthan": _newer_than,
    "expiringwithin": _expiring_within,
    "truthy": bool,
}


def _json_default(value: Any) -> Any:
    """``|tojson`` of a Secret is the mask (anything else that is not JSON fails as before)."""
    if isinstance(value, Secret):
        return MASK
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Set while a secret-accepting parameter renders: there a Secret output as text is its value.
_REVEAL: ContextVar[bool] = ContextVar("reactor_reveal_secrets", default=False)


@contextlib.contextmanager
def revealing() -> Iterator[None]:
    """While a secret-accepting parameter renders (``CompiledAction.render``): a Secret put into
    its text (``"Thing {{ results.config.thing_key }}"``) is its value. String filters and
    methods on it still give the mask; every other parameter, and dry runs, get the mask."""
    token = _REVEAL.set(True)
    try:
        yield
    finally:
        _REVEAL.reset(token)


def _as_text(value: Any) -> str:
    if type(value) is Secret:
        return value.reveal() if _REVEAL.get() else MASK
    return str(value)


@pass_context
def _loop_filter(context: Context, iterable: Any) -> Any:
    return bounds.bounded_loop(iterable)


@pass_context
def _emit_filter(context: Context, value: Any) -> str:
    if type(value) is not str:
        bounds.check_text(value)
        value = _as_text(value)
    return bounds.produced(value)  # type: ignore[no-any-return]


@pass_context
def _text_filter(context: Context, value: Any) -> str:
    """An output the renderer counts: only a value that is not text yet is sized first."""
    if type(value) is str:
        return value
    bounds.check_text(value)
    return _as_text(value)


@pass_context
def _concat_filter(context: Context, parts: list[Any]) -> str:
    """``a ~ b``: the parts' text sized before it is built."""
    for part in parts:
        bounds.check_text(part)
    texts = [p if type(p) is str else _as_text(p) for p in parts]
    bounds.check_size(sum(map(len, texts)), "a concatenation")
    return bounds.produced("".join(texts))  # type: ignore[no-any-return]


#: Filters the compiler inserts (``_bounded``); context filters, so never folded at load.
_LOOP, _EMIT, _TEXT, _CONCAT = (
    "reactor_bounded_loop",
    "reactor_bounded_output",
    "reactor_bounded_text",
    "reactor_bounded_concat",
)


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with our tests, filters and ``any``/``all`` over lists, and bounds."""

    intercepted_binops = bounds.INTERCEPTED_BINOPS

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.tests.update(_TESTS)
        self.filters.update(
            age_s=age_s,
            seconds_until=seconds_until,
            days_until=days_until,
            any=self._any,
            all=self._all,
            to_datetime=_to_datetime,
            certinfo=lambda pem: dict(certinfo(str(pem))),
        )
        self.filters = {name: bounds.guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters.update(
            {_LOOP: _loop_filter, _EMIT: _emit_filter, _TEXT: _text_filter, _CONCAT: _concat_filter}
        )
        self.globals = {"now": lambda: datetime.now(tz=UTC)}
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """A Secret offers only its string methods (each yields the mask), never ``reveal``."""
        if type(obj) is Secret:
            return is_string_method(attr)
        if type(obj) is Event and attr in _EVENT_RAW:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """``*``, ``**``, ``+``, ``%``: refused before they build something too big."""
        bounds.check_binop(operator, left, right)
        return bounds.produced(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Every call (methods, macros, ``loop()``): the clock, a ``str`` method's size, the result's size."""
        bounds.check_time()
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        if isinstance(getattr(target, "__self__", None), str):
            bounds.check_str_method(target, args, kwargs)
        return bounds.produced(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        """An Event's id that the event does not carry is undefined (strict), not None.

        Two shortcuts that end where the sandbox's own ``getattr`` ends, without its checks on
        every step (a third of a path parameter's cost): a data field of an Event (never a
        callable, never underscored), and a key of a plain dict that is not a dict attribute
        (Jinja tries the attribute first, fails, then the key)."""
        kind = type(obj)
        if kind is dict and attribute not in _DICT_NAMES:
            return obj[attribute] if attribute in obj else self.undefined(obj=obj, name=attribute)
        if kind is Event and attribute in _EVENT_FIELDS:
            value = getattr(obj, attribute)
            if value is None and attribute in _OPTIONAL_IDS:
                return self.undefined(obj=obj, name=attribute)
            return value
        value = super().getattr(obj, attribute)
        if value is None and isinstance(obj, Event) and attribute in _OPTIONAL_IDS:
            return self.undefined(obj=obj, name=attribute)
        return value

    def _select(self, context: Context, values: Any, test: str, args: tuple[Any, ...]) -> Iterable[bool]:
        if not isinstance(values, list | tuple):
            raise ExpressionError(f"any/all need a list, got {type(values).__name__}")
        return (bool(self.call_test(test, v, args, context=context)) for v in values)

    @pass_context
    def _any(self, context: Context, values: Any, test: str = "truthy", *args: Any) -> bool:
        return any(self._select(context, values, test, args))

    @pass_context
    def _all(self, context: Context, values: Any, test: str = "truthy", *args: Any) -> bool:
        return all(self._select(context, values, test, args))


_ENV = _Env()


def _check_defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


#: What Python's parser and compiler (and Jinja's, recursive) raise on a source nested too deeply.
_TOO_COMPLEX = (RecursionError, SyntaxError, MemoryError)
_SHOWN = 120


def _shown(source: str) -> str:
    """The source for a message: whole when short, its start when not (a message is one line)."""
    return source if len(source) <= _SHOWN else f"{source[:_SHOWN]}… ({len(source):,} characters)"


def _parse_expression(source: str) -> nodes.Expr:
    """What ``Environment.compile_expression`` parses, kept for the shortcut and the checks."""
    parser = Parser(_ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
    return expr


def _find(tree: nodes.Node, kind: type[_N]) -> Iterator[_N]:
    """``tree`` itself (when of that kind) and every node of that kind under it."""
    if isinstance(tree, kind):
        yield tree
    yield from tree.find_all(kind)


def _is_const(*items: nodes.Node) -> bool:
    return all(isinstance(i, nodes.Const) for i in items)


def _check_patterns(tree: nodes.Node) -> None:
    """Literal regexes are compiled at load, so a pattern RE2 refuses is an error of the rule file."""
    for test in _find(tree, nodes.Test):
        if test.name in ("matching", "imatching") and test.args and isinstance(test.args[0], nodes.Const):
            bounds.regex(str(test.args[0].value), fold=test.name == "imatching")
    for flt in _find(tree, nodes.Filter):
        args = flt.args
        if flt.name in ("any", "all") and len(args) >= 2 and _is_const(args[0], args[1]):
            test = args[0].value  # type: ignore[attr-defined]
            if test in ("matching", "imatching"):
                bounds.regex(str(args[1].value), fold=test == "imatching")  # type: ignore[attr-defined]


def _filtered(node: nodes.Expr, name: str) -> nodes.Expr:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


#: What buffers its output instead of yielding it to the renderer (which counts what it is given).
_BUFFERS = (nodes.Macro, nodes.CallBlock, nodes.AssignBlock, nodes.FilterBlock)


def _output(node: nodes.Expr, buffered: bool) -> nodes.Expr:
    """One piece of output: what reaches the renderer is counted there (text is sized first);
    what a macro or block buffers is counted here, literal text included."""
    if buffered:
        return _filtered(node, _EMIT)
    return node if isinstance(node, nodes.TemplateData) else _filtered(node, _TEXT)


def _rewrite(node: nodes.Node, buffered: bool) -> nodes.Node:
    """``node`` rewritten so that what the sandbox's hooks do not see is bounded too: each
    ``{% for %}`` iterates through the loop bound, each ``~`` sizes its text first, and each output
    sizes a value before it becomes text (inside a macro or block, literal text is counted too:
    the renderer does not see those pieces)."""
    inner = buffered or isinstance(node, _BUFFERS)
    for name, value in node.iter_fields():
        if isinstance(value, list):
            setattr(node, name, [_rewrite(v, inner) if isinstance(v, nodes.Node) else v for v in value])
        elif isinstance(value, nodes.Node):
            setattr(node, name, _rewrite(value, inner))
    if isinstance(node, nodes.For):
        node.iter = _filtered(node.iter, _LOOP)  # type: ignore[arg-type]  # an Expr: what is iterated
    elif isinstance(node, nodes.Concat):
        return _filtered(nodes.List(node.nodes, lineno=node.lineno), _CONCAT)
    elif isinstance(node, nodes.Output):
        node.nodes = [_output(n, buffered) for n in node.nodes]
    return node


def _bounded(tree: nodes.Template) -> nodes.Template:
    """The tree rewritten by ``_rewrite``, ready to compile."""
    _rewrite(tree, buffered=False)
    tree.set_environment(_ENV)
    return tree


def _compile_expression(source: str) -> tuple[Any, nodes.Expr]:
    screen.check_source(_ENV, source, expression=True)
    node = _parse_expression(source)
    _check_patterns(node)
    screen.check_tree(_ENV, node)
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=1)]
    return _ENV.from_string(_bounded(nodes.Template(body, lineno=1))), node


class Expression:
    """A compiled expression: ``evaluate(ctx)`` returns its value, or raises ``ExpressionError``
    (``BoundExceeded`` when it went past the evaluation bounds)."""

    __slots__ = ("_compare", "_path", "_template", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._template, node = _compile_expression(source)
            self._path, self._compare = _shortcut(node)
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"invalid expression {_shown(source)!r}: {exc.message}") from None
        except (RegexError, RefusedAtLoad, UndefinedError) as exc:  # Jinja folds literals: {}.x
            raise ExpressionError(f"{_shown(source)!r}: {exc}") from None
        except _TOO_COMPLEX:
            raise ExpressionError(f"invalid expression {_shown(source)!r}: nested too deeply") from None

    def _lookup(self, ctx: Mapping[str, Any], path: tuple[str, ...]) -> Any:
        """What the compiled template does for ``a.b.c`` (the sandbox's getattr on each step),
        without building a template context: most parameters are such paths."""
        head = path[0]
        value = ctx[head] if head in ctx else _ENV.globals.get(head, _MISSING)
        if value is _MISSING:
            value = _ENV.undefined(name=head)
        for attribute in path[1:]:
            value = _ENV.getattr(value, attribute)
        return value

    def _run(self, ctx: Mapping[str, Any]) -> Any:
        if self._path is not None:
            value = self._lookup(ctx, self._path)
            if self._compare is None:
                return value
            op, constant = self._compare
            return op(value, constant)  # what the compiled code does: Python's own operator
        # What jinja2's TemplateExpression.__call__ does, with a shared context: the variables are
        # not copied into a fresh dict with the globals on every call (half the cost per condition).
        variables = ctx if "now" in ctx else {**_ENV.globals, **ctx}
        context = self._template.new_context(variables, shared=True)
        for _ in self._template.root_render_func(context):
            pass
        result = context.vars["result"]
        bounds.check_text(result, "a value")  # a typed parameter is sent as text (JSON) too
        return result

    def evaluate(self, ctx: Mapping[str, Any]) -> Any:
        try:
            return _check_defined(self._run(ctx))
        except UndefinedError as exc:
            raise ExpressionError(f"{_shown(self.source)!r}: {exc.message}") from None
        except BoundExceeded as exc:
            raise BoundExceeded(f"{_shown(self.source)!r}: {exc}") from None
        except MemoryError:
            raise BoundExceeded(f"{_shown(self.source)!r}: out of memory") from None
        except _EVAL_ERRORS as exc:
            raise ExpressionError(_failed(self.source, exc)) from None


#: What a sandboxed evaluation may raise for a bad value or a forbidden step (all: the expression
#: fails, the reason is reported); RecursionError: a macro calling itself without end.
_EVAL_ERRORS = (
    TemplateError,
    TypeError,
    ValueError,
    ArithmeticError,
    AttributeError,
    KeyError,
    IndexError,
    RecursionError,
)


def _failed(source: str, exc: Exception) -> str:
    shown = _shown(source)
    if isinstance(exc, SecurityError):
        return f"{shown!r}: not allowed in the sandbox: {exc}"
    if isinstance(exc, RecursionError):
        return f"{shown!r}: recursion too deep (a macro calling itself without end?)"
    if isinstance(exc, RegexError):
        return f"{shown!r}: {exc}"
    return f"{shown!r}: {type(exc).__name__}: {exc}"


class Template:
    """A compiled parameter value: strings are templates; lists and tables are walked."""

    __slots__ = ("_render", "is_static", "source")

    def __init__(self, value: Any) -> None:
        self.source = value
        self.is_static = not _has_template(value)
        self._render = _compile_value(value)

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return self._render(ctx)


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


def _compile_value(value: Any) -> Callable[[Mapping[str, Any]], Any]:
    if isinstance(value, str):
        return _compile_string(value)
    if isinstance(value, list):
        parts = [_compile_value(v) for v in value]
        return lambda ctx: [p(ctx) for p in parts]
    if isinstance(value, dict):
        items = [(k, _compile_value(v)) for k, v in value.items()]
        return lambda ctx: {k: p(ctx) for k, p in items}
    return lambda ctx: value


def _compile_template(text: str) -> Any:
    try:
        screen.check_source(_ENV, text, expression=False)
        tree = _ENV.parse(text)
        _check_patterns(tree)
        screen.check_tree(_ENV, tree)
        return _ENV.from_string(_bounded(tree))
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid template {_shown(text)!r}: {exc.message}") from None
    except (RegexError, RefusedAtLoad, UndefinedError) as exc:  # Jinja folds literals: {}.x
        raise ExpressionError(f"{_shown(text)!r}: {exc}") from None
    except _TOO_COMPLEX:
        raise ExpressionError(f"invalid template {_shown(text)!r}: nested too deeply") from None


def _render_bounded(template: Any, ctx: Mapping[str, Any]) -> str:
    """``template.render(**ctx)``, the pieces counted as they come: the text never outgrows the bounds."""
    pieces = []
    size, limit = 0, bounds.limits().max_value_size
    for piece in template.root_render_func(template.new_context(dict(ctx))):
        size += len(piece)
        if size > limit:
            bounds.check_size(size, "a rendered template")
        pieces.append(piece)
    return bounds.produced("".join(pieces))  # type: ignore[no-any-return]


def _compile_string(text: str) -> Callable[[Mapping[str, Any]], Any]:
    if "{{" not in text and "{%" not in text:
        return lambda ctx: text
    single = _SINGLE_EXPR.match(text)
    if single:
        expr = Expression(single.group("expr").strip())
        return expr.evaluate
    template = _compile_template(text)

    def render(ctx: Mapping[str, Any]) -> str:
        try:
            return _render_bounded(template, ctx)
        except UndefinedError as exc:
            raise ExpressionError(f"{_shown(text)!r}: {exc.message}") from None
        except BoundExceeded as exc:
            raise BoundExceeded(f"{_shown(text)!r}: {exc}") from None
        except MemoryError:
            raise BoundExceeded(f"{_shown(text)!r}: out of memory") from None
        except _EVAL_ERRORS as exc:
            raise ExpressionError(_failed(text, exc)) from None

    return render
