"""The daemon's collector threshold: raised by ``Reactor.build``, never lowered."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.app import GC_YOUNG_THRESHOLD, Reactor
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource


@pytest.fixture
def thresholds() -> Iterator[None]:
    kept = gc.get_threshold()
    yield
    gc.set_threshold(*kept)


def _build(tmp_path: Path) -> Reactor:
    (tmp_path / "r.toml").write_text(
        '[[rule]]\nname = "n"\non = ["config.create"]\n[[rule.actions]]\ntype = "noop"\n'
    )
    settings = load_settings(None, source="memory", rules={"dir": tmp_path, "reload_interval_s": 0})
    return Reactor.build(settings, MemorySource([]), get_logger("test"))


@pytest.mark.usefixtures("thresholds")
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((700, 10, 10), (GC_YOUNG_THRESHOLD, 10, 10)),  # CPython's default: raised
        ((50_000, 5, 20), (50_000, 5, 20)),  # set higher by the embedding process: kept
        ((0, 10, 10), (0, 10, 10)),  # the collector switched off: left so
    ],
)
async def test_the_reactor_raises_the_young_generations_threshold(
    tmp_path: Path, before: tuple[int, int, int], after: tuple[int, int, int]
) -> None:
    gc.set_threshold(*before)
    reactor = _build(tmp_path)
    assert gc.get_threshold() == after
    await reactor.client.aclose()
