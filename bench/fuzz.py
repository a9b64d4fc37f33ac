"""Fuzz: seeded hostile and ordinary entries XADDed to a real Redis against a live daemon.

``python -m bench.fuzz [--seed N] [--mixed N]`` starts a private redis-server and ``reactor run``
(its own process, its own /metrics port, SuperMQ pointed at a closed port: the rules only log,
match and fail), then runs phases:

- ``poison``: entries delivered ``max_deliveries`` times already (a process that died holding
  them, restarted that often) before the daemon starts: half of them also ran alone once (the
  mark in the state store: the process died while it ran them), and are set aside as poison;
  the other half were merely in flight at those deaths, and are acted on;
- ``operations``: 2,000 distinct 64 KiB operation names; ``labels``: 2,000 distinct 200-character
  ones (accepted, counted as the metric label ``other``);
- ``certs``: 300 distinct 1 MiB ``client_cert`` values, and 300 of 60 KiB that are decoded and
  go through ``certinfo`` in a rule condition;
- ``mixed``: ``--mixed`` entries drawn from every generator below, each crasher of issue 14
  included (a non-UTF-8 byte in a value or a name, a binary protobuf blob in ``data``, JSON nested
  33 / 500 / 10,000 / 100,000 deep in ``data``, ``metadata`` or ``content``, a lone surrogate in an
  id that a failing rule names in its error), and random bytes, mutated JSON, bad types, huge
  numbers, names and ids over the limits, oversized entries, thousands of fields.

After every phase it waits until each stream has nothing pending and nothing undelivered, reads
the dead-letter stream, checks every entry against what its generator expects (acked, dead-
lettered, or either), and samples the daemon's RSS and /metrics. Then the streams and the
dead-letter stream are emptied (Redis memory) and the next phase runs. A daemon that exits is a
death: it is counted and started again. ``tests/delivery/test_fuzz.py`` runs it small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import ROOT, machine
from reactor.delivery.executor import begin_trial
from reactor.delivery.state import SQLiteStateStore
from reactor.sources.base import delivery_key
from tests.servers import PrivateRedis, free_port

STREAMS = ("fz.bootstrap", "fz.things")
DLQ = "fz.dlq"
GROUP = "fuzz"
CONSUMER = "fuzz-1"
MAX_DELIVERIES = 3
RULES = """
[[rule]]
name = "created"
on = ["config.create"]
when = ["event.thing_id is defined"]
[[rule.actions]]
type = "log"
message = "config {{ event.thing_id }} {{ event.name | default('') }}"

[[rule]]
name = "cert-facts"
on = ["thing.bootstrap"]
when = ["event.client_cert is defined", "(event.client_cert | certinfo).days_left is none"]
[[rule.actions]]
type = "noop"

[[rule]]
name = "fails-naming-the-id"
on = ["config.update"]
when = ["event.fail is defined"]
retry = { attempts = 1 }
[[rule.actions]]
type = "log"
message = "{{ event.metadata[event.thing_id] }}"

[[rule]]
name = "everything"
on = ["*"]
[[rule.actions]]
type = "noop"
"""

Fields = dict[Any, Any]
#: (stream, fields, expectation): "acked" (no dead-letter record), "dead", or "either".
Entry = tuple[str, Fields, str]


# ---- generators -------------------------------------------------------------------------------


def _id(r: random.Random) -> str:
    return "".join(r.choices(string.hexdigits.lower(), k=32))


def _config(r: random.Random, operation: str = "config.create", **extra: Any) -> dict[str, Any]:
    base = {"operation": operation, "thing_id": _id(r), "name": f"dev-{r.randrange(10**6)}", "state": "0"}
    return {**base, "channels": "[c1,c2]", "metadata": "{}", "occurred_at": str(time.time_ns()), **extra}


def _data(fields: dict[str, Any]) -> Fields:
    return {"data": json.dumps(fields)}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def gen_valid(r: random.Random) -> Entry:
    return STREAMS[0], _config(r), "acked"


def gen_valid_data(r: random.Random) -> Entry:
    return STREAMS[0], _data({**_config(r), "metadata": {"a": [1, {"b": None}]}}), "acked"


def gen_rule_fails(r: random.Random) -> Entry:
    return STREAMS[0], _data(_config(r, "config.update", fail=True, metadata={})), "dead"


def gen_non_utf8_value(r: random.Random) -> Entry:
    fields: Fields = _config(r)
    name = r.choice(["thing_id", "name", "operation", "channels", "metadata"])
    value = str(fields[name]).encode()
    at = r.randrange(len(value) + 1)
    fields[name] = value[:at] + bytes([r.choice([0x80, 0xC0, 0xFE, 0xFF])]) + value[at:]
    return STREAMS[0], fields, "dead"


def gen_non_utf8_name(r: random.Random) -> Entry:
    fields: Fields = _config(r)
    fields[b"x\xff" + bytes([r.randrange(256)])] = "v"
    return STREAMS[0], fields, "dead"


def gen_proto_blob(r: random.Random) -> Entry:
    blob = bytes([0x0A, r.randrange(2, 40)]) + bytes([0xFF]) + r.randbytes(r.randrange(8, 200))
    return STREAMS[r.randrange(2)], {"data": blob}, "dead"


def gen_random_bytes(r: random.Random) -> Entry:
    fields = {
        r.randbytes(r.randrange(1, 12)): r.randbytes(r.randrange(0, 300)) for _ in range(r.randrange(1, 6))
    }
    return STREAMS[r.randrange(2)], fields, "either"


def gen_deep(r: random.Random) -> Entry:
    depth = r.choice([33, 500, 10_000, 100_000])
    where = r.choice(["data", "metadata", "content"])
    if where == "data":
        text = json.dumps({**_config(r, "config.update", fail=True), "metadata": {}})
        return STREAMS[0], {"data": text[:-1] + f', "x": {_nested(depth)}}}'}, "dead"
    return STREAMS[0], _config(r, **{where: _nested(depth)}), "dead"


def gen_surrogate(r: random.Random) -> Entry:
    operation, expect = r.choice([("config.update", "dead"), ("config.create", "acked")])
    text = json.dumps(_config(r, operation, fail=True, metadata={}))
    return STREAMS[0], {"data": text.replace('"thing_id": "', '"thing_id": "\\ud800', 1)}, expect


def gen_long_names(r: random.Random) -> Entry:
    fields: Fields = _config(r)
    choice = r.randrange(3)
    if choice == 0:
        fields["operation"] = "config." + "x" * r.randrange(250, 70_000)
    elif choice == 1:
        fields["k" * r.randrange(257, 5_000)] = "v"
    else:
        fields["thing_id"] = "t" * r.randrange(257, 50_000)
    return STREAMS[0], fields, "dead"


def gen_bad_values(r: random.Random) -> Entry:
    name, value = r.choice(
        [
            ("occurred_at", "9" * 5_000),
            ("occurred_at", "1e400"),
            ("state", "not a number"),
            ("success", "maybe"),
            ("metadata", "not json"),
            ("metadata", "W10="),  # base64 of [] (not an object)
        ]
    )
    return STREAMS[0], _config(r, **{name: value}), "dead"


def gen_mutated_json(r: random.Random) -> Entry:
    text = bytearray(json.dumps(_config(r)).encode())
    for _ in range(r.randrange(1, 6)):
        text[r.randrange(len(text))] = r.randrange(256)
    if r.random() < 0.3:
        text = text[: r.randrange(len(text))]
    return STREAMS[r.randrange(2)], {"data": bytes(text)}, "either"


def gen_odd_data(r: random.Random) -> Entry:
    value = r.choice(["", "null", "[]", "{}", '"x"', "1", '{"operation": ""}', '{"operation": 5}'])
    return STREAMS[r.randrange(2)], {"data": value}, "dead"


def gen_many_fields(r: random.Random) -> Entry:
    return (
        STREAMS[0],
        {**_config(r), **{f"f{n}": "v" * r.randrange(10) for n in range(r.randrange(500, 3_000))}},
        "acked",
    )


def gen_oversized(r: random.Random) -> Entry:
    return STREAMS[0], _config(r, content="x" * r.randrange(1_048_600, 1_300_000)), "dead"


def gen_odd_text(r: random.Random) -> Entry:
    weird = r.choice(["\x00", "\n\r", "*?[]", "{{ 7*7 }}", "\u202e", "\U0001f600", "%s%n", "${jndi:x}"])
    return (
        STREAMS[1],
        {"operation": f"thing.create{weird}", "id": _id(r) + weird, "name": weird * 3},
        "either",
    )


MIXED: list[Callable[[random.Random], Entry]] = [
    gen_valid,
    gen_valid_data,
    gen_rule_fails,
    gen_non_utf8_value,
    gen_non_utf8_name,
    gen_proto_blob,
    gen_random_bytes,
    gen_deep,
    gen_surrogate,
    gen_long_names,
    gen_bad_values,
    gen_mutated_json,
    gen_odd_data,
    gen_many_fields,
    gen_oversized,
    gen_odd_text,
]


def operations_phase(r: random.Random, count: int) -> Iterator[Entry]:
    for n in range(count):
        yield STREAMS[0], _config(r, operation=f"config.{n:08d}" + "o" * 65_536), "dead"


def labels_phase(r: random.Random, count: int) -> Iterator[Entry]:
    for n in range(count):
        yield STREAMS[0], _config(r, operation=f"config.{n:08d}" + "l" * 185), "acked"


def certs_phase(r: random.Random, count: int) -> Iterator[Entry]:
    for n in range(count):
        body = f"{n:08d}" + "".join(r.choices("ABCDEFGH", k=64)) * ((1 << 20) // 64)
        yield STREAMS[0], _thing_bootstrap(r, body), "dead"  # over max_entry_bytes: refused unread
    for n in range(count):
        body = f"{n:08d}" + "".join(r.choices("ABCDEFGH", k=64)) * 960  # 60 KiB: decoded, through certinfo
        yield STREAMS[0], _thing_bootstrap(r, body), "acked"


def _thing_bootstrap(r: random.Random, body: str) -> Fields:
    cert = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"
    return {
        "operation": "thing.bootstrap",
        "thing_id": _id(r),
        "external_id": _id(r),
        "success": "1",
        "client_cert": cert,
    }


def mixed_phase(r: random.Random, count: int) -> Iterator[Entry]:
    for _ in range(count):
        yield r.choice(MIXED)(r)


# ---- the run ----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    entries: int = 0
    acked: int = 0
    dead_lettered: int = 0
    unaccounted: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    series: int = 0
    metrics_bytes: int = 0


@dataclass
class FuzzReport:
    seed: int
    phases: list[Phase] = field(default_factory=list)
    deaths: int = 0
    pending_at_end: int = 0
    start_rss_mib: float = 0.0
    tracebacks: int = 0
    exit_code: int | None = None

    @property
    def entries(self) -> int:
        return sum(p.entries for p in self.phases)

    @property
    def unaccounted(self) -> int:
        return sum(len(p.unaccounted) for p in self.phases)


class _Quiet(PrivateRedis):
    """A private redis-server without persistence (the fuzz is not about durability)."""

    persistent = False


class Daemon:
    """``reactor run`` in its own process; restarted (and counted) when it dies."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.deaths = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_kib = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reactor", "--config", str(self.config), "run"],
                cwd=ROOT,
                stderr=out,
                stdout=out,
            )

    def check(self) -> None:
        """Sample RSS; a process that exited is a death: start another."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.deaths += 1
            self.start()
            return
        self.peak_kib = max(self.peak_kib, self.rss_kib())

    def rss_kib(self) -> int:
        assert self.proc is not None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def _write_config(directory: Path, redis_url: str, ops_port: int) -> Path:
    (directory / "rules").mkdir()
    (directory / "rules" / "fuzz.toml").write_text(RULES)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the rules make no SuperMQ call
    urls = "\n".join(f'{s}_url = "{dead}"' for s in ("users", "things", "bootstrap", "certs", "http"))
    config = directory / "config.toml"
    config.write_text(f"""
source = "redis"
[redis]
url = "{redis_url}"
streams = {json.dumps(list(STREAMS))}
group = "{GROUP}"
consumer = "{CONSUMER}"
start_id = "0"
block_ms = 100
dlq_stream = "{DLQ}"
[events]
families = ["fz"]
[rules]
dir = "{directory / "rules"}"
reload_interval_s = 0
[worker]
max_deliveries = {MAX_DELIVERIES}
[state]
backend = "sqlite"
path = "{directory / "state.sqlite3"}"
[ops]
listen = "127.0.0.1:{ops_port}"
backlog_interval_s = 1.0
[supermq]
profile = "things"
{urls}
[log]
level = "INFO"
""")
    return config


Key = tuple[str, str]  # (stream, entry id)


async def _xadd(client: aioredis.Redis, entries: list[Entry]) -> dict[Key, str]:
    """XADD every entry (pipelined); their expectations by (stream, entry id)."""
    expected: dict[Key, str] = {}
    for start in range(0, len(entries), 200):
        chunk = entries[start : start + 200]
        async with client.pipeline(transaction=False) as pipe:
            for stream, fields, _ in chunk:
                pipe.xadd(stream, fields)
            ids = await pipe.execute()
        for entry_id, (stream, _, expect) in zip(ids, chunk, strict=True):
            expected[stream, entry_id.decode()] = expect
    return expected


async def _settled(client: aioredis.Redis, daemon: Daemon, timeout_s: float) -> int:
    """Wait until every stream has nothing pending or undelivered; what is still pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        daemon.check()
        left = 0
        for stream in STREAMS:
            for group in await client.xinfo_groups(stream):
                left += int(group["pending"]) + int(group.get("lag") or 0)
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def _dead_lettered(client: aioredis.Redis) -> set[Key]:
    ids: set[Key] = set()
    last = "-"
    while True:
        rows: Any = await client.xrange(DLQ, min=last, max="+", count=50)
        rows = [row for row in rows if row[0].decode() != last]
        if not rows:
            return ids
        ids |= {(row[1][b"stream"].decode(), row[1][b"entry_id"].decode()) for row in rows}
        last = rows[-1][0].decode()


def _metrics(port: int) -> tuple[int, int]:
    """(series, bytes) of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read()
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return series, len(text)


async def _run_phase(
    name: str,
    entries: list[Entry],
    client: aioredis.Redis,
    daemon: Daemon,
    ops_port: int,
    expected: dict[Key, str],
) -> Phase:
    phase = Phase(name, len(entries))
    started = time.monotonic()
    daemon.peak_kib = 0
    expected.update(await _xadd(client, entries))
    left = await _settled(client, daemon, timeout_s=300)
    phase.seconds = time.monotonic() - started
    await asyncio.sleep(1.2)  # a backlog round of the gauges
    dead = await _dead_lettered(client)
    phase.dead_lettered = len(dead & set(expected))
    phase.acked = len(expected) - left - phase.dead_lettered
    for key, expect in expected.items():
        if (expect == "dead" and key not in dead) or (expect == "acked" and key in dead):
            phase.unaccounted.append(f"{key[0]} {key[1]}: expected {expect}")
    if left:
        phase.unaccounted.append(f"{left} still pending or undelivered")
    phase.rss_mib = daemon.rss_kib() / 1024
    phase.peak_rss_mib = daemon.peak_kib / 1024
    phase.series, phase.metrics_bytes = await asyncio.to_thread(_metrics, ops_port)
    for stream in STREAMS:  # empty Redis for the next phase (every entry is settled)
        await client.xtrim(stream, maxlen=0)
    await client.delete(DLQ)
    expected.clear()
    return phase


async def _pre_poison(
    client: aioredis.Redis, r: random.Random, count: int, expected: dict[Key, str], state: Path
) -> None:
    """Entries a process died holding ``MAX_DELIVERIES`` times; every other one also ran alone
    then (marked in the daemon's state store): those are set aside as poison, not run; the rest
    were merely in flight, and are acted on."""
    for stream in STREAMS:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entries = [(STREAMS[0], gen_valid(r)[1], "dead" if n % 2 else "acked") for n in range(count)]
    added = await _xadd(client, entries)
    expected.update(added)
    await client.xreadgroup(GROUP, CONSUMER, {STREAMS[0]: ">"})
    for _ in range(MAX_DELIVERIES - 1):
        await client.xreadgroup(GROUP, CONSUMER, {STREAMS[0]: "0"})
    store = SQLiteStateStore(state, 3600.0)
    for (stream, entry_id), expect in added.items():
        if expect == "dead":
            await begin_trial(store, delivery_key(stream, entry_id))
    await store.close()


async def _wait_ready(port: int, daemon: Daemon) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        daemon.check()
        try:
            await asyncio.to_thread(_metrics, port)
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the daemon's /metrics did not answer in 30 s")


async def run(seed: int = 14, mixed: int = 10_000, operations: int = 2_000, certs: int = 300) -> FuzzReport:
    """The whole fuzz run; ``mixed``, ``operations`` and ``certs`` size the phases."""
    r = random.Random(seed)
    report = FuzzReport(seed)
    with tempfile.TemporaryDirectory(prefix="reactor-fuzz-") as tmp:
        directory = Path(tmp)
        server = _Quiet(directory / "redis")
        server.start()
        ops_port = free_port()
        daemon = Daemon(_write_config(directory, server.url, ops_port), directory / "daemon.log")
        client = aioredis.Redis.from_url(server.url)
        try:
            expected: dict[Key, str] = {}
            await _pre_poison(client, r, 20, expected, directory / "state.sqlite3")
            daemon.start()
            await _wait_ready(ops_port, daemon)
            report.start_rss_mib = daemon.rss_kib() / 1024
            report.phases.append(await _run_phase("poison", [], client, daemon, ops_port, expected))
            report.phases[-1].entries = 20
            phases = [
                ("operations", list(operations_phase(r, operations))),
                ("labels", list(labels_phase(r, operations))),
                ("certs", list(certs_phase(r, certs))),
                ("mixed", list(mixed_phase(r, mixed))),
            ]
            for name, entries in phases:
                report.phases.append(await _run_phase(name, entries, client, daemon, ops_port, expected))
            report.pending_at_end = await _settled(client, daemon, timeout_s=1)
            report.deaths = daemon.deaths
        finally:
            report.exit_code = daemon.stop()
            await client.aclose()
            server.kill()
        report.tracebacks = daemon.log.read_bytes().count(b"Traceback")
    return report


def lines(report: FuzzReport) -> list[str]:
    """The report as a RESULTS.md section."""
    out = [
        "## 7. Fuzz: hostile entries against a live daemon (`python -m bench.fuzz`)",
        "",
        f"Measured on {machine()}; seed {report.seed}, {report.entries:,} entries.",
        "",
        f"- deaths: {report.deaths}; exit code on SIGTERM: {report.exit_code}; tracebacks in the log: "
        f"{report.tracebacks}",
        f"- pending or undelivered at the end: {report.pending_at_end}; entries neither acked nor "
        f"dead-lettered as expected: {report.unaccounted}",
        f"- RSS after start: {report.start_rss_mib:.1f} MiB",
        "",
        "| phase | entries | acked | dead-lettered | unaccounted | s | RSS after (MiB) | peak RSS"
        " | metric series | /metrics bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report.phases:
        out.append(
            f"| {p.name} | {p.entries:,} | {p.acked:,} | {p.dead_lettered:,} | {len(p.unaccounted)} "
            f"| {p.seconds:.1f} | {p.rss_mib:.1f} | {p.peak_rss_mib:.1f} | {p.series:,} "
            f"| {p.metrics_bytes:,} |"
        )
    return [*out, ""]


def write_section(section: list[str], path: Path = ROOT / "bench" / "RESULTS.md") -> None:
    """Put ``section`` into RESULTS.md in place of an earlier fuzz section (or at the end)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    head, marker, rest = text.partition(section[0])
    tail = rest.partition("\n## ")[2]
    body = "\n".join(section)
    text = f"{head.rstrip()}\n\n{body}\n" + (f"\n## {tail}" if marker and tail else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--mixed", type=int, default=10_000)
    parser.add_argument("--operations", type=int, default=2_000)
    parser.add_argument("--certs", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    report = asyncio.run(run(args.seed, args.mixed, args.operations, args.certs))
    section = lines(report)
    print("\n".join(section))
    for phase in report.phases:
        for item in phase.unaccounted[:5]:
            print(f"  {phase.name}: {item}")
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
