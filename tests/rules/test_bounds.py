"""A rule cannot freeze the event loop: evaluation is bounded in time and size, regexes are RE2.

Each hostile case used to hold the loop for minutes (a backtracking regex, ``x ** (10**9)``, nested
loops, ``[..] * 10**8`` folded at load); now it ends within the bounds, and in the daemon the event
is dead-lettered naming the rule while other events flow and SIGTERM is honoured.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.app import Reactor, install_signal_handlers
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.rules import bounds
from reactor.rules.bounds import BoundExceeded, Section
from reactor.rules.expressions import Expression, ExpressionError, Template
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from tests.rules.helpers import event, rules_from

EVIL_ID = "a" * 36 + "!"
EVENT = event({"operation": "config.create", "thing_id": "t", "external_id": EVIL_ID})
CTX: dict[str, Any] = {"event": EVENT, "results": {}}
BIG = "('y' * 999999)"
NESTED = "{% for i in [1] * 30000 %}{% for j in [1] * 30000 %}{% endfor %}{% endfor %}"
#: 3 million guarded filter calls: several seconds of work without any bound on time.
SLOW = "([0] * 999999) | map('string') | map('center', 3) | map('trim') | list | length > 0"


@pytest.fixture(autouse=True)
def _default_limits() -> Iterator[None]:
    previous = bounds.configure(bounds.Limits())
    yield
    bounds.configure(previous)


def _timed(fn: Any) -> tuple[float, Any]:
    """``fn()`` (or what it raised) and how long it took, on the evaluation clock (as rules run)."""
    started = time.perf_counter()
    try:
        with Section():
            result = fn()
    except (BoundExceeded, ExpressionError) as exc:
        result = exc
    return time.perf_counter() - started, result


@pytest.mark.timeout(10)
def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    took, result = _timed(lambda: Expression("event.external_id is matching('^(a+)+$')").evaluate(CTX))
    assert result is False
    assert took < 0.1
    assert Expression("event.external_id is imatching('^A+!$')").evaluate(CTX) is True


def test_a_pattern_re2_refuses_is_an_error_at_load() -> None:
    with pytest.raises(ExpressionError, match=r"invalid regex '\(a\)\\\\1'"):
        Expression("event.external_id is matching('(a)\\\\1')")
    with pytest.raises(ExpressionError, match="invalid regex"):
        Expression("event.channels | any('matching', '(?<=a)b')")


#: 1, read from the event: what the screen at load cannot fold (the bound is met per event).
ONE = "(event.thing_id | length)"
BIG_ON_EVENT = f"('y' * (999999 * {ONE}))"

#: Each bound, met by a rule made only of literals (refused at load, never built) and by one that
#: depends on the event (bounded when evaluated).
PAST_A_BOUND = [
    ("2 ** (10**9)", f"2 ** (10**9 * {ONE})", "max_int_bits"),
    ("[1, 2] * 10**8", f"[1, 2] * (10**8 * {ONE})", "max_value_size"),
    ("'ab' * 10**9", f"'ab' * (10**9 * {ONE})", "max_value_size"),
    ("'a'.ljust(10**9)", f"'a'.ljust(10**9 * {ONE})", "max_value_size"),
    ("'a' | center(1000000000)", f"'a' | center(1000000000 * {ONE})", "max_value_size"),
    ("'%0999999999d' % 1", f"'%0999999999d' % {ONE}", "max_value_size"),
    ("'{:>999999999}'.format(1)", f"'{{:>999999999}}'.format({ONE})", "max_value_size"),
    ("('x' * 100000).join('y' * 100000)", f"('x' * 100000).join('y' * (100000 * {ONE}))", "max_value_size"),
    ("('\\n' * 100000) | indent(100000)", f"('\\n' * 100000) | indent(100000 * {ONE})", "max_value_size"),
    ("[1] | batch(1000000000, 0) | list", f"[1] | batch(1000000000 * {ONE}, 0) | list", "max_value_size"),
    # a thousand references to one long string are a small list; their text is not
    (f"{BIG} ~ {BIG}", f"{BIG_ON_EVENT} ~ {BIG}", "max_value_size"),
    (f"''.join([{BIG}] * 100)", f"''.join([{BIG_ON_EVENT}] * 100)", "max_value_size"),
    (f"'{{}}'.format([{BIG}] * 100)", f"'{{}}'.format([{BIG_ON_EVENT}] * 100)", "max_value_size"),
    (f"[{BIG}] * 100", f"[{BIG_ON_EVENT}] * 100", "max_value_size"),  # a typed parameter: sent as JSON
    (f"([{BIG}] * 100) | string", f"([{BIG_ON_EVENT}] * 100) | string", "max_value_size"),
    (f"([{BIG}] * 100) | join", f"([{BIG_ON_EVENT}] * 100) | join", "max_value_size"),
    (f"([{BIG}] * 100) | tojson", f"([{BIG_ON_EVENT}] * 100) | tojson", "max_value_size"),
    (
        "([[1] * 999999] * 100) | sum(start=[])",
        f"([[1] * (999999 * {ONE})] * 100) | sum(start=[])",
        "max_value_size",
    ),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("source", "bound"), [(c, b) for c, _, b in PAST_A_BOUND])
def test_constants_past_a_bound_are_refused_at_load_never_built(source: str, bound: str) -> None:
    took, refused = _timed(lambda: Expression(source))
    assert isinstance(refused, ExpressionError), refused
    assert "a constant goes past a bound" in str(refused)
    assert bound in str(refused)
    assert took < 0.5


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("source", "bound"),
    [
        *((e, b) for _, e, b in PAST_A_BOUND),
        ("(event.thing_id | length + 1) ** (10**9)", "max_int_bits"),
        (SLOW, "eval_timeout_s"),
    ],
)
def test_hostile_expressions_stop_at_a_bound(source: str, bound: str) -> None:
    took, compiled = _timed(lambda: Expression(source))  # never folded (built) at load
    assert took < 0.5
    assert isinstance(compiled, Expression), compiled
    took, result = _timed(lambda: compiled.evaluate(CTX))
    assert isinstance(result, BoundExceeded), result
    assert bound in str(result)
    assert took < 1.5


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("source", "bound"),
    [
        (NESTED, "max_loop_iterations"),
        (
            "{% set x %}{% for i in 'a' * 30000 %}{{ 'y' * 999999 }}{% endfor %}{% endset %}{{ x }}",
            "max_event_output",
        ),
        ("{% for i in 'a' * 90000 %}{{ event.external_id * 1000 }}{% endfor %}", "max_value_size"),
        (f"{{% set s = {BIG} %}}{{{{ [s, s, s, s, s, s, s, s, s, s] }}}}", "max_value_size"),
        (f"{{% set s = {BIG} %}}{{{{ s ~ s }}}}", "max_value_size"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(40) }}",
            "eval_timeout_s",
        ),
        (
            "{% macro d(n) %}{% if n %}{% set s = d(n - 1) %}{{ s }}{{ s }}{% else %}x{% endif %}"
            "{% endmacro %}{{ d(60) }}",
            "max_value_size",
        ),
    ],
)
def test_hostile_templates_stop_at_a_bound(source: str, bound: str) -> None:
    compiled = Template(source)
    took, result = _timed(lambda: compiled.render(CTX))
    assert isinstance(result, BoundExceeded), result
    assert bound in str(result)
    assert took < 1.5


def test_macro_recursion_is_an_expression_error_not_a_crash() -> None:
    compiled = Template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    with pytest.raises(ExpressionError, match="recursion too deep"):
        compiled.render(CTX)


def test_ordinary_templates_are_untouched() -> None:
    template = Template("id {{ event.external_id[:3] }} {{ 2 ** 10 }} {{ '%05d' % 3 }} {{ 'ab' * 2 }}")
    assert template.render(CTX) == "id aaa 1024 00003 abab"
    looped = Template("{% for c in ['x', 'y'] %}{{ c | upper }}{% endfor %}")
    assert looped.render(CTX) == "XY"
    assert Template("{{ [1, 2] * 2 }}").render(CTX) == [1, 2, 1, 2]


def test_the_budget_is_per_event_and_counts_only_evaluation() -> None:
    bounds.configure(bounds.Limits(eval_timeout_s=0.2))
    slow = Expression(SLOW)
    loop = Template("{% for i in [1, 2] %}{{ i }}{% endfor %}")
    token = bounds.start_event()
    try:
        with pytest.raises(BoundExceeded), Section():
            slow.evaluate(CTX)
        time.sleep(0.3)  # awaiting an action: not evaluation time
        with pytest.raises(BoundExceeded, match="eval_timeout_s"), Section():  # the event's time is spent
            loop.render(CTX)
    finally:
        bounds.end_event(token)
    with Section():  # a new event
        assert loop.render(CTX) == "12"


def test_a_dry_run_reports_the_bound(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        f'[[rule]]\nname = "hog"\non = ["config.create"]\nwhen = ["{SLOW}"]\n'
        '[[rule.actions]]\ntype = "noop"\n',
    )
    (verdict,) = rules.explain(EVENT, CTX)
    assert verdict.reason is not None
    assert "FAILS the event" in verdict.reason
    assert "eval_timeout_s" in verdict.reason


RULES = f"""
[[rule]]
name = "fine"
on = ["config.create", "config.update"]
[[rule.actions]]
type = "noop"

[[rule]]
name = "hog"
on = ["config.create"]
when = ["event.external_id is matching('^(a+)+$') or event.content.slow is defined and {SLOW}"]
[[rule.actions]]
type = "noop"

[[rule]]
name = "loops"
on = ["config.update"]
[[rule.actions]]
id = "say"
type = "log"
message = "{{% for i in [1] * 30000 %}}{{% for j in [1] * 30000 %}}{{% endfor %}}{{% endfor %}}"

"""


def _add(source: MemorySource, operation: str, thing_id: str, **fields: str) -> None:
    source.add("supermq.bootstrap", {"operation": operation, "thing_id": thing_id, **fields})


async def _max_gap(stop: asyncio.Event, gaps: list[float]) -> None:
    """The longest the loop was held: a 10 ms ticker's lateness."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        gaps.append(time.perf_counter() - before - 0.01)


async def test_the_daemon_dead_letters_a_hog_stays_responsive_and_stops_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "r.toml").write_text(RULES)
    settings = load_settings(
        None,
        source="memory",
        rules={"dir": directory, "reload_interval_s": 0, "eval_timeout_s": 0.3},
        redis={"block_ms": 10},
        worker={"grace_s": 0.5},
    )
    source = MemorySource(finite=False)
    outcomes: list[Outcome] = []
    reactor = Reactor.build(settings, source, get_logger("test"), observers=[outcomes.append])
    assert bounds.limits().eval_timeout_s == 0.3  # from the settings
    for i in range(3):
        _add(source, "config.create", f"a{i}", external_id=EVIL_ID)
        _add(source, "config.create", f"s{i}", content='{"slow": 1}')
        _add(source, "config.update", f"l{i}")
    stop, ticking = asyncio.Event(), asyncio.Event()
    gaps: list[float] = []
    ticker = asyncio.create_task(_max_gap(ticking, gaps))
    task = asyncio.create_task(reactor.run(stop))
    async with asyncio.timeout(20):
        while len(outcomes) < 9:
            await asyncio.sleep(0.01)

    dead = {(d.rule, d.action) for d in source.dead_letters}
    assert dead == {("hog", "when (condition)"), ("loops", "say (log)")}
    by_thing = {o.event.thing_id: o for o in outcomes if o.event is not None}
    assert by_thing["a0"].dead_letter is None  # RE2: the evil id simply does not match
    slow = by_thing["s0"].dead_letter
    assert slow is not None
    assert "evaluation bound" in slow.error
    assert "eval_timeout_s" in slow.error
    looped = by_thing["l0"].dead_letter
    assert looped is not None
    assert "max_loop_iterations" in looped.error
    assert all("fine" in [r.rule for r in o.rules] for o in outcomes)  # the rule before still ran

    # SIGTERM while hogs keep arriving: the daemon stops within its grace
    for i in range(100):
        _add(source, "config.create", f"x{i}", content='{"slow": 1}')
    install_signal_handlers(stop, reactor.holder)
    try:
        await asyncio.sleep(0.2)
        signalled = time.perf_counter()
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5):
            await task
        assert time.perf_counter() - signalled < 3
        assert max(gaps) < 1.0, f"the loop was held {max(gaps):.2f}s"
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        ticking.set()
        await ticker
