"""Reading SuperMQ's protobuf ``messaging.Message`` wrapper without generated code.

NATS and RabbitMQ events are JSON inside the ``payload`` bytes field of ``messaging.Message``
(``pkg/messaging/message.proto``): field 5 until SuperMQ v0.17.0, field 6 after ``domain`` was
inserted as field 2. Only ``payload`` is set for events. We need exactly one length-delimited
field out of a handful, so a wire-format reader of a few lines serves better than a protobuf
runtime plus generated classes for two schema versions.
"""

from __future__ import annotations

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_PAYLOAD_FIELDS = (6, 5)


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _skip(buf: bytes, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _varint(buf, pos)[1]
    if wire_type == _I64:
        return pos + 8
    if wire_type == _I32:
        return pos + 4
    raise WireError(f"unsupported wire type {wire_type}")


def length_delimited_fields(buf: bytes) -> dict[int, bytes]:
    """Every length-delimited field of a message by field number (the last one wins, as protobuf does)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 0x7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == _LEN:
            size, pos = _varint(buf, pos)
            end = pos + size
            if end > len(buf):
                raise WireError("truncated length-delimited field")
            fields[number] = buf[pos:end]
            pos = end
        else:
            pos = _skip(buf, pos, wire_type)
    if pos != len(buf):
        raise WireError("truncated fixed-width field")
    return fields


def unwrap_payload(buf: bytes) -> bytes:
    """The JSON payload of a ``messaging.Message`` (field 6, else field 5, that holds a JSON object)."""
    fields = length_delimited_fields(buf)
    for number in _PAYLOAD_FIELDS:
        value = fields.get(number)
        if value is not None and value.lstrip()[:1] == b"{":
            return value
    raise WireError("no JSON payload in field 5 or 6")


def wrap_payload(payload: bytes, field_number: int = 6) -> bytes:
    """Encode ``payload`` as a ``messaging.Message`` the way SuperMQ publishes events (for tests and demo)."""
    return _encode_varint(field_number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
