"""The ``certinfo`` filter of rule conditions holds memory bounded by configuration, not input."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from reactor.certs import info
from reactor.rules import expressions
from reactor.rules.expressions import Expression
from tests.certs.corpus import issue


def test_the_filter_is_the_bounded_one() -> None:
    expr = Expression("(pem | certinfo).days_left is none")
    for i in range(2 * info.CACHE_ENTRIES):
        assert expr.evaluate({"pem": f"-----BEGIN CERTIFICATE-----{i}-----END CERTIFICATE-----"}) is True
    assert info.cache_size() <= info.CACHE_ENTRIES
    huge = "-----BEGIN CERTIFICATE-----" + "A" * (info.MAX_PEM_CHARS + 1)
    assert "more than" in Expression("(pem | certinfo).error").evaluate({"pem": huge})


class _Clock:
    """A clock a test moves: seconds since the epoch, now until told otherwise."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, days: float) -> None:
        self.now += days * 86_400


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(info, "clock", fake.time)
    monkeypatch.setattr(expressions, "time", fake)  # age_s / days_until read expressions.time.time()
    return fake


def _pem_due_in(days: float) -> str:
    root = issue("Ageing Root", ca=True)
    return issue("device", root, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).pem


def test_days_left_is_computed_against_the_clock_the_parsed_facts_are_cached(clock: _Clock) -> None:
    pem = _pem_due_in(10)
    assert info.certinfo(pem)["days_left"] == pytest.approx(10, abs=0.01)
    held = info.cache_size()
    clock.advance(9.5)
    assert info.certinfo(pem)["days_left"] == pytest.approx(0.5, abs=0.01)
    clock.advance(1)
    assert info.certinfo(pem)["days_left"] == pytest.approx(-0.5, abs=0.01)
    assert info.cache_size() == held  # parsed once, aged at every read


def test_a_literal_pem_in_a_rule_comes_due_in_a_long_running_daemon(clock: _Clock) -> None:
    """Jinja folded ``'<pem>' | certinfo`` when the rule was compiled: days_left never moved."""
    literal = _pem_due_in(10).replace("\n", "\\n")
    due = Expression(f"('{literal}' | certinfo).days_left < 1")
    days = Expression(f"('{literal}' | certinfo).days_left")
    assert due.evaluate({}) is False
    clock.advance(9.5)
    assert days.evaluate({}) == pytest.approx(0.5, abs=0.01)
    assert due.evaluate({}) is True


@pytest.mark.parametrize(
    ("source", "moves_by"),
    [
        ("'2030-01-01T00:00:00Z' | days_until", -3.0),
        ("'2030-01-01T00:00:00Z' | seconds_until", -3.0 * 86_400),
        ("'2020-01-01T00:00:00Z' | age_s", 3.0 * 86_400),
    ],
)
def test_time_filters_of_literals_are_evaluated_at_each_event(
    clock: _Clock, source: str, moves_by: float
) -> None:
    compiled = Expression(source)
    before = compiled.evaluate({})
    clock.advance(3)
    assert compiled.evaluate({}) - before == pytest.approx(moves_by, rel=1e-6)


@pytest.mark.parametrize(
    ("source", "after_4_days"),
    [
        ("'2030-01-01T00:00:00Z' is expiringwithin(2)", True),
        ("['2030-01-01T00:00:00Z'] | any('expiringwithin', 2)", True),
        ("'2030-01-01T00:00:00Z' is newerthan(-2 * 86400)", False),
        ("['2030-01-01T00:00:00Z'] | all('olderthan', -2 * 86400)", True),
    ],
)
def test_time_tests_of_literals_are_evaluated_at_each_event(
    clock: _Clock, source: str, after_4_days: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jinja folded a test over literals once, when the rule was compiled (like the filters
    above): ``'<date>' is expiringwithin(2)`` never came due in a long-running daemon."""
    clock.now = dt.datetime(2029, 12, 29, tzinfo=dt.UTC).timestamp()  # 3 days before
    compiled = Expression(source)
    assert compiled.evaluate({}) is not after_4_days
    clock.advance(4)  # one day after
    assert compiled.evaluate({}) is after_4_days
