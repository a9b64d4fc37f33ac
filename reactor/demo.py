"""``reactor demo``: the main job on an embedded default — no external server needed.

An in-memory source preloaded with an onboarding scenario written in SuperMQ's own event shapes
(Redis flat fields, the ``data`` JSON field, protobuf-wrapped JSON as NATS carries it, several
eras), the shipped rules, the SuperMQ simulator on loopback as the world the actions change, and
a readable report of event → rules → actions → outcome, then what SuperMQ now holds.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from typing import Any, TextIO

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.events.protowire import wrap_payload
from reactor.ops.audit import print_history
from reactor.ops.logging import get_logger
from reactor.provision.demo import zero_touch
from reactor.redact import redact
from reactor.settings import Settings
from reactor.sources.memory import MemorySource
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.seed import CHANNEL, CHANNEL_2, EXTERNAL_ID, THING, seed

# A stand-in, not a key: the demo shows that a private key in an event never reaches the output.
DEMO_KEY = "-----BEGIN PRIVATE KEY-----MIIEdemoNotARealKey-----END PRIVATE KEY-----"


_ZERO_TOUCH_LABELS = {
    "1-0": "an enrolled factory device's first bootstrap attempt",
    "2-0": "its retry a second later",
    "3-0": "a device nobody enrolled",
    "4-0": "the enrolled device again",
}


def _json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def scenario() -> list[tuple[str, str, Mapping[str, Any] | bytes]]:
    """(label, stream, payload): a device's onboarding as SuperMQ publishes it, across eras."""
    content = '{"device_id": "12345", "secure_connection": true, "sensor_config": {"temperature": true}}'
    return [
        (
            "redis flat fields (Mainflux/Magistrala v0.14)",
            "supermq.bootstrap",
            {
                "operation": "config.create",
                "thing_id": THING,
                "external_id": EXTERNAL_ID,
                "channels": f"[{CHANNEL}, {CHANNEL_2}]",
                "content": content,
                "state": "0",
                "name": "demo",
                "client_key": DEMO_KEY,
                "owner": "b2972472-c93c-408f-9b77-0f8a81ee47af",
                "occurred_at": "1693339152105496336",
            },
        ),
        (
            "redis 'data' JSON field (Magistrala v0.15)",
            "events.magistrala.bootstrap",
            {
                "data": json.dumps(
                    {
                        "operation": "bootstrap.thing.bootstrap",
                        "thing_id": THING,
                        "external_id": EXTERNAL_ID,
                        "success": True,
                        "content": content,
                        "channels": [CHANNEL, CHANNEL_2],
                        "occurred_at": 1693339161600369325,
                    }
                )
            },
        ),
        (
            "NATS: protobuf-wrapped JSON, base64 metadata",
            "events.supermq.bootstrap",
            wrap_payload(
                _json(
                    {
                        "operation": "thing.change_state",
                        "thing_id": THING,
                        "state": "1",
                        "occurred_at": 1697041591648042067,
                    }
                ),
                field_number=5,
            ),
        ),
        (
            "redis flat, failed bootstrap",
            "supermq.bootstrap",
            {
                "operation": "thing.bootstrap",
                "external_id": "AA-00-00-00-00-01",
                "success": "0",
                "occurred_at": "1693339161700000000",
            },
        ),
        (
            "redis flat, 2019 shape: 'a, b, c' and unix seconds",
            "mainflux.bootstrap",
            {
                "operation": "thing.update_connections",
                "thing_id": THING,
                "channels": f"{CHANNEL}, {CHANNEL_2}",
                "timestamp": "1555405373",
            },
        ),
        (
            "MQTT adapter (thing_id carries the thing key)",
            "supermq.mqtt",
            {
                "thing_id": "f3b1f2d6-0000-4000-8000-00000000key1",
                "event_type": "connect",
                "instance": "",
                "occurred_at": "1693312937469719069",
            },
        ),
        (
            "Magistrala v0.14 channel removal (group.*)",
            "magistrala.bootstrap",
            {
                "operation": "group.remove_handler",
                "config_id": CHANNEL_2,
                "occurred_at": "1693339468719177463",
            },
        ),
        (
            "NATS: thing removed (protobuf field 6)",
            "events.supermq.things",
            wrap_payload(
                _json(
                    {
                        "operation": "thing.remove",
                        "id": THING,
                        "metadata": "e30=",
                        "occurred_at": 1696520320674227458,
                    }
                )
            ),
        ),
        ("malformed: 'data' is not JSON", "supermq.bootstrap", {"data": "{not json"}),
    ]


class Report:
    """Prints each settled event: what it was, which rules matched, what their actions did."""

    def __init__(self, out: TextIO, labels: Mapping[str, str]) -> None:
        self._out = out
        self._labels = labels
        self.count = 0

    def __call__(self, outcome: Outcome) -> None:
        self.count += 1
        d = outcome.delivery
        label = self._labels.get(d.entry_id, "")
        ev = outcome.event
        head = f"#{self.count} {d.stream} {d.entry_id}"
        if ev is not None:
            alias = f" (published as {ev.raw_operation})" if ev.raw_operation != ev.operation else ""
            head += f"  {ev.operation}{alias}  device={ev.device or '-'}"
        self._print(f"{head}\n    [{label}]")
        if ev is not None and not outcome.rules:
            self._print("    no rule matched -> acked")
        for rule in outcome.rules:
            for step in rule.steps:
                mark = "ok " if step.ok else "FAIL"
                detail = _describe_result(step.result) if step.ok else step.error
                if step.skipped and step.error:  # a throttled or debounced firing says why
                    mark, detail = "skip", step.error
                self._print(f"    {mark} rule {rule.rule} -> {step.type}: {detail}")
        if outcome.dead_letter is not None:
            dl = outcome.dead_letter
            self._print(f"    -> dead-letter ({dl.reason}): {dl.error}")
        elif ev is not None and outcome.rules:
            self._print("    -> acked")

    def _print(self, text: str) -> None:
        print(text, file=self._out)


def _describe_result(result: Any) -> str:
    if isinstance(result, dict) and "message" in result:
        return str(redact(result["message"]))
    return json.dumps(redact(result), default=str)


def print_world(sim: Simulator, out: TextIO) -> None:
    """What the actions changed in SuperMQ."""
    state = sim.state
    config = state.configs[THING]
    print("\nSuperMQ simulator afterwards:", file=out)
    print(f"  config {THING}: state={config.state} channels={config.channels}", file=out)
    print(f"  content: {config.content}", file=out)
    connected = sorted(c for t, c in state.connections if t == THING)
    print(f"  thing connected to: {connected}", file=out)
    for message in state.messages:
        print(
            f"  message on {message['channel']}/{message['subtopic']}: {message['payload'].decode()}",
            file=out,
        )
    print(f"  {len(state.effects)} effects: " + ", ".join(e.kind for e in state.effects), file=out)
    if sim.contract is not None:
        print(f"  OpenAPI violations: {len(sim.contract.violations)}", file=out)


async def print_operator_view(reactor: Reactor, out: TextIO) -> None:
    """What ``reactor history --thing`` and ``/metrics`` would show for this run."""
    print(f"\nreactor history --thing {THING}:", file=out)
    if reactor.audit is not None:
        history = io.StringIO()
        print_history(await reactor.audit.query(device=THING), history)
        print("\n".join("  " + line for line in history.getvalue().splitlines()), file=out)
    print("\n/metrics (excerpt):", file=out)
    for line in reactor.metrics.render().decode().splitlines():
        if line.startswith(
            ("reactor_actions_total", "reactor_dead_letters_total", "reactor_rule_failed_total")
        ):
            print(f"  {line}", file=out)


async def run_demo(settings: Settings, out: TextIO) -> int:
    """Run the scenario through the rules against the simulator; print the report and a summary."""
    events = scenario()
    source = MemorySource((stream, payload) for _, stream, payload in events)
    labels = {f"{i}-0": label for i, (label, _, _) in enumerate(events, 1)}
    report = Report(out, labels)
    async with Simulator() as sim:
        seed(sim.state)
        # profile "auto", as an operator would start: the reactor reads the simulator's /health
        settings = settings.model_copy(update={"supermq": sim.settings(profile="auto")})
        reactor = Reactor.build(settings, source, get_logger("reactor.demo"), observers=[report])
        profile = await reactor.client.resolve_profile()
        print(
            f"reactor demo: {len(events)} SuperMQ events through {len(reactor.rules)} rules "
            f"from {settings.rules.dir}/, actions against the SuperMQ simulator on 127.0.0.1\n"
            f"  the simulator plays profile {sim.state.profile!r} (Magistrala v0.14.0, checked "
            f'against its OpenAPI specs);\n  the reactor (supermq.profile = "auto") chose '
            f"{profile.name!r}: {reactor.client.profile_reason}\n",
            file=out,
        )
        await reactor.run(asyncio.Event())
        print_world(sim, out)
        provisioned = await zero_touch(settings, sim, out, Report(out, _ZERO_TOUCH_LABELS))
    await print_operator_view(reactor, out)
    c = reactor.worker.counters
    print(
        f"\nsummary: {c.events} events, {c.matched} rule matches, {c.actions_ok} actions ok, "
        f"{c.actions_failed} failed, {c.dead_lettered} dead-lettered, {len(source.acked)} acked",
        file=out,
    )
    return 0 if len(source.acked) == c.events and provisioned else 1
