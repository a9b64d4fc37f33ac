"""``make bench``: run every benchmark and write bench/RESULTS.md."""

from __future__ import annotations

import asyncio

from bench import http_actions, rule_count
from bench.common import Result, write_results


async def main() -> list[Result]:
    results: list[Result] = []
    for found in (await http_actions.run(), [await rule_count.run()]):
        for result in found:
            print("\n".join(result.lines()), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    write_results(asyncio.run(main()))
