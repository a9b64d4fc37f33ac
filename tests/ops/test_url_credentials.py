"""A password in an event store's URL never reaches an error message (issue 19, S8): the message
is built with the URL as it may be shown, not left to the second net to catch later."""

from __future__ import annotations

import pytest

from reactor.errors import SourceError
from reactor.settings import load_settings
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.sources.redis_streams import RedisStreamsSource
from tests.servers import free_port

PASSWORD = "hunter22-url-pw"


async def test_a_redis_url_password_is_not_in_the_source_error() -> None:
    settings = load_settings(None, redis={"url": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"})
    source = RedisStreamsSource(settings.redis)
    with pytest.raises(SourceError) as info:
        await source.start()
    await source.close()
    assert PASSWORD not in str(info.value)
    assert "redis://***@127.0.0.1" in str(info.value)


async def test_a_nats_url_password_is_not_in_the_source_error() -> None:
    url = f"nats://reactor:{PASSWORD}@127.0.0.1:{free_port()}"
    settings = load_settings(None, source="nats", nats={"url": url})
    source = NatsJetStreamSource(settings.nats)
    with pytest.raises(SourceError) as info:
        await source.start()
    assert PASSWORD not in str(info.value)
    assert "nats://***@127.0.0.1" in str(info.value)
