"""Tokens: log in with identity/secret, refresh once on 401, then fail; a static token."""

from __future__ import annotations

import pytest

from reactor.errors import PermanentError
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator


async def test_login_then_refresh_on_401(sim: Simulator, client: SuperMQClient) -> None:
    await client.list_configs()
    sim.state.expire_access_tokens()
    await client.list_configs()
    calls = [(e.path, e.status) for e in sim.exchanges]
    assert calls == [
        ("/users/tokens/issue", 201),
        ("/things/configs", 200),
        ("/things/configs", 401),
        ("/users/tokens/refresh", 201),
        ("/things/configs", 200),
    ]


async def test_a_spent_refresh_token_logs_in_again(sim: Simulator, client: SuperMQClient) -> None:
    await client.list_configs()
    sim.state.expire_access_tokens()
    sim.state.refresh_tokens.clear()
    await client.list_configs()
    paths = [e.path for e in sim.exchanges]
    assert paths[-3:] == ["/users/tokens/refresh", "/users/tokens/issue", "/things/configs"]


async def test_a_second_401_fails_for_good(sim: Simulator, client: SuperMQClient) -> None:
    await client.list_configs()
    sim.faults.fail_next(2, 401, path_prefix="/things/configs")
    with pytest.raises(PermanentError) as info:
        await client.list_configs()
    assert info.value.status == 401
    assert [e.path for e in sim.exchanges].count("/things/configs") == 3  # once before, then 401, 401


async def test_wrong_secret_is_permanent(sim: Simulator) -> None:
    client = SuperMQClient(sim.settings(secret="wrong"))
    try:
        with pytest.raises(PermanentError, match="users token: HTTP 401"):
            await client.list_configs()
    finally:
        await client.aclose()


async def test_static_token_without_credentials(sim: Simulator) -> None:
    token = sim.state.issue_tokens()["access_token"]
    client = SuperMQClient(sim.settings(token=token, identity="", secret=""))
    try:
        assert (await client.list_configs()).total == 0
        sim.state.expire_access_tokens()
        with pytest.raises(PermanentError, match="no identity/secret is configured"):
            await client.list_configs()
    finally:
        await client.aclose()
