"""A SuperMQ simulator per test; every exchange it saw must have passed the OpenAPI checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(contract=Contract())
    async with simulator:
        yield simulator
    assert simulator.contract is not None
    assert simulator.contract.violations == [], "an exchange broke SuperMQ's OpenAPI contract"


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[SuperMQClient]:
    supermq = SuperMQClient(sim.settings(timeout_s=2.0))
    yield supermq
    await supermq.aclose()
