"""``make bench``: run every benchmark and write bench/RESULTS.md (a few minutes on 2 cores)."""

from __future__ import annotations

import asyncio

from bench import http_actions, latency, memory, redis_match, rule_count, scale_out
from bench.common import Result, write_results


def _show(result: Result, results: list[Result]) -> None:
    print("\n".join(result.lines()), flush=True)
    results.append(result)


async def main() -> list[Result]:
    results: list[Result] = []
    _show(await redis_match.run(), results)
    for result in await http_actions.run():
        _show(result, results)
    for single in (rule_count.run, memory.run, latency.run, scale_out.run):
        _show(await single(), results)
    return results


if __name__ == "__main__":
    write_results(asyncio.run(main()))
