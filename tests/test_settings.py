"""Settings: file, environment, overrides; every key documented; bad settings name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from reactor.errors import ConfigError
from reactor.redact import redact_text, shown_url
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


#: Refused proxy URLs, each with what of its password a message must not show: without a scheme
#: (curl and httpx read ``user:password@host:port`` so), and a password holding an ``@``.
REFUSED_PROXIES = [
    ("bob:S3cretPw@proxy:3128", "S3cretPw"),
    ("socks5://bob:P@ssW0rd@h:1080", "ssW0rd"),
    ("ftp://bob:P@ss@W0rd@h:21", "W0rd"),
]


@pytest.mark.parametrize(("proxy", "secret"), REFUSED_PROXIES)
def test_a_refused_proxy_setting_shows_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: str, secret: str
) -> None:
    """In the file and in the environment alike: one line naming supermq.proxy, the userinfo
    masked up to the last '@' of the authority, with or without a scheme."""
    config = tmp_path / "c.toml"
    config.write_text(f'[supermq]\nproxy = "{proxy}"\n')
    with pytest.raises(ConfigError) as from_file:
        load_settings(config)
    monkeypatch.setenv("REACTOR_SUPERMQ__PROXY", proxy)
    with pytest.raises(ConfigError) as from_environment:
        load_settings(None)
    for refused in (from_file, from_environment):
        message = str(refused.value)
        assert "supermq.proxy" in message
        assert secret not in message, message
        assert "bob" not in message, message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("bob:S3cretPw@proxy:3128", "***@proxy:3128"),
        ("socks5://bob:P@ssW0rd@h:1080", "socks5://***@h:1080"),
        ("http://:pw@h:1/x", "http://***@h:1/x"),
        ("http://h:3128", "http://h:3128"),
        ("proxy:3128", "proxy:3128"),
    ],
)
def test_the_one_masking_helper_strips_userinfo_up_to_the_last_at(url: str, shown: str) -> None:
    """What settings.py and proxies.py show of a URL (redact.shown_url), and the second net for
    free text (redact_text): an '@' in the password leaks none of it."""
    assert shown_url(url) == shown
    assert "ssW0rd" not in redact_text("connecting to socks5://bob:P@ssW0rd@h:1080 failed")


@pytest.mark.parametrize("key", ["supermq.proxy", "redis.url"])
def test_a_port_out_of_range_is_refused_in_one_line(tmp_path: Path, key: str) -> None:
    """Before: accepted, then an OverflowError traceback from connect in ``reactor doctor`` / run."""
    section, name = key.split(".")
    scheme = "http" if section == "supermq" else "redis"
    config = tmp_path / "c.toml"
    config.write_text(f'[{section}]\n{name} = "{scheme}://bob:S3cret@127.0.0.1:99999"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    message = str(refused.value)
    assert key in message
    assert "99999" in message
    assert "S3cret" not in message
    assert "\n" not in message
