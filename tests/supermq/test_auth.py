"""Tokens: log in with identity/secret, refresh once on 401, then fail; a static token."""

from __future__ import annotations

import pytest

from reactor.errors import PermanentError
from reactor.supermq.client import SuperMQClient
from reactor.supermq.profile import ThingsProfile
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


async def test_wrong_secret_is_permanent_on_mainflux() -> None:
    # Mainflux answers 401; Magistrala v0.14.0 answers 500 (test_v014), which is retried.
    async with Simulator(profile="mainflux", validate=False) as sim:
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


def _jwt(iat: float, exp: float) -> str:
    import base64
    import json

    claims = base64.urlsafe_b64encode(json.dumps({"iat": iat, "exp": exp}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzUxMiJ9.{claims}.sig"


def test_a_jwt_is_renewed_ahead_of_its_expiry_on_the_issuers_clock() -> None:
    from reactor.supermq.tokens import token_times

    # 900 s lifetime, issued by a server whose clock is an hour ahead: renew 30 s before the end
    assert token_times(_jwt(1_000_000 + 3600, 1_000_900 + 3600), now=50.0) == (50.0 + 900 - 30, 950.0)
    assert token_times(_jwt(100, 106), now=0.0) == (6 - 0.6, 6.0)  # short: a tenth of the lifetime
    # A token from the settings, issued 800 s ago with 100 s left (by this machine's clock)
    assert token_times(_jwt(1_000_000, 1_000_900), now=5.0, wall=1_000_800) == (5.0 + 100 - 30, 105.0)
    assert token_times("not-a-jwt", now=0.0) is None
    assert token_times("a.bm90IGpzb24.c", now=0.0) is None


def test_mainflux_refusals_of_an_expired_token_are_recognised() -> None:
    import httpx

    from reactor.supermq.tokens import token_refused

    expired = b'{"error":"rpc error: code = Unauthenticated desc = failed to perform authentication"}'
    assert token_refused(httpx.Response(401))
    assert token_refused(httpx.Response(403, content=expired))
    assert token_refused(httpx.Response(500, content=expired))
    assert not token_refused(httpx.Response(500, content=b""))
    assert not token_refused(httpx.Response(403, content=b'{"error":"not yours"}'))


async def test_a_failed_early_renewal_keeps_the_token_that_still_serves() -> None:
    import time

    from reactor.settings import SuperMQSettings
    from reactor.supermq.http import build_http
    from reactor.supermq.tokens import TokenProvider
    from tests.servers import free_port

    now = time.time()
    token = _jwt(now - 880, now + 20)  # 20 s left of 900: due for renewal (30 s ahead)
    settings = SuperMQSettings(
        users_url=f"http://127.0.0.1:{free_port()}", token=token, identity="a@b.c", secret="x", timeout_s=1
    )
    http = build_http(settings)
    try:
        provider = TokenProvider(settings, http, ThingsProfile())
        assert await provider.token() == token  # nobody answers the login: the old token still serves
    finally:
        await http.aclose()


@pytest.mark.parametrize(
    ("version", "profile"),
    [("0.13.0", "mainflux"), ("v0.14.0", "things"), ("0.15.1", "things"), ("v0.19.1", "clients")],
)
def test_auto_picks_the_profile_from_the_version(version: str, profile: str) -> None:
    from reactor.supermq.profile import profile_for

    assert profile_for({"version": version, "description": "bootstrap service"})[0] == profile


@pytest.mark.parametrize("version", ["0.0.0", "0.12.1", "0.16.0", "v0.18.5", "v0.20.0", "", "dev"])
def test_auto_refuses_what_it_does_not_speak(version: str) -> None:
    from reactor.errors import ConfigError
    from reactor.supermq.profile import profile_for

    with pytest.raises(ConfigError, match=r'supermq\.profile = "auto"'):
        profile_for({"version": version})


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        # supermq health.go: Version defaults to "0.0.0" unless the build stamps it (-ldflags)
        ("0.0.0", "0.0.0 is no release"),
        ("0.16.0", "v0.16 logs in with identity/secret"),
        ("v0.18.5", "v0.17-v0.18 have no bootstrap service"),
        ("0.12.1", "Mainflux before 0.13"),
    ],
)
def test_auto_says_why_it_refuses(version: str, reason: str) -> None:
    from reactor.errors import ConfigError
    from reactor.supermq.profile import profile_for

    with pytest.raises(ConfigError, match=reason):
        profile_for({"version": version, "description": "bootstrap service"})
