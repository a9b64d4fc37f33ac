"""Field-level quirk normalisers: every era's spelling of a value becomes one Python type.

Sources: each service's ``events/streams.go`` / ``events.go`` in absmach/supermq and
absmach/mainflux across their tags (``Encode()`` of every event type). Each function takes the
value as published and returns the normalised value, or raises ``ValueError`` with a short reason
that the decoder wraps into a ``DecodeError`` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

# Fields that hold lists: tags/ids as "[a,b]", "a, b, c", a JSON-array string or an array.
LIST_FIELDS = frozenset(
    {
        "tags",
        "channels",
        "member_ids",
        "user_ids",
        "client_ids",
        "channel_ids",
        "thing_ids",
        "types",
        "actions",
    }
)
# Fields that are booleans: Redis writes Go bools as "1"/"0".
BOOL_FIELDS = frozenset({"success", "super_admin"})
# Fields that are integers but arrive as decimal strings in Redis flat form.
INT_FIELDS = frozenset({"total", "offset", "limit"})
# Fields that are JSON objects; eras A/B published them as a JSON string (Redis) or base64 (NATS).
OBJECT_FIELDS = frozenset({"metadata", "private_metadata", "public_metadata"})
# Fields that hold JSON when they can; kept as a string when they are not JSON
# (device content may be anything).
LENIENT_JSON_FIELDS = frozenset({"content"})

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_TRUE = frozenset({"1", "true", "t", "yes"})
_FALSE = frozenset({"0", "false", "f", "no", ""})


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return str(value)


def to_list(value: Any) -> list[Any]:
    """``"[a,b]"``, ``"[a, b]"``, ``'["a","b"]'``, ``"a, b, c"`` or a list → a list of items."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    text = _text(value).strip()
    if not text:
        return []
    if text.startswith("["):
        if '"' in text:  # a JSON array; "[a,b]" (no quotes) is not JSON: skip the failing parse
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        text = text[1:-1] if text.endswith("]") else text[1:]
    return [item.strip().strip('"') for item in text.split(",") if item.strip()]


def to_bool(value: Any) -> bool:
    """``True``/``False``, ``1``/``0``, ``"1"``/``"0"``, ``"true"``/``"false"`` → bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def to_int(value: Any) -> int:
    """An int, or a decimal string of one → int."""
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = _text(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not an integer: {value!r}") from None


_STATE_WORDS = {"inactive": 0, "active": 1}


def to_state(value: Any) -> int:
    """A bootstrap config state: ``0``/``1`` (int or decimal string, what State.String() writes
    at every tag read, strconv.Itoa) or the word ``Inactive``/``Active`` → int."""
    if isinstance(value, str) and value[:1].isalpha():
        state = _STATE_WORDS.get(value.strip().lower())
        if state is None:
            raise ValueError(f"not a state: {value!r}")
        return state
    return to_int(value)


def _json_or_base64(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    if len(text) % 4 == 0 and _BASE64.match(text):
        try:
            return json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            pass
    raise ValueError("neither JSON nor base64-encoded JSON")


def to_object(value: Any) -> dict[str, Any]:
    """A dict, a JSON-object string (``"{}"``) or base64 JSON (``"e30="``) → dict."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    text = _text(value).strip()
    if not text:
        return {}
    parsed = _json_or_base64(text)
    if isinstance(parsed, str):  # JSON of a JSON string: a []byte marshalled twice
        parsed = _json_or_base64(parsed)
    if not isinstance(parsed, dict):
        raise ValueError(f"not a JSON object: {type(parsed).__name__}")
    return parsed


def to_lenient_json(value: Any) -> Any:
    """JSON text → its value; anything that is not JSON is kept as it is."""
    if not isinstance(value, str | bytes):
        return value
    text = _text(value)
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(LIST_FIELDS, to_list),
    **dict.fromkeys(BOOL_FIELDS, to_bool),
    **dict.fromkeys(INT_FIELDS, to_int),
    "state": to_state,
    **dict.fromkeys(OBJECT_FIELDS, to_object),
    **dict.fromkeys(LENIENT_JSON_FIELDS, to_lenient_json),
}


def normalise_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Every field normalised by its name; unknown fields pass through (bytes decoded to text).

    Raises ``ValueError`` whose message starts with the field name.
    """
    out: dict[str, Any] = {}
    for name, value in raw.items():
        fn = _NORMALISERS.get(name)
        if fn is None:
            out[name] = _text(value) if isinstance(value, bytes | bytearray) else value
            continue
        try:
            out[name] = fn(value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"field {name!r}: {exc}") from None
    return out
