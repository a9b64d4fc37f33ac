"""Poison is the entry whose processing kills the process, not every entry in flight then: a real
``reactor run`` SIGKILLed each time SuperMQ (the simulator) is asked about one device, with the
other devices' events in flight at every kill. Past ``max_deliveries`` each entry runs alone,
marked in the state store: the killer dies in its run alone and is dead-lettered as poison on
its next delivery; the innocent ones are acted on (they were dead-lettered as poison with it)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from reactor.supermq.simulator import Simulator
from tests.delivery.helpers import spawn_daemon
from tests.servers import PrivateRedis

STREAM = "pk.bootstrap"
DLQ = "pk.dlq"
RULE = """
[[rule]]
name = "push"
on = ["config.update"]
[[rule.actions]]
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { seq = "{{ event.seq | int }}" }
"""


def _config(path: Path, redis_url: str, sim: Simulator) -> Path:
    rules = path.parent / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    urls = "\n".join(f'{s}_url = "{sim.url(s)}"' for s in ("users", "things", "bootstrap", "certs", "http"))
    path.write_text(f"""source = "redis"
[redis]
url = "{redis_url}"
streams = ["{STREAM}"]
group = "g"
consumer = "c1"
start_id = "0"
block_ms = 50
dlq_stream = "{DLQ}"
[events]
families = ["pk"]
[rules]
dir = "{rules}"
reload_interval_s = 0
[worker]
max_deliveries = 2
concurrency = 64
grace_s = 2.0
[state]
path = "{path.parent / "state.sqlite3"}"
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


async def test_only_the_entry_whose_processing_kills_the_process_is_poison(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis")
    server.persistent = False
    server.start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        async with Simulator(validate=False) as sim:
            sim.faults.latency_ms = 120  # every call takes a while: the other events are in flight
            things = [sim.state.add_thing(f"d{n}") for n in range(30)]
            killer = sim.state.add_thing("killer")
            for thing in [killer, *things]:
                sim.state.add_config(thing, f"ext-{thing.id}", "key", [], "{}")
            for thing in [killer, *things]:  # the killer first: read first, run alone first
                body = {"operation": "config.update", "thing_id": thing.id, "seq": "1", "occurred_at": "1"}
                await client.xadd(STREAM, body)  # type: ignore[arg-type]
            config = _config(tmp_path / "reactor.toml", server.url, sim)
            log = tmp_path / "reactor.log"

            def asked_about_killer() -> int:
                return sum(1 for e in list(sim.exchanges) if killer.id in e.path)

            kills = 0
            for _ in range(6):  # each run: killed as soon as SuperMQ is asked about the killer
                before = asked_about_killer()
                proc = await spawn_daemon(config, log)
                deadline = time.monotonic() + 20
                while asked_about_killer() == before and not await client.xlen(DLQ):
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    assert proc.returncode is None, log.read_text()[-3000:]
                    await asyncio.sleep(0.005)
                if asked_about_killer() == before:  # set aside before it ran again
                    break
                proc.kill()
                await proc.wait()
                kills += 1
            async with asyncio.timeout(30):  # the rest: each acted on or dead-lettered, nothing pending
                while (await client.xpending(STREAM, "g"))["pending"] or len(
                    {e.device for e in sim.state.effects}
                ) + await client.xlen(DLQ) < len(things) + 1:
                    await asyncio.sleep(0.05)
            proc.terminate()
            assert await proc.wait() == 0
            entries: Any = await client.xrange(DLQ)
            records: list[dict[str, str]] = [dict(fields) for _, fields in entries]
            applied = {e.device for e in sim.state.effects if e.kind == "config.update"}
    finally:
        await client.aclose()
        server.stop()
    assert kills == 3, log.read_text()[-3000:]  # deliveries 1 and 2 with the others, 3 alone
    assert [(json.loads(r["event"])["thing_id"], r["reason"]) for r in records] == [(killer.id, "poison")]
    assert "died while it ran alone" in records[0]["error"]
    assert applied == {t.id for t in things}  # every innocent one acted on, none dead-lettered
    assert log.read_text().count("worker.run_alone") >= len(things)  # they were past the limit too
