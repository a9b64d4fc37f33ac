"""``make bench``: run every benchmark and write bench/RESULTS.md."""

from __future__ import annotations

import asyncio

from bench import rule_count
from bench.common import Result, write_results


async def main() -> list[Result]:
    results = []
    for module in (rule_count,):
        result = await module.run()
        print("\n".join(result.lines()), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    write_results(asyncio.run(main()))
