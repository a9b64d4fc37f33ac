"""The benchmark's own hands on a real Mainflux (never the reactor's client): an admin over bare
aiohttp that creates a fleet of devices, the bare onboarding script (the baseline), and the read
back of the platform's state that says whether every device was really onboarded.

A device here is what an operator onboards: a thing, its two channels (data and control) and its
bootstrap config, created inactive through the real bootstrap API (which publishes
``config.create`` on its own Redis event store). Onboarding it is what the shipped rule
``onboard-new-config`` does (rules/onboarding.toml): ``PUT /things/state/{config id}``
``{"state": 1}`` with the admin's bearer token; bootstrap then connects the thing to the
config's channels itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: The calls the bare script times, as the reactor's rule makes them.
LOGIN = "POST /users/tokens/issue"
ACTIVATE = "PUT /things/state/{id}"
#: Things saves a bulk with a PostgreSQL connection per entity: chunks below the server's
#: ``max_connections`` (100 by default, shared with whatever else runs).
BULK = 20
SETUP_ATTEMPTS = 5


class FleetError(Exception):
    """The platform refused a set-up call or a read back: the call and its answer."""


@dataclass
class Urls:
    users: str
    things: str
    bootstrap: str


@dataclass
class Timings:
    """Each call's latency (seconds), by endpoint, as the bare script saw it."""

    by_call: dict[str, list[float]] = field(default_factory=dict)

    def add(self, call: str, seconds: float) -> None:
        self.by_call.setdefault(call, []).append(seconds)

    def merge(self, other: Timings) -> None:
        for call, values in other.by_call.items():
            self.by_call.setdefault(call, []).extend(values)


async def login(session: aiohttp.ClientSession, urls: Urls, identity: str, secret: str) -> str:
    body = json.dumps({"identity": identity, "secret": secret}).encode()
    async with session.post(
        f"{urls.users}/users/tokens/issue", data=body, headers={"Content-Type": "application/json"}
    ) as answer:
        data = await answer.read()
        if answer.status != 201:
            raise FleetError(f"{LOGIN}: {answer.status} {data[:200]!r}")
    token: str = json.loads(data)["access_token"]
    return token


class Admin:
    """The admin's calls for set-up and read back (logged in again when a token has expired)."""

    def __init__(self, urls: Urls, identity: str, secret: str) -> None:
        self.urls = urls
        self._credentials = (identity, secret)
        self._session: aiohttp.ClientSession | None = None
        self._token = ""

    async def __aenter__(self) -> Admin:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        self._token = await login(self._session, self.urls, *self._credentials)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def ok(self, method: str, url: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The call's answer; an expired token is renewed, an overloaded platform's 5xx (its
        gRPC timeouts of 1 s on a busy machine) tried again: set-up and read back are untimed."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(SETUP_ATTEMPTS):
            status, raw = await self._send(method, url, data, params)
            if status == 401:  # expired (a deployment of short-lived tokens)
                assert self._session is not None
                self._token = await login(self._session, self.urls, *self._credentials)
            elif status == 409 and attempt and method == "POST":
                return None  # an earlier attempt was saved after all
            elif status < 500:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        if status >= 300:
            raise FleetError(f"{method} {url.split('/', 3)[-1]}: {status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    async def _send(
        self, method: str, url: str, data: bytes | None, params: dict[str, Any] | None
    ) -> tuple[int, bytes]:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        async with self._session.request(method, url, data=data, params=params, headers=headers) as answer:
            return answer.status, await answer.read()


@dataclass
class Fleet:
    """One run's devices: a tag in every name, the config ids (the things' ids)."""

    tag: str
    config_ids: list[str]
    channels: dict[str, set[str]]


async def _gather(calls: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    slots = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with slots:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def make_devices(admin: Admin, tag: str, devices: int) -> Fleet:
    """``devices`` things with two channels each (set-up, untimed)."""
    names = [f"ob-{tag}-{i}" for i in range(devices)]
    things: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []
    for start in range(0, devices, BULK):  # things saves a bulk on one connection per entity
        chunk = names[start : start + BULK]
        things += (await admin.ok("POST", f"{admin.urls.things}/things/bulk", [{"name": n} for n in chunk]))[
            "things"
        ]
        bodies = [{"name": f"{n}-{kind}"} for n in chunk for kind in ("data", "ctrl")]
        channels += (await admin.ok("POST", f"{admin.urls.things}/channels/bulk", bodies))["channels"]
    if len(things) != devices or len(channels) != 2 * devices:
        raise FleetError(f"bulk create: {len(things)} things, {len(channels)} channels for {devices} devices")
    fleet = Fleet(tag, [t["id"] for t in things], {})
    for i, thing in enumerate(things):
        fleet.channels[thing["id"]] = {channels[2 * i]["id"], channels[2 * i + 1]["id"]}
    return fleet


async def make_configs(admin: Admin, fleet: Fleet, concurrency: int = 16) -> None:
    """The devices' bootstrap configs, inactive, through the real bootstrap API: each one makes
    the service publish ``config.create`` on its event store (set-up, untimed)."""

    def config(i: int, thing_id: str) -> Callable[[], Awaitable[Any]]:
        body = {
            "thing_id": thing_id,
            "external_id": f"ext-{fleet.tag}-{i}",
            "external_key": f"key-{fleet.tag}-{i}",
            "channels": sorted(fleet.channels[thing_id]),
            "name": f"ob-{fleet.tag}-{i}",
            "content": '{"mode":"eco"}',
        }
        return lambda: admin.ok("POST", f"{admin.urls.bootstrap}/things/configs", body)

    await _gather((config(i, t) for i, t in enumerate(fleet.config_ids)), concurrency)


@dataclass
class Onboarded:
    """What the platform says of a fleet: configs active, things connected to exactly their channels."""

    active: int
    connected: int
    devices: int

    @property
    def complete(self) -> bool:
        return self.active == self.connected == self.devices


async def read_back(admin: Admin, fleet: Fleet, concurrency: int = 16) -> Onboarded:
    """The real state: the fleet's active configs (bootstrap's list, by name and state) and each
    thing's channels (things' own list), never the reactor's or the script's word for it."""
    active: set[str] = set()
    offset = 0
    while True:
        page = await admin.ok(
            "GET",
            f"{admin.urls.bootstrap}/things/configs",
            params={"state": 1, "name": f"ob-{fleet.tag}-", "limit": 100, "offset": offset},
        )
        configs = page.get("configs") or []
        active |= {c["thing_id"] for c in configs if c.get("state") == 1}
        offset += len(configs)
        if not configs or offset >= page.get("total", 0):
            break

    def channels(thing_id: str) -> Callable[[], Awaitable[Any]]:
        url = f"{admin.urls.things}/things/{thing_id}/channels"
        return lambda: admin.ok("GET", url, params={"limit": 100})

    pages = await _gather((channels(t) for t in fleet.config_ids), concurrency)
    connected = sum(
        1
        for thing_id, page in zip(fleet.config_ids, pages, strict=True)
        if {c["id"] for c in page.get("channels") or []} == fleet.channels[thing_id]
    )
    return Onboarded(len(active & set(fleet.config_ids)), connected, len(fleet.config_ids))


async def bare_onboard(
    urls: Urls, identity: str, secret: str, fleet: Fleet, concurrency: int
) -> tuple[float, Timings, int]:
    """The baseline: a bare aiohttp script making the rule's calls (a login, then one
    ``PUT /things/state/{id}`` ``{"state": 1}`` per device, bearer token) at ``concurrency``
    in flight, a 5xx sent again at once (the reactor retries it too, after a backoff). Its wall
    time from the login to the last answer, each call's latency, and how many were sent again."""
    timings = Timings()
    retried = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        token = await login(session, urls, identity, secret)
        timings.add(LOGIN, time.perf_counter() - started)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        slots = asyncio.Semaphore(concurrency)
        failed: list[str] = []

        async def activate(config_id: str) -> None:
            nonlocal retried
            async with slots:
                for attempt in range(SETUP_ATTEMPTS):
                    sent = time.perf_counter()
                    async with session.put(
                        f"{urls.bootstrap}/things/state/{config_id}", data=b'{"state":1}', headers=headers
                    ) as answer:
                        await answer.read()
                    timings.add(ACTIVATE, time.perf_counter() - sent)
                    if answer.status < 500:
                        break
                    retried += attempt < SETUP_ATTEMPTS - 1
                if answer.status != 200:
                    failed.append(f"{config_id}: {answer.status}")

        await asyncio.gather(*(activate(c) for c in fleet.config_ids))
        wall = time.perf_counter() - started
    if failed:
        raise FleetError(f"the bare script's {ACTIVATE} failed for {len(failed)}: {failed[:3]}")
    return wall, timings, retried
