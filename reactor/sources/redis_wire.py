"""Redis replies as the source reads them: bytes never decoded by the client, decoded here field
by field (a field that is not UTF-8 stays bytes, for the decoder to refuse with its raw bytes kept)."""

from __future__ import annotations

from typing import Any

from redis.client import NEVER_DECODE

from reactor.sources.base import Delivery


def undecoded(client: Any, *args: Any) -> Any:
    """``client.execute_command(*args)`` with the reply's bytes left as bytes (an awaitable, or the
    pipeline itself when ``client`` is one)."""
    return client.execute_command(*args, **{NEVER_DECODE: True})


def deliveries(reply: Any) -> list[Delivery]:
    """XREADGROUP's undecoded reply (RESP2 list or RESP3 dict) as Deliveries.

    A pending entry that the stream has since trimmed comes back with no fields: it is delivered
    with an empty payload, so that it fails decoding and is dead-lettered and acked, not stuck.
    """
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    out: list[Delivery] = []
    for stream_name, entries in items:
        stream = text(stream_name)
        for entry_id, raw in entries:
            out.append(Delivery(stream, text(entry_id), fields(raw)))
    return out


def size(payload: Any) -> int:
    """Bytes of an entry's field names and values (as read: text or bytes)."""
    if isinstance(payload, dict):
        return sum(map(len, payload)) + sum(map(len, payload.values()))
    return len(payload)


def text(value: Any) -> str:
    """A stream name or entry id (ours, or Redis's: ASCII) as text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def fields(raw: Any) -> dict[Any, Any]:
    """An entry's fields as text, each one that is UTF-8; one that is not stays bytes (name or value)."""
    if not raw:
        return {}
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}  # the common case, in one pass
    except UnicodeDecodeError:
        return {_utf8_or_bytes(k): _utf8_or_bytes(v) for k, v in raw.items()}


def _utf8_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value
