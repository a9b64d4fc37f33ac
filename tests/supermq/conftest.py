"""A SuperMQ simulator per test; every exchange it saw must have passed the OpenAPI checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract, default_openapi_dir
from tests.conftest import SHARED


@pytest.fixture(scope="session")
def contract_dir() -> None:
    directory = default_openapi_dir()
    if directory is None or not directory.is_dir():
        pytest.fail(
            f"the OpenAPI specs are missing from {SHARED / 'openapi'}: the contract cannot be checked"
        )


@pytest.fixture
async def sim(contract_dir: None) -> AsyncIterator[Simulator]:
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
