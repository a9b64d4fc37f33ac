"""Bounds on evaluating rules: whatever a condition or template says, it ends soon and stays small.

Rules run on the event loop, so a rule that loops, recurses or builds a huge value would freeze the
daemon (no ack, no signal handling). Every evaluation therefore runs under a :class:`Budget`:

- **time**: the conditions and templates of one event share ``eval_timeout_s`` of evaluation time
  (time spent awaiting actions is not counted); the sandbox checks it on every call, loop
  iteration, filter and arithmetic operator it intercepts;
- **size**: no operator, call, filter or template builds a string or collection longer than
  ``max_value_size`` (checked *before* the work where the size can be known: ``'a' * n``,
  ``x ** n``, ``s.ljust(n)``, ``'%099999999d'``), and all of them together build at most
  ``max_event_output`` characters/items per event;
- **loops**: ``{% for %}`` iterations per event are capped at ``max_loop_iterations``.

A rule past a bound raises :class:`BoundExceeded`, which is not a failed condition (that would make
the rule silently not match) but a failure of the rule for that event: the executor dead-letters the
event naming the rule. Regexes run on RE2 (linear time in the input, whatever the pattern).

The limits are process-wide (one sandbox per process), set from ``[rules]`` settings by
:func:`configure`. The budget of the event being evaluated lives in a context variable: each lane
task evaluates its own event.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sized
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information
from jinja2 import pass_context
from jinja2.runtime import Context
from re2 import _re2

if TYPE_CHECKING:
    from reactor.settings import RulesSettings

_monotonic = time.monotonic


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds (see ``[rules]`` in config.example.toml)."""

    eval_timeout_s: float = 0.5
    max_value_size: int = 1_000_000
    max_event_output: int = 16_000_000
    max_loop_iterations: int = 100_000
    max_int_bits: int = 4096
    max_template_tokens: int = 10_000

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> Limits:
        return cls(
            eval_timeout_s=settings.eval_timeout_s,
            max_value_size=settings.max_value_size,
            max_event_output=settings.max_event_output,
            max_loop_iterations=settings.max_loop_iterations,
            max_int_bits=settings.max_int_bits,
            max_template_tokens=settings.max_template_tokens,
        )


_limits = Limits()


def configure(limits: Limits) -> Limits:
    """Set the process-wide limits; returns the previous ones."""
    global _limits  # one sandbox per process, configured once from settings
    previous, _limits = _limits, limits
    return previous


def limits() -> Limits:
    return _limits


class BoundExceeded(Exception):  # noqa: N818 - reads as what happened: "bound exceeded"
    """A rule went past a bound (time, size, loop iterations) while evaluating one event."""


class Budget:
    """What one event may still spend: evaluation time, loop iterations, characters built."""

    __slots__ = ("deadline", "depth", "iterations", "left_s", "output", "started")

    def __init__(self) -> None:
        self.left_s = _limits.eval_timeout_s
        self.iterations = _limits.max_loop_iterations
        self.output = _limits.max_event_output
        self.deadline = float("inf")
        self.started = 0.0
        self.depth = 0


_BUDGET: ContextVar[Budget | None] = ContextVar("reactor_rule_budget", default=None)


def start_event() -> Token[Budget | None]:
    """A fresh budget for the event about to be evaluated (``end_event`` with the token after)."""
    return _BUDGET.set(Budget())


def end_event(token: Token[Budget | None]) -> None:
    _BUDGET.reset(token)


def arm_deadline() -> None:
    """Start the clock of the current budget outside a ``Section`` (screening a rule at load: the
    loop's pacing is not charged for it)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.deadline = _monotonic() + budget.left_s


# ---- pacing: a rule at its bound holds the loop once, not once per concurrent event ---------------

#: Evaluation time (all events) after which the loop polls (I/O, timers, signals) before the next;
#: an evaluation longer than this (a rule at its bound) is followed by as long a rest.
PACE_S = 0.05
_AFTER_TIMERS_S = 1e-6


class _Round:
    """Evaluation time since the loop last polled, and until when the loop rests from evaluations
    after a long one; shared by every lane task (one loop per process)."""

    __slots__ = ("held", "reset_pending", "rest_until")

    def __init__(self) -> None:
        self.held = 0.0
        self.reset_pending = False
        self.rest_until = 0.0

    def reset(self) -> None:
        self.held, self.reset_pending = 0.0, False

    def add(self, elapsed: float, now: float) -> None:
        self.held += elapsed
        if elapsed > PACE_S:
            self.rest_until = now + elapsed


_round = _Round()


def should_pace() -> bool:
    """Whether evaluations since the loop last polled took more than ``PACE_S`` (the executor asks
    before each evaluation that may take long: the conditions, an action's templates)."""
    return _round.held > PACE_S or _round.rest_until > 0.0


async def pace() -> None:
    """Wait before an evaluation while evaluations held the loop: for the loop's next round (I/O
    polled, timers and signal handlers run) after ``PACE_S`` of them, and after one long evaluation
    for as long again (lane tasks ready at once would otherwise each take a full
    ``eval_timeout_s``, and an HTTP answer that needs a few rounds would wait a hog per round)."""
    loop = asyncio.get_running_loop()
    while True:
        if not _round.reset_pending:
            _round.reset_pending = True
            loop.call_soon(_round.reset)  # runs after the loop polled
        rest = _round.rest_until - _monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
            continue
        _round.rest_until = 0.0
        if _round.held <= PACE_S:
            return
        # A timer, not sleep(0): the next round runs I/O callbacks and the timers due before this
        # one first (a timer that fell due during a long evaluation waits for one, not two).
        await asyncio.sleep(_AFTER_TIMERS_S)


class Section:
    """``with Section():`` around one evaluation: the clock of the event's budget runs inside.

    Outside an event (a dry run, a test) the section has a budget of its own. Re-entrant."""

    __slots__ = ("_budget", "_token")

    def __enter__(self) -> Budget:
        budget = _BUDGET.get()
        self._token = None
        if budget is None:
            budget = Budget()
            self._token = _BUDGET.set(budget)
        if budget.depth == 0:
            budget.started = _monotonic()
            budget.deadline = budget.started + budget.left_s
        budget.depth += 1
        self._budget = budget
        return budget

    def __exit__(self, *exc: object) -> None:
        budget = self._budget
        budget.depth -= 1
        if budget.depth == 0:
            now = _monotonic()
            elapsed = now - budget.started
            budget.left_s -= elapsed
            budget.deadline = float("inf")
            _round.add(elapsed, now)
        if self._token is not None:
            _BUDGET.reset(self._token)


# ---- checks (called from the sandbox's hooks) ---------------------------------------------------


def check_time() -> None:
    budget = _BUDGET.get()
    if budget is not None and _monotonic() > budget.deadline:
        raise BoundExceeded(f"evaluation took longer than {_limits.eval_timeout_s:g}s (rules.eval_timeout_s)")


def _too_big(size: int, what: str) -> BoundExceeded:
    limit = _limits.max_value_size
    return BoundExceeded(f"{what} of {size:,} items exceeds rules.max_value_size ({limit:,})")


def check_size(size: int, what: str = "a value") -> None:
    if size > _limits.max_value_size:
        raise _too_big(size, what)


def produced(value: Any) -> Any:
    """Count a value just built against the event's budget; the value itself when within bounds."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        size = len(value)
        if size > _limits.max_value_size:
            raise _too_big(size, "a value")
        budget = _BUDGET.get()
        if budget is not None:
            budget.output -= size
            if budget.output < 0:
                raise BoundExceeded(
                    f"built more than {_limits.max_event_output:,} items in all (rules.max_event_output)"
                )
    elif isinstance(value, int) and value.bit_length() > _limits.max_int_bits:
        raise BoundExceeded(f"an integer of more than {_limits.max_int_bits} bits (rules.max_int_bits)")
    return value


_CONTAINERS = (list, tuple, dict, set, frozenset)


def text_size(value: Any, limit: int) -> int:
    """About ``len(str(value))`` without building it (a list of a thousand references to one long
    string is small, its text is not); the walk stops once past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, _CONTAINERS):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def check_text(value: Any, what: str = "a value as text") -> None:
    """Before a container is turned into text (output, ``~``, ``|string``, ``|tojson``, ``join``)."""
    if isinstance(value, _CONTAINERS):
        check_size(text_size(value, _limits.max_value_size), what)


def _joined(separator: Any, items: Any) -> int:
    """The length of ``separator.join(items)``, about."""
    if not isinstance(items, Collection):
        return 0
    return _length(separator) * len(items) + text_size(list(items), _limits.max_value_size)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 1


def _bits(value: Any) -> int:
    return abs(int(value)).bit_length() if isinstance(value, int) else 0


def _check_bits(bits: int) -> None:
    if bits > _limits.max_int_bits:
        limit = _limits.max_int_bits
        raise BoundExceeded(f"an integer of ~{bits:,} bits exceeds rules.max_int_bits ({limit})")


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        _check_bits(_bits(left) + _bits(right))
    elif isinstance(right, int) and isinstance(left, Sized):
        check_size(len(left) * max(right, 0), "a repeated sequence")
    elif isinstance(left, int) and isinstance(right, Sized):
        check_size(len(right) * max(left, 0), "a repeated sequence")


def _check_pow(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _check_bits(left.bit_length() * min(right, 1 << 62))


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, Sized) and isinstance(right, Sized):
        check_size(len(left) + len(right), "a concatenation")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?(?::([^{}]*))?\}")
_DIGITS = re.compile(r"\d+")


def _check_spec_widths(widths: Iterable[str]) -> None:
    for width in widths:
        if width == "*" or "{" in width:
            raise BoundExceeded("a format width taken from an argument is not allowed in rules")
        for digits in _DIGITS.findall(width):
            check_size(int(digits) if len(digits) < 19 else 1 << 62, "a formatted field")


def check_percent_format(fmt: str) -> None:
    """``'%0999999999d' % x``: the widths and precisions of a ``%`` format."""
    if "%" in fmt:
        _check_spec_widths(w for m in _PERCENT_SPEC.finditer(fmt) for w in m.groups() if w)


def check_brace_format(fmt: str) -> None:
    """``'{:>999999999}'.format(x)``: the widths of a ``str.format`` format (nested fields refused)."""
    if "{" not in fmt:
        return
    if re.search(r"\{[^{}]*:[^{}]*\{", fmt):
        raise BoundExceeded("a format width taken from an argument is not allowed in rules")
    _check_spec_widths(m.group(1) for m in _BRACE_SPEC.finditer(fmt) if m.group(1))


def _check_mod(left: Any, right: Any) -> None:
    if isinstance(left, str):
        check_percent_format(left)


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "**": _check_pow,
    "+": _check_add,
    "%": _check_mod,
}
#: The operators the sandbox intercepts (and so never folds at load: ``[..] * 10**8`` is not built
#: when the rule is compiled).
INTERCEPTED_BINOPS = frozenset(_BINOP_CHECKS)


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Before ``left <operator> right`` runs: would the result be too big?"""
    check_time()
    _BINOP_CHECKS[operator](left, right)


def _ints(args: Iterable[Any]) -> int:
    return max((abs(a) for a in args if isinstance(a, int) and not isinstance(a, bool)), default=0)


def check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a ``str`` method runs: ``s.ljust(n)``, ``sep.join(items)``, ``s.replace(a, b)``, formats."""
    owner = method.__self__
    name = method.__name__
    if name in ("format", "format_map"):
        check_brace_format(owner)
        for arg in (*args, *kwargs.values()):
            check_text(arg, "a formatted argument")
        return
    if name == "join" and args:
        check_size(_joined(owner, args[0]), "a joined string")
    elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        check_size((len(owner) + 1) * len(args[1]) + len(owner), "a replaced string")
    check_size(_ints(args) + _ints(kwargs.values()), f"a str.{name} result")


# ---- filters --------------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 4)
    per_line = width if isinstance(width, int) else _length(width)
    lines = value.count("\n") + 1 if isinstance(value, str) else 1
    check_size(lines * per_line + _length(value), "an indented string")


def _check_replace(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    new = _arg(args, kwargs, 1, "new", "")
    check_size((_length(value) + 1) * _length(new) + _length(value), "a replaced string")


def _check_join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_size(_joined(_arg(args, kwargs, 0, "d", ""), value), "a joined string")


def _check_as_text(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_text(value)
    _check_int_args(value, args, kwargs)


def _check_sum(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if not isinstance(_arg(args, kwargs, 1, "start", 0), int):  # summing lists or strings: concatenation
        check_text(value, "a sum of sequences")


def _check_wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    wrap = _arg(args, kwargs, 2, "wrapstring", None)
    check_size(_length(value) * (1 + (_length(wrap) if wrap else 1)), "a wrapped string")


def _check_format(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(value, str):
        check_percent_format(value)
    for arg in (*args, *kwargs.values()):
        check_text(arg, "a formatted argument")


def _check_int_args(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_size(_ints(args) + _ints(kwargs.values()), "a filter result")


#: Built-in filters whose arguments set the size of what they build.
_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _check_int_args,
    "batch": _check_int_args,
    "slice": _check_int_args,
    "truncate": _check_int_args,
    "tojson": _check_as_text,
    "string": _check_as_text,
    "pprint": _check_as_text,
    "xmlattr": _check_as_text,
    "urlencode": _check_as_text,
    "sum": _check_sum,
    "urlize": _check_int_args,
    "indent": _check_indent,
    "replace": _check_replace,
    "join": _check_join,
    "wordwrap": _check_wordwrap,
    "format": _check_format,
}


#: Filters whose value depends on when they run. Jinja folds a filter of literals once, when the
#: template is compiled (``'2030-01-01' | days_until`` would never age, nor the ``days_left`` of a
#: literal PEM's ``certinfo``): these take the context, which Jinja never folds.
CLOCK_FILTERS = frozenset({"age_s", "seconds_until", "days_until", "certinfo"})


def guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` checked: the time before, the arguments (when they set a size), the size of the result."""
    if name in CLOCK_FILTERS and getattr(fn, "jinja_pass_arg", None) is None:
        checked = guard_filter("", fn)

        @pass_context
        def at_each_evaluation(context: Context, *args: Any, **kwargs: Any) -> Any:
            return checked(*args, **kwargs)

        at_each_evaluation.__name__ = getattr(fn, "__name__", name)
        return at_each_evaluation
    check = _FILTER_CHECKS.get(name)
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1  # (context,) value, *args

    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_time()
        if check is not None and len(args) >= skip:
            check(args[skip - 1], args[skip:], kwargs)
        return produced(fn(*args, **kwargs))

    guarded.__name__ = getattr(fn, "__name__", name)
    if hasattr(fn, "jinja_pass_arg"):
        guarded.jinja_pass_arg = fn.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


def bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a ``{% for %}`` iterates: the items, while the event has iterations and time left."""
    budget = _BUDGET.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.iterations -= 1
        if budget.iterations < 0:
            raise BoundExceeded(
                f"more than {_limits.max_loop_iterations:,} loop iterations (rules.max_loop_iterations)"
            )
        if _monotonic() > budget.deadline:
            check_time()
        yield item


# ---- regexes ---------------------------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # an invalid pattern is reported as an error of the rule, not on stderr
_RE2_OPTIONS.never_capture = True  # conditions ask whether it matches, never for groups
_RE2_FOLD = re2.Options()
_RE2_FOLD.log_errors = False
_RE2_FOLD.never_capture = True
_RE2_FOLD.case_sensitive = False
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


class RegexError(ValueError):
    """A pattern RE2 does not take (invalid, or a Perl-only construct like backreferences)."""


class Pattern:
    """A compiled RE2 pattern: matching is linear in the text, whatever the pattern.

    RE2's own engine, called directly: ``re2.compile(..).search`` wraps it in match objects and
    offset bookkeeping (four times the cost) that a yes/no condition does not need."""

    __slots__ = ("_regexp",)

    def __init__(self, pattern: str, fold: bool) -> None:
        self._regexp = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _RE2_FOLD if fold else _RE2_OPTIONS)
        if not self._regexp.ok():
            raise RegexError(f"invalid regex {pattern!r}: {self._regexp.error().decode(errors='replace')}")

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._regexp.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)


@lru_cache(maxsize=1024)
def regex(pattern: str, fold: bool = False) -> Pattern:
    """The compiled pattern (cached: patterns are mostly literals in rules)."""
    return Pattern(pattern, fold)
