"""Settings: file, environment, overrides; every key documented; bad settings name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from reactor.errors import ConfigError
from reactor.settings import DEPRECATED, Settings, deprecated_keys, load_settings
from tests.conftest import REPO

EXAMPLE = REPO / "config.example.toml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _keys(ann, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def _flatten(doc: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in doc.items():
        out |= _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def test_example_config_documents_every_key_and_loads() -> None:
    text = EXAMPLE.read_text()
    documented = _flatten(tomllib.loads(text)) | {"redis.consumer"}  # consumer is shown commented out
    documented |= set(DEPRECATED)  # still read, no longer shown
    assert _keys(Settings) == documented
    assert "# consumer = " in text
    settings = load_settings(EXAMPLE)
    assert settings.redis.streams == ["supermq.bootstrap", "supermq.things"]


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[worker]\nbatch_size = 10\n[redis]\ngroup = "from-file"\n')
    monkeypatch.setenv("REACTOR_WORKER__BATCH_SIZE", "20")
    monkeypatch.setenv("REACTOR_LOG__LEVEL", "debug")
    settings = load_settings(config)
    assert (settings.worker.batch_size, settings.redis.group, settings.log.level) == (
        20,
        "from-file",
        "DEBUG",
    )


@pytest.mark.parametrize("source", ["redis", "nats", "rabbitmq"])
def test_reads_are_sized_by_worker_for_every_store(tmp_path: Path, source: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'source = "{source}"\n[worker]\nbatch_size = 7\nblock_ms = 25\n')
    settings = load_settings(config)
    assert (settings.worker.batch_size, settings.worker.block_ms) == (7, 25)
    assert deprecated_keys(settings) == []


def test_the_old_redis_keys_still_apply_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[redis]\nbatch_size = 7\nblock_ms = 25\n")
    settings = load_settings(config)
    assert (settings.worker.batch_size, settings.worker.block_ms) == (7, 25)
    assert [line.split()[0] for line in deprecated_keys(settings)] == ["redis.batch_size", "redis.block_ms"]
    config.write_text("[redis]\nbatch_size = 7\n[worker]\nbatch_size = 9\n")  # the new key wins
    assert load_settings(config).worker.batch_size == 9


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[redis]\nbatch_size = 0\n", "redis.batch_size"),
        ("[worker]\nbatch_size = 0\n", "worker.batch_size"),
        ("[redis]\nbogus = 1\n", "redis.bogus: unknown key"),
        ('[redis]\nstart_id = "latest"\n', "redis.start_id"),
        ('source = "kafka"\n', "source"),
        ('[log]\nformat = "xml"\n', "log.format"),
        ("[retry]\nattempts = 0\n", "retry.attempts"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_settings(config)


def test_invalid_environment_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTOR_WORKER__CONCURRENCY", "-1")
    with pytest.raises(ConfigError, match=r"worker\.concurrency"):
        load_settings(None)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[redis\n")
    with pytest.raises(ConfigError, match=r"c\.toml"):
        load_settings(config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
