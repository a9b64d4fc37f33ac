"""The zero-touch step of ``reactor demo``: devices the simulated platform does not know try to
bootstrap; the shipped rule (enabled here) provisions the enrolled one on its first attempt, its
retries are throttled, an unenrolled device is refused, and the device's next fetch succeeds."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.errors import ActionError
from reactor.ops.logging import get_logger
from reactor.provision.enrollments import derive_key
from reactor.settings import Settings
from reactor.sources.memory import MemorySource
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator

DEVICE = "ZT-FACTORY-0001"
STRANGER = "ZT-UNKNOWN-0009"


def attempts() -> list[tuple[str, Mapping[str, Any]]]:
    """Three failed attempts of a factory device a second apart, one of an unenrolled device."""
    at = 1_700_000_000_000_000_000

    def attempt(external_id: str, n: int) -> Mapping[str, Any]:
        return {
            "operation": "thing.bootstrap",
            "external_id": external_id,
            "success": "0",
            "occurred_at": str(at + n * 1_000_000_000),
        }

    return [("mainflux.bootstrap", attempt(e, n)) for n, e in enumerate([DEVICE, DEVICE, STRANGER, DEVICE])]


async def zero_touch(
    settings: Settings, sim: Simulator, out: TextIO, observer: Callable[[Outcome], None]
) -> bool:
    """Run the step; False when it cannot (no shipped rule or template) or the device is not served."""
    rule = settings.rules.dir / "zero-touch.toml"
    templates = settings.provision.templates_dir
    if not rule.is_file() or not (templates / "sensor.toml").is_file():
        print(f"\nzero-touch provisioning: skipped ({rule} or {templates}/sensor.toml missing)", file=out)
        return True
    with tempfile.TemporaryDirectory(prefix="reactor-demo-") as tmp:
        here = Path(tmp)
        (here / "rules").mkdir()
        (here / "rules" / "zero-touch.toml").write_text(
            rule.read_text(encoding="utf-8").replace("enabled = false", "enabled = true"), encoding="utf-8"
        )
        secret = secrets.token_hex(16)  # the factory's group secret, made up for the demo
        (here / "factory.secret").write_text(secret, encoding="utf-8")
        (here / "enrollments.toml").write_text(
            '[[group]]\nname = "factory"\npattern = "ZT-FACTORY-*"\n'
            f'secret_file = "{here / "factory.secret"}"\ntemplate = "sensor"\n'
            'fields = { site = "factory-floor" }\n',
            encoding="utf-8",
        )
        print(
            f"\nzero-touch provisioning ({rule}, enabled for the demo): enrollment group 'factory' "
            f"(ZT-FACTORY-*, keys = HMAC-SHA256 of the external id under the group secret), "
            f"template {templates}/sensor.toml\n",
            file=out,
        )
        step = settings.model_copy(
            update={
                "rules": settings.rules.model_copy(update={"dir": here / "rules"}),
                "provision": settings.provision.model_copy(
                    update={"enrollments": [here / "enrollments.toml"]}
                ),
                "supermq": sim.settings(),
            }
        )
        source = MemorySource(attempts())
        reactor = Reactor.build(step, source, get_logger("reactor.demo"), observers=[observer])
        await reactor.run(asyncio.Event())
        return await _device_fetch(sim, reactor, derive_key(secret, DEVICE), out)


async def _device_fetch(sim: Simulator, reactor: Reactor, key: str, out: TextIO) -> bool:
    client = SuperMQClient(sim.settings())
    try:
        served = await client.device_config(DEVICE, key)
    except ActionError as exc:
        print(f"  the device's fetch failed: {exc}", file=out)
        return False
    finally:
        await client.aclose()
    names = sorted(c.name for c in served.channels)
    things = [t for t in sim.state.things.values() if t.name == DEVICE]
    print(
        f"  the device fetches GET /things/bootstrap/{DEVICE} with its derived key: 200, "
        f"channels {names}, content {served.content}\n"
        f"  things named {DEVICE}: {len(things)}; {STRANGER}: "
        f"{sum(1 for t in sim.state.things.values() if t.name == STRANGER)}",
        file=out,
    )
    return len(things) == 1
