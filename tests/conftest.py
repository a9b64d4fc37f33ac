"""Shared fixtures: real servers (skip locally when missing, fail under CI=true), rules, workers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

REPO = Path(__file__).resolve().parent.parent
#: The reference material CI lays out beside the checkout (a user's clone has none). The project
#: carries what its tests need; tests only cross-check its own copies against this, where it is.
SHARED = REPO.parent / "shared"


REDIS_URL = os.environ.get("REACTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Each test gets the logging configuration the one before found: a test that configures
    logging (a level, a stream) leaves no filter behind for the tests that capture warnings."""
    from reactor.ops import logging as reactor_logging

    before, chain = structlog.get_config(), reactor_logging._JSON_CHAIN
    yield
    structlog.configure(**before)
    reactor_logging._JSON_CHAIN = chain


def shared(*parts: str) -> Path:
    """A path in the reference beside the checkout; when it is not there the test skips, or
    fails under CI (whose first run has the reference; .ci/run's clone runs without CI)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing(f"{path} is not here: the cross-check against the reference needs it")
    return path


def reactor_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m reactor ARGS`` from the checkout, with ``env`` over this environment."""
    return subprocess.run(
        [sys.executable, "-m", "reactor", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def missing(message: str) -> None:
    """Fail under CI (a missing server or reference is a broken CI machine), skip locally."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def missing_server(what: str) -> None:
    missing(f"{what} is not reachable; start it with scripts/ensure-services")


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except (RedisError, OSError):
        await client.aclose()
        missing_server(f"Redis at {REDIS_URL}")
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> str:
    """A fresh name part, so tests sharing a Redis never see each other's streams."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def shipped_rules() -> Path:
    return REPO / "rules"
