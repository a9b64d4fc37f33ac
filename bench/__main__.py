"""``make bench``: run every benchmark and write bench/RESULTS.md (a few minutes on 2 cores)."""

from __future__ import annotations

import asyncio
import sys

from bench import http_actions, latency, memory, onboarding, redis_match, rule_count, scale_out
from bench.common import Result, write_results


def _show(result: Result, results: list[Result]) -> None:
    print("\n".join(result.lines()), flush=True)
    results.append(result)


async def main() -> list[Result]:
    results: list[Result] = []
    _show(await redis_match.run(), results)
    for result in await http_actions.run():
        _show(result, results)
    for single in (rule_count.run, memory.run, latency.run, scale_out.run, onboarding.run):
        _show(await single(), results)
    return results


if __name__ == "__main__":
    done = asyncio.run(main())
    write_results(done)
    failed = [r.name for r in done if r.failed]
    if failed:  # written all the same: the other sections' figures stand
        sys.exit(f"benchmark check failed: {', '.join(failed)} (see bench/RESULTS.md)")
