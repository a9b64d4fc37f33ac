"""The ``certinfo`` filter of rule conditions holds memory bounded by configuration, not input."""

from __future__ import annotations

from reactor.certs import info
from reactor.rules.expressions import Expression


def test_the_filter_is_the_bounded_one() -> None:
    expr = Expression("(pem | certinfo).days_left is none")
    for i in range(2 * info.CACHE_ENTRIES):
        assert expr.evaluate({"pem": f"-----BEGIN CERTIFICATE-----{i}-----END CERTIFICATE-----"}) is True
    assert info.cache_size() <= info.CACHE_ENTRIES
    huge = "-----BEGIN CERTIFICATE-----" + "A" * (info.MAX_PEM_CHARS + 1)
    assert "more than" in Expression("(pem | certinfo).error").evaluate({"pem": huge})
