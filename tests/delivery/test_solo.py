"""The run-alone gate: ``alone`` starts once every running pass ended, and no pass starts while
it runs (an entry past max_deliveries runs with nothing beside it)."""

from __future__ import annotations

import asyncio

from reactor.delivery.solo import Solo


async def test_alone_waits_for_the_running_and_holds_the_new() -> None:
    solo = Solo()
    log: list[str] = []
    release = asyncio.Event()

    async def event(name: str, hold: asyncio.Event | None = None) -> None:
        async with solo.running():
            log.append(f"{name} starts")
            if hold is not None:
                await hold.wait()
            log.append(f"{name} ends")

    async def suspect() -> None:
        async with solo.alone():
            log.append("alone starts")
            await asyncio.sleep(0.05)
            log.append("alone ends")

    first = asyncio.create_task(event("a", release))
    await asyncio.sleep(0)
    alone = asyncio.create_task(suspect())
    await asyncio.sleep(0.01)
    later = asyncio.create_task(event("b"))
    await asyncio.sleep(0.01)
    assert log == ["a starts"]  # alone waits for a; b waits for alone
    release.set()
    await asyncio.gather(first, alone, later)
    assert log == ["a starts", "a ends", "alone starts", "alone ends", "b starts", "b ends"]
