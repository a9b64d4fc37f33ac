"""Settings for a Redis-fed reactor in a test: a stream family of the test's own, a rule file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reactor.settings import Settings, load_settings
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL


def redis_settings(
    tmp_path: Path,
    sim: Simulator,
    unique: str,
    rules: str,
    *,
    family: str = "t",
    supermq: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Streams ``<family><unique>.bootstrap`` read from the start, ``rules`` as the one rule file,
    the simulator as SuperMQ; ``sections`` override whole settings sections."""
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / "r.toml").write_text(rules)
    settings = load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"{family}{unique}.bootstrap"],
            "group": "g",
            "consumer": "c1",
            "start_id": "0",
            "block_ms": 50,
            "dlq_stream": f"{family}{unique}.dlq",
        },
        events={"families": [f"{family}{unique}"]},
        rules={"dir": directory, "reload_interval_s": 0},
        **sections,
    )
    return settings.model_copy(update={"supermq": sim.settings(**(supermq or {}))})
