"""An ambiguous failure (the request may have reached the server: no answer in time, the
connection lost after sending) is not re-sent by an action that cannot tell a repeat
(``message.publish``, ``http.request`` POST/PATCH, ``certs.issue``): the event is dead-lettered
with the reason ``ambiguous``. A failure before the request left (connection refused) is retried
by every action, and an action that may repeat retries an ambiguous failure too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from reactor.actions.certs import certs_actions
from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.base import Delivery
from reactor.sources.memory import MemorySource
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator

RETRY = "retry = { attempts = 6, initial_s = 0.1, max_wait_s = 0.3, max_total_s = 10, jitter_s = 0 }"
_RETRY = RETRY.replace("{", "{{").replace("}", "}}")  # for str.format

PUBLISH = f"""
[[rule]]
name = "notify"
on = ["config.create"]
{_RETRY}
[[rule.actions]]
id = "tell"
type = "message.publish"
channel_id = "{{channel}}"
thing_key = "{{key}}"
payload = {{{{ hello = "world" }}}}
"""

HTTP = f"""
[[rule]]
name = "call"
on = ["config.create"]
{_RETRY}
[[rule.actions]]
id = "call"
type = "http.request"
method = "{{method}}"
url = "{{url}}"
json_body = {{{{ hello = "world" }}}}
"""


def _publish_path(channel: str) -> str:
    return f"/channels/{channel}/messages"


async def _process(tmp_path: Path, sim: Simulator, rules: str) -> Outcome:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / "r.toml").write_text(rules)
    settings = load_settings(None, rules={"dir": directory, "reload_interval_s": 0}, source="memory")
    supermq = sim.settings(timeout_s=0.3, http_allowlist=["127.0.0.1"])
    settings = settings.model_copy(update={"supermq": supermq})
    reactor = Reactor.build(settings, MemorySource(), get_logger("test"))
    try:
        event = {"operation": "config.create", "thing_id": "t1"}
        (outcome,) = await reactor.worker.process([Delivery("supermq.bootstrap", "1-0", event)])
    finally:
        await reactor.client.aclose()
    return outcome


def _device(sim: Simulator) -> tuple[str, str]:
    thing, channel = sim.state.add_thing("d"), sim.state.add_channel("c")
    sim.state.connect(thing.id, channel.id)
    return thing.key, channel.id


async def _requests_to(sim: Simulator, path: str, settle_s: float) -> int:
    await asyncio.sleep(settle_s)  # a hung request is journaled when its hang ends
    return sum(1 for e in sim.exchanges if e.path == path)


async def test_a_publish_without_an_answer_is_not_sent_again(tmp_path: Path, sim: Simulator) -> None:
    key, channel = _device(sim)
    sim.faults.hang_next(1, 0.6, path_prefix=_publish_path(channel))
    outcome = await _process(tmp_path, sim, PUBLISH.format(channel=channel, key=key))
    assert await _requests_to(sim, _publish_path(channel), 0.6) == 1
    dead = outcome.dead_letter
    assert dead is not None
    assert (dead.reason, dead.rule, dead.action, dead.attempts) == (
        "ambiguous",
        "notify",
        "tell (message.publish)",
        1,
    )
    assert "may have reached" in dead.error
    assert sim.state.messages == []


async def test_a_publish_refused_before_sending_is_retried(tmp_path: Path, sim: Simulator) -> None:
    key, channel = _device(sim)
    await sim.stop()
    restart = asyncio.create_task(_start_later(sim, 0.5))
    outcome = await _process(tmp_path, sim, PUBLISH.format(channel=channel, key=key))
    await restart
    assert outcome.dead_letter is None
    (step,) = outcome.rules[0].steps
    assert step.ok
    assert step.attempts > 1
    assert len(sim.state.messages) == 1


async def _start_later(sim: Simulator, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await sim.start()


@contextlib.asynccontextmanager
async def _hanging_once(seconds: float) -> AsyncIterator[tuple[str, list[str]]]:
    """A server whose first request gets no answer for ``seconds``; its URL and the methods seen."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.method)
        if len(seen) == 1:
            await asyncio.sleep(seconds)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("method", "sent", "reason"), [("POST", 1, "ambiguous"), ("PUT", 2, None)])
async def test_http_request_repeats_only_idempotent_methods(
    tmp_path: Path, sim: Simulator, method: str, sent: int, reason: str | None
) -> None:
    async with _hanging_once(0.6) as (url, seen):
        outcome = await _process(tmp_path, sim, HTTP.format(method=method, url=url))
        assert (outcome.dead_letter.reason if outcome.dead_letter else None) == reason
        assert seen == [method] * sent


async def test_an_idempotent_action_retries_a_timeout(tmp_path: Path, sim: Simulator) -> None:
    thing = sim.state.add_thing("d")
    sim.state.add_config(thing, "e", "k", [], "{}")
    rules = f"""
[[rule]]
name = "activate"
on = ["config.create"]
{RETRY}
[[rule.actions]]
type = "bootstrap.change_state"
config_id = "{thing.id}"
state = 1
"""
    path = f"/things/state/{thing.id}"
    sim.faults.hang_next(1, 0.6, path_prefix=path)
    outcome = await _process(tmp_path, sim, rules)
    assert outcome.dead_letter is None
    assert sim.state.configs[thing.id].state == 1


def test_actions_declare_whether_a_repeat_is_harmless(sim: Simulator) -> None:
    client = SuperMQClient(sim.settings())
    by_name: dict[str, Any] = {a.type_name: a for a in certs_actions(client, "1h")}
    assert by_name["certs.issue"].repeatable is False
    assert by_name["certs.revoke"].repeatable is True


async def test_a_login_without_an_answer_is_not_ambiguous_for_the_call_after_it(
    tmp_path: Path, sim: Simulator
) -> None:
    thing = sim.state.add_thing("d")
    rules = f"""
[[rule]]
name = "issue"
on = ["config.create"]
{RETRY}
[[rule.actions]]
type = "certs.issue"
thing_id = "{thing.id}"
ttl = "1h"
"""
    sim.faults.hang_next(1, 0.6, path_prefix="/users")  # the login, not the certs call
    outcome = await _process(tmp_path, sim, rules)
    assert outcome.dead_letter is None
    assert len(sim.state.certs) == 1


@contextlib.asynccontextmanager
async def _resetting_once() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads the first request whole and closes the connection without answering."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        seen.append(head.split(b" ", 1)[0])
        if len(seen) > 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", seen
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("method", "sent", "reason"), [("POST", 1, "ambiguous"), ("PUT", 2, None)])
async def test_a_connection_closed_after_sending_is_ambiguous(
    tmp_path: Path, sim: Simulator, method: str, sent: int, reason: str | None
) -> None:
    async with _resetting_once() as (url, seen):
        outcome = await _process(tmp_path, sim, HTTP.format(method=method, url=url))
        assert (outcome.dead_letter.reason if outcome.dead_letter else None) == reason
        assert seen == [method.encode()] * sent
