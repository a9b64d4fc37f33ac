"""Every condition operator, nesting, and reaching into decoded metadata and content."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reactor.rules.model import compile_condition
from tests.rules.helpers import event

NOW_NS = time.time_ns()
EVENT = event(
    {
        "operation": "thing.bootstrap",
        "thing_id": "74f00d13-d370-42c0-b528-04fff995275c",
        "external_id": "FF-41-EF-BC-90-BC",
        "name": "Gateway-North",
        "success": "1",
        "state": "1",
        "channels": "[ctrl-1, data-2, export-3]",
        "tags": '["prod","eu"]',
        "metadata": json.dumps({"region": "eu-west", "limits": {"rate": 50}}),
        "content": json.dumps({"secure_connection": True, "port": 8883, "servers": ["a", "b"]}),
        "occurred_at": str(NOW_NS - 15 * 60 * 10**9),  # 15 minutes ago
        "cert_not_after": (datetime.now(tz=UTC) + timedelta(days=5)).isoformat(),
    }
)


def holds(expr: Any) -> bool:
    return compile_condition(expr).failure({"event": EVENT}) is None


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # equality, inequality
        ("event.name == 'Gateway-North'", True),
        ("event.name != 'Gateway-North'", False),
        ("event.state == 1", True),
        # case-insensitive
        ("event.name is iequalto('gateway-north')", True),
        ("event.name | lower == 'gateway-north'", True),
        ("event.name is icontaining('NORTH')", True),
        ("event.name is istartingwith('GATE')", True),
        ("event.name is iendingwith('NORTH')", True),
        # contains / starts / ends
        ("event.name is containing('way')", True),
        ("event.channels is containing('data-2')", True),
        ("event.name is startingwith('Gate')", True),
        ("event.name is startingwith('gate')", False),
        ("event.name is endingwith('North')", True),
        # regex
        ("event.external_id is matching('^([0-9A-F]{2}-){5}[0-9A-F]{2}$')", True),
        ("event.external_id is matching('^ZZ')", False),
        ("event.name is imatching('^gateway')", True),
        # exists / not exists
        ("event.content.port is defined", True),
        ("event.content.missing is defined", False),
        ("event.content.missing is undefined", True),
        # in / not in
        ("'prod' in event.tags", True),
        ("'staging' not in event.tags", True),
        ("event.metadata.region in ['eu-west', 'eu-north']", True),
        # numeric
        ("event.content.port > 1024", True),
        ("event.metadata.limits.rate < 10", False),
        ("event.content.port >= 8883 and event.content.port <= 8883", True),
        # time differences
        ("event.occurred_at is olderthan(600)", True),
        ("event.occurred_at is olderthan(3600)", False),
        ("event.occurred_at is newerthan(3600)", True),
        ("event.occurred_at_ns | age_s > 600", True),
        ("event.cert_not_after is expiringwithin(30)", True),
        ("event.cert_not_after is expiringwithin(1)", False),
        ("event.cert_not_after | days_until > 4", True),
        # any / all over lists
        ("event.channels | any('startingwith', 'data')", True),
        ("event.channels | all('matching', '^[a-z]+-[0-9]$')", True),
        ("event.channels | all('startingwith', 'ctrl')", False),
        ("event.content.servers | any", True),
        # and / or / not
        ("event.success and (event.state == 0 or event.content.secure_connection)", True),
        ("not event.success", False),
    ],
)
def test_operators(expr: str, expected: bool) -> None:
    assert holds(expr) is expected


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (["event.success", "event.state == 1"], True),
        ({"all": ["event.success", "event.state == 0"]}, False),
        ({"any": ["event.state == 0", "event.metadata.region == 'eu-west'"]}, True),
        ({"not": "event.state == 0"}, True),
        ({"not": {"any": ["event.state == 0", "event.success"]}}, False),
        ({"all": [{"any": ["false", {"not": "false"}]}, {"not": {"all": ["true", "false"]}}]}, True),
    ],
)
def test_nesting(node: Any, expected: bool) -> None:
    assert holds(node) is expected


def test_failure_reasons_name_the_condition() -> None:
    reason = compile_condition(["event.success", "event.state == 0"]).failure({"event": EVENT})
    assert reason == "'event.state == 0' is False"
    reason = compile_condition({"any": ["event.state == 0", "event.nope == 1"]}).failure({"event": EVENT})
    assert reason is not None
    assert reason.startswith("none of: 'event.state == 0' is False; 'event.nope == 1'")
    assert "no attribute 'nope'" in reason
    reason = compile_condition({"not": "event.success"}).failure({"event": EVENT})
    assert reason == "not(event.success) is False"


def test_a_missing_field_fails_the_condition_instead_of_raising() -> None:
    condition = compile_condition("event.content.missing.deeper == 1")
    reason = condition.failure({"event": EVENT})
    assert reason is not None
    assert "missing" in reason


@pytest.mark.parametrize("bad", [{"some": ["x"]}, {"all": "x"}, {"any": ["a"], "all": ["b"]}, 3])
def test_malformed_condition_tables_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="a condition is"):
        compile_condition(bad)
