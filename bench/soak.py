"""Soak: several reactor processes on one event store, SIGKILLed at random, the broker restarted once.

The harness the fault tests run small and ``python -m bench.soak`` large, on Redis Streams, NATS
JetStream or RabbitMQ. It starts a private server of the event store (file storage / append-only
with fsync; a private redis-server holds the state store of completed steps for every backend)
and the SuperMQ simulator in this process, publishes ``events`` ``config.update`` events for
``devices`` devices (each carrying its per-device sequence number), starts ``processes`` ``reactor
run`` processes and, once they act on the burst, kills one at random ``kills`` times (starting
a new one each time) and kills the broker (SIGKILL) and starts it again halfway, and waits until
every event is acted on or dead-lettered and nothing is left unsettled. The rule pushes
``{"seq": n}`` into the device's bootstrap content, so the simulator's effects show, per device,
every sequence number applied: the report counts lost, duplicated and out-of-order ones.
Per-device order across processes holds on Redis Streams and NATS JetStream (see README,
"Delivery contract"): on RabbitMQ with several processes out-of-order is reported, not a failure.

RabbitMQ carries what it is given: SuperMQ publishes its events transient (no delivery mode), and
a broker restart drops transient messages from a durable queue. The soak publishes them
persistent, with publisher confirms, to measure the reactor rather than SuperMQ's publisher.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import nats
import redis.asyncio as aioredis
from aio_pika.exceptions import AMQPException, ChannelInvalidStateError
from nats.errors import Error as NatsError
from redis.exceptions import RedisError

from bench.common import ROOT
from reactor.events.decode import Decoder
from reactor.events.protowire import wrap_payload
from reactor.settings import NatsSettings
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.supermq.simulator import Simulator
from tests.servers import PrivateNats, PrivateRabbit, PrivateRedis, _PrivateServer

RULE = """
[[rule]]
name = "push-seq"
on = ["config.update"]
[[rule.actions]]
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { seq = "{{ event.seq | int }}" }
"""
STREAM = "soak.bootstrap"
GROUP = "soak"
#: worker.concurrency of each process: at most this many actions are in flight when one is killed.
CONCURRENCY = 32


@dataclass
class SoakReport:
    events: int
    processes: int
    kills: int
    backend: str = "redis"
    seconds: float = 0.0
    applied: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unsettled_at_end: int = -1
    exit_codes: list[int] = field(default_factory=list)
    dead_reasons: list[str] = field(default_factory=list)
    anomalies: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Broker:
    """The event store under the soak: its private server, how events go in, what is left."""

    name = ""
    server: _PrivateServer
    #: What the client raises while the server is down or restarting (anything else is a bug here).
    down: tuple[type[Exception], ...] = (OSError, TimeoutError)

    async def prepare(self) -> None:
        """After the server started: what must exist before events are published."""

    def redis_keys(self) -> str:
        """Lines for the config's ``[redis]`` table (which also names the state store's Redis)."""
        return ""

    def section(self) -> str:
        """The config's table for this event store."""
        return ""

    async def publish(self, bodies: list[dict[str, str]]) -> None:
        raise NotImplementedError

    async def unsettled(self) -> int:
        """Entries not yet acknowledged (raises while the server is down)."""
        raise NotImplementedError

    async def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-letter records' fields."""
        raise NotImplementedError

    async def dead_count(self) -> int:
        return len(await self.dead_letters())

    async def close(self) -> None: ...


class RedisBroker(Broker):
    """Redis Streams; the same private redis-server holds the state store (restarted with it)."""

    name = "redis"
    down = (RedisError, OSError)

    def __init__(self, server: PrivateRedis) -> None:
        self.server = server
        self.client = aioredis.Redis.from_url(server.url, decode_responses=True)

    def redis_keys(self) -> str:
        return f'streams = ["{STREAM}"]\nstart_id = "0"'

    async def publish(self, bodies: list[dict[str, str]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for body in bodies:
                fields: dict[Any, Any] = dict(body)
                pipe.xadd(STREAM, fields)
            await pipe.execute()

    async def unsettled(self) -> int:
        return int((await self.client.xpending(STREAM, GROUP))["pending"])

    async def dead_letters(self) -> list[dict[str, Any]]:
        entries: Any = await self.client.xrange("reactor.dlq")
        return [dict(f) for _, f in entries]

    async def dead_count(self) -> int:
        return int(await self.client.xlen("reactor.dlq"))

    async def close(self) -> None:
        await self.client.aclose()


class NatsBroker(Broker):
    """NATS JetStream: SuperMQ's stream ``events`` (file storage), the durable consumer ``reactor``."""

    name = "nats"
    down = (NatsError, OSError, TimeoutError)

    def __init__(self, server: PrivateNats) -> None:
        self.server = server
        self.settings = NatsSettings(url=server.url)
        self.nc: Any = None

    async def prepare(self) -> None:
        seed = NatsJetStreamSource(self.settings)
        await seed.start()  # the streams and the durable consumer, as the reactor makes them
        await seed.close()

        async def quiet(exc: Exception) -> None:  # the restart: reconnecting is expected
            return None

        self.nc = await nats.connect(
            self.server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet
        )
        self.js = self.nc.jetstream()

    def section(self) -> str:
        # ack_wait: a killed process's messages come back after 2 s (30 s by default).
        return f'[nats]\nurl = "{self.server.url}"\nack_wait_s = 2.0'

    async def publish(self, bodies: list[dict[str, str]]) -> None:
        for chunk in _chunks(bodies, 200):
            await asyncio.gather(
                *(self.js.publish(f"events.{STREAM}", wrap_payload(json.dumps(b).encode())) for b in chunk)
            )

    async def unsettled(self) -> int:
        info = await self.js.consumer_info(self.settings.stream, self.settings.durable, timeout=1)
        return int(info.num_pending) + int(info.num_ack_pending)

    async def dead_letters(self) -> list[dict[str, Any]]:
        state = (await self.js.stream_info(self.settings.dlq_stream)).state
        records = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            msg = await self.js.get_msg(self.settings.dlq_stream, seq)
            records.append(json.loads(msg.data or b"{}"))
        return records

    async def dead_count(self) -> int:
        return int((await self.js.stream_info(self.settings.dlq_stream)).state.messages)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


class RabbitBroker(Broker):
    """RabbitMQ: SuperMQ's topic exchange ``events``, the reactor's durable queue ``reactor``.

    Each look opens a connection of its own: a robust one, restored after the broker's restart,
    went on answering a passive declare with the count from before it."""

    name = "rabbitmq"
    down = (AMQPException, ChannelInvalidStateError, OSError, TimeoutError)

    def __init__(self, server: PrivateRabbit) -> None:
        self.server = server

    async def prepare(self) -> None:
        async with await aio_pika.connect(self.server.url) as conn:
            channel = await conn.channel()
            exchange = await channel.declare_exchange("events", aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue("reactor", durable=True)  # before publishing: routed
            await queue.bind(exchange, routing_key="events.#")
            await channel.declare_queue("reactor.dlq", durable=True)

    def section(self) -> str:
        return f'[rabbitmq]\nurl = "{self.server.url}"'

    async def publish(self, bodies: list[dict[str, str]]) -> None:
        async with await aio_pika.connect(self.server.url) as conn:
            channel = await conn.channel()  # publisher confirms: a publish returns once stored
            exchange = await channel.get_exchange("events")
            for chunk in _chunks(bodies, 200):
                await asyncio.gather(*(exchange.publish(_persistent(b), f"events.{STREAM}") for b in chunk))

    async def _count(self, name: str) -> int:
        async with await aio_pika.connect(self.server.url) as conn:
            queue = await (await conn.channel()).declare_queue(name, passive=True)
            return int(queue.declaration_result.message_count or 0)

    async def unsettled(self) -> int:
        """Ready messages: unacked ones are not counted while held, and are ready again once
        their consumer is gone (read at the end, after every process stopped)."""
        return await self._count("reactor")

    async def dead_letters(self) -> list[dict[str, Any]]:
        records = []
        async with await aio_pika.connect(self.server.url) as conn:
            queue = await (await conn.channel()).declare_queue("reactor.dlq", durable=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                records.append(json.loads(message.body))  # left unacked: back in the queue on close
        return records

    async def dead_count(self) -> int:
        return await self._count("reactor.dlq")


def _persistent(body: dict[str, str]) -> aio_pika.Message:
    """As SuperMQ publishes (protobuf-wrapped JSON), but persistent (see the module's docstring)."""
    return aio_pika.Message(
        wrap_payload(json.dumps(body).encode()),
        content_type="application/octet-stream",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _chunks(items: list[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _broker(backend: str, base: Path, redis_server: PrivateRedis) -> Broker:
    if backend == "redis":
        return RedisBroker(redis_server)
    if backend == "nats":
        return NatsBroker(PrivateNats(base / "nats"))
    if backend == "rabbitmq":
        return RabbitBroker(PrivateRabbit(base / "rabbitmq"))
    raise ValueError(f"unknown soak backend {backend!r}")


def _config(path: Path, broker: Broker, redis_url: str, sim: Simulator, rules: Path) -> Path:
    urls = "\n".join(f'{s}_url = "{sim.url(s)}"' for s in ("users", "things", "bootstrap", "certs", "http"))
    path.write_text(f"""source = "{broker.name}"

[redis]
url = "{redis_url}"
group = "{GROUP}"
batch_size = 100
block_ms = 100
reclaim_idle_ms = 3000
reclaim_interval_s = 0.3
{broker.redis_keys()}

{broker.section()}
[events]
families = ["soak"]

[rules]
dir = "{rules}"
reload_interval_s = 0

[worker]
concurrency = {CONCURRENCY}
grace_s = 5.0

[state]
backend = "redis"

[supermq]
{urls}
identity = "{sim.state.identity}"
secret = "{sim.state.secret}"

[ops]
listen = ""

[log]
level = "WARNING"
""")
    return path


#: prctl(2), looked up here: the child, between fork and exec, only calls it (no loader lock).
_PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the harness dies (no orphan keeps consuming)."""
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def _spawn(config: Path, logs: Path, n: int) -> asyncio.subprocess.Process:
    with (logs / f"reactor-{n}.log").open("wb") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reactor",
            "--config",
            str(config),
            "run",
            cwd=ROOT,
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )


def _applied(sim: Simulator) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for effect in sim.state.effects:
        if effect.kind == "config.update":
            out.setdefault(effect.device, []).append(int(json.loads(effect.detail["content"])["seq"]))
    return out


def _events(sim: Simulator, events: int, devices: int) -> tuple[list[dict[str, str]], dict[str, list[int]]]:
    things = [sim.state.add_thing(f"d{i}") for i in range(devices)]
    for thing in things:
        sim.state.add_config(thing, f"ext-{thing.id}", "key", [], "{}")
    expected: dict[str, list[int]] = {t.id: [] for t in things}
    bodies = []
    for i in range(events):
        thing = things[i % devices]
        seq = len(expected[thing.id]) + 1
        expected[thing.id].append(seq)
        bodies.append(
            {
                "operation": "config.update",
                "thing_id": thing.id,
                "seq": str(seq),
                "occurred_at": str(time.time_ns()),
            }
        )
    return bodies, expected


async def _done(broker: Broker, sim: Simulator, events: int) -> bool:
    try:
        dead = await broker.dead_count()
        unsettled = await broker.unsettled()
    except broker.down:  # the server may be restarting: not done yet
        return False
    applied = sum(len(set(v)) for v in _applied(sim).values())
    return applied + dead >= events and unsettled == 0


async def run_soak(
    events: int,
    devices: int,
    processes: int,
    kills: int,
    *,
    backend: str = "redis",
    timeout_s: float = 300,
    workdir: Path | None = None,
    seed: int = 7,
    restart_broker: bool = True,
    kill_gap_s: tuple[float, float] = (0.2, 0.8),
) -> SoakReport:
    """Run the soak; the report says what was lost, duplicated or out of order."""
    rng = random.Random(seed)  # kill timing, not secrets
    base = workdir or Path(tempfile.mkdtemp(prefix="reactor-soak-"))
    rules = base / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "soak.toml").write_text(RULE)
    redis_server = PrivateRedis(base / "redis")
    broker = _broker(backend, base, redis_server)
    report = SoakReport(events, processes, kills, backend)
    redis_server.start()
    try:
        if broker.server is not redis_server:
            await asyncio.to_thread(broker.server.start)
        await broker.prepare()
        async with Simulator(validate=False) as sim:
            bodies, expected = _events(sim, events, devices)
            await broker.publish(bodies)
            config = _config(base / "reactor.toml", broker, redis_server.url, sim, rules)
            await _supervise(report, broker, sim, config, base, rng, restart_broker, kill_gap_s, timeout_s)
            records = await broker.dead_letters()
            report.dead_reasons = [f"{f.get('reason')}: {f.get('error')}" for f in records]
            _score(report, expected, _applied(sim), {_dead_key(f) for f in records})
    finally:
        await broker.close()
        broker.server.stop()
        redis_server.stop()
    return report


async def _supervise(
    report: SoakReport,
    broker: Broker,
    sim: Simulator,
    config: Path,
    base: Path,
    rng: random.Random,
    restart_broker: bool,
    kill_gap_s: tuple[float, float],
    timeout_s: float,
) -> None:
    """The processes, the chaos, the wait until done; then SIGTERM and what is left unsettled."""
    procs = [await _spawn(config, base, n) for n in range(report.processes)]
    started = time.monotonic()

    def done() -> Awaitable[bool]:
        return _done(broker, sim, report.events)

    try:
        async with asyncio.timeout(timeout_s):  # the chaos starts mid-burst, not before the first event
            while len(sim.state.effects) < report.events // 20:
                await asyncio.sleep(0.05)
        server = broker.server if restart_broker else None
        await _chaos(procs, config, base, server, report.kills, rng, done, kill_gap_s)
        async with asyncio.timeout(timeout_s):
            while not await done():
                await asyncio.sleep(0.1)
        report.seconds = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        report.exit_codes = [await proc.wait() for proc in procs]
    report.unsettled_at_end = await broker.unsettled()


async def _chaos(
    procs: list[asyncio.subprocess.Process],
    config: Path,
    logs: Path,
    server: _PrivateServer | None,
    kills: int,
    rng: random.Random,
    done: Callable[[], Awaitable[bool]],
    gap_s: tuple[float, float],
) -> None:
    """Kill a process at random ``kills`` times (a new one takes its place); restart the broker halfway."""
    spawned = len(procs)
    for n in range(kills):
        await asyncio.sleep(rng.uniform(*gap_s))
        if await done():
            return
        victim = rng.randrange(len(procs))
        procs[victim].kill()
        await procs[victim].wait()
        procs[victim] = await _spawn(config, logs, spawned)
        spawned += 1
        if server is not None and n == kills // 2:
            await asyncio.to_thread(server.restart, 0.5)


def _dead_key(record: dict[str, Any]) -> str:
    """``device/seq`` of a dead-letter record's event (its raw payload: fields, or a message body)."""
    try:
        raw = json.loads(record.get("event") or "{}")
        payload: Any = raw
        if "body_b64" in raw:
            payload = base64.b64decode(raw["body_b64"])
        elif "body" in raw:
            payload = str(raw["body"]).encode()
        event = Decoder(["soak"]).decode(payload, source="soak", stream=STREAM, entry_id="0")
        return f"{event.thing_id}/{event.get('seq')}"
    except Exception as exc:  # counted as dead, matched to no event
        return f"?/{type(exc).__name__}"


def _score(
    report: SoakReport, expected: dict[str, list[int]], applied: dict[str, list[int]], dead: set[str]
) -> None:
    report.dead_lettered = len(dead)
    for device, seqs in expected.items():
        got = applied.get(device, [])
        report.applied += len(got)
        report.duplicated += len(got) - len(set(got))
        report.out_of_order += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        if got != sorted(set(got)):
            report.anomalies[device] = got
        report.lost += sum(1 for s in seqs if s not in set(got) and f"{device}/{s}" not in dead)


def main() -> None:
    """``python -m bench.soak [EVENTS] [redis|nats|rabbitmq]``: 3 processes, 10 kills spread over
    the run, one broker restart."""
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    backend = sys.argv[2] if len(sys.argv) > 2 else "redis"
    report = asyncio.run(
        run_soak(
            size,
            devices=500,
            processes=3,
            kills=10,
            backend=backend,
            timeout_s=3600,
            kill_gap_s=(3.0, 12.0),
        )
    )
    print(
        f"soak ({report.backend}): {report.events:,} events, {report.processes} processes, "
        f"{report.kills} kills, "
        f"1 broker restart: {report.rate:,.0f} events/s; lost {report.lost}, duplicated {report.duplicated}, "
        f"out of order {report.out_of_order}, dead-lettered {report.dead_lettered}, "
        f"unsettled at the end {report.unsettled_at_end}"
    )


if __name__ == "__main__":
    main()
