"""Secrets as a type of their own, and the sealing of the ones that must be kept.

A ``Secret`` is a value (a private key, a thing key, an external key, a token, a password) from
the moment it is decoded until an action parameter declared to accept it (``Action.secret_params``)
sends it to SuperMQ. It is not a ``str``: nothing can turn it into text by accident. ``str()``,
``repr()``, ``format()``, ``%``, ``+``, slicing, iteration and every string method on it yield
the mask ``***``; so do Jinja's filters (they go through ``str()``), and so does rendering it into
any parameter that is not secret-accepting (``reveal_params``). Equality and hashing use the
value, so conditions such as ``event.token == other`` still work. Only ``reveal`` (not reachable
from templates: the sandbox refuses every attribute of a Secret but the string methods) gives
the value back.

Kept secrets (a step result the next delivery needs, the original payload of a dead-letter
record for replay) are *sealed*: encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under the key
of ``[secrets]`` in the settings (``Sealer``). What is sealed never appears in clear in a store.

This module is a leaf: events, rules, actions, delivery and ops import it; it imports nothing of
the reactor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

MASK = "***"
#: What marks a sealed value in JSON (state store results): ``{"$sealed": "<Fernet token>"}``.
SEALED = "$sealed"
#: The string methods a template may call on a Secret: each yields the mask.
_STR_METHODS = frozenset(name for name in dir(str) if not name.startswith("_"))


def _masked(*_: Any, **__: Any) -> str:
    return MASK


class Secret:
    """A secret value: shown as ``***`` by every means but ``reveal``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that sends it (a secret-accepting parameter)."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return isinstance(other, str) and self._value == other

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __getitem__(self, _: Any) -> str:
        return MASK

    def __iter__(self) -> Iterator[str]:
        return iter((MASK,))

    def __reversed__(self) -> Iterator[str]:
        return iter((MASK,))

    def __contains__(self, _: object) -> bool:
        return False

    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _masked

    def __getattr__(self, name: str) -> Callable[..., str]:
        if name in _STR_METHODS:  # ``secret.lower()``, ``secret.replace(...)``: the mask
            return _masked
        raise AttributeError(name)

    def __copy__(self) -> Secret:  # immutable: a copy is itself (not the pickled form below)
        return self

    def __deepcopy__(self, memo: Any) -> Secret:
        return self

    def __reduce__(self) -> Any:  # never pickled with its value
        return (Secret, (MASK,))


def is_string_method(name: str) -> bool:
    """Whether ``name`` is a string method (the only attributes of a Secret templates may reach)."""
    return name in _STR_METHODS


def reveal(value: Any) -> Any:
    """``value`` with every Secret in it (nested in lists and dicts) replaced by its value."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """``value`` with every Secret in it replaced by the mask (what a plain parameter gets)."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def contains_secret(value: Any) -> bool:
    """Whether a Secret sits anywhere in ``value`` (lists and dicts walked)."""
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_secret(v) for v in value)
    return False


def revealed_values(value: Any, _depth: int = 0) -> frozenset[str]:
    """The values of the Secrets in ``value`` (lists and dicts walked): for masking by value the
    text that is not a Secret (an error message that quotes a key an action was given)."""
    if isinstance(value, Secret):
        return frozenset((value.reveal(),))
    if _depth > 64:
        return frozenset()
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return frozenset()
    found: frozenset[str] = frozenset()
    for item in items:
        found |= revealed_values(item, _depth + 1)
    return found


def wrap_named(value: Any, is_secret_name: Callable[[str], bool], _depth: int = 0) -> Any:
    """``value`` with the text under every secret-named key a Secret (an action's result:
    ``client_key`` of ``certs.issue``, ``thing_key`` of ``bootstrap.view_config``)."""
    if _depth > 64:
        return value
    if isinstance(value, dict):
        return {
            k: Secret(v)
            if isinstance(v, str) and v and is_secret_name(str(k))
            else wrap_named(v, is_secret_name, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [wrap_named(v, is_secret_name, _depth + 1) for v in value]
    return value


class SealError(Exception):
    """A sealed value that this key cannot open (sealed under another key, or altered)."""


class Sealer:
    """Encrypts and decrypts kept secrets under one Fernet key (``[secrets]`` of the settings).

    ``ephemeral``: no key was configured, one was made for this process (what it seals cannot be
    opened by another process, nor after a restart)."""

    __slots__ = ("_fernet", "ephemeral")

    def __init__(self, key: bytes | str | None = None) -> None:
        self.ephemeral = not key
        self._fernet = Fernet(key or Fernet.generate_key())

    @classmethod
    def from_config(cls, key: str, key_file: Path | None) -> Sealer:
        """The key given, else the one in ``key_file`` (made, mode 0600, when it does not exist),
        else an ephemeral one. ``ValueError`` naming the setting when a key is not a Fernet key."""
        where = "secrets.key"
        if not key and key_file is not None:
            where = f"secrets.key_file ({key_file})"
            try:
                key = _read_or_make(key_file)
            except OSError as exc:
                raise ValueError(f"{where}: {exc.strerror or exc}") from None
        try:
            return cls(key or None)
        except ValueError:
            raise ValueError(f"{where}: not a Fernet key (32 url-safe base64-encoded bytes)") from None

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8", "surrogatepass")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8", "surrogatepass")
        except (InvalidToken, ValueError, UnicodeError):
            raise SealError("sealed under another key (secrets.key differs), or altered") from None

    def seal_json(self, value: Any) -> str:
        """``value`` as JSON, sealed; never raises (what cannot be encoded is sealed as why not)."""
        try:
            text = json.dumps(value, default=_revealed, sort_keys=True)
        except (ValueError, TypeError, RecursionError) as exc:
            text = json.dumps({"unserialisable": type(exc).__name__})
        return self.seal(text)

    def open_json(self, token: str) -> Any:
        return json.loads(self.open(token))

    def encode(self, result: Any) -> str:
        """A step result as JSON for a store: each Secret in it sealed (``{"$sealed": ...}``)."""
        return json.dumps(result, default=self._seal_secret)

    def _seal_secret(self, value: Any) -> Any:
        if isinstance(value, Secret):
            return {SEALED: self.seal(value.reveal())}
        return str(value)

    def decode(self, text: str, *, strict: bool = False) -> Any:
        """What ``encode`` wrote: sealed values are Secrets again (the mask, when this key cannot
        open them: the value is never guessed; ``strict``: ``SealError`` instead)."""
        return json.loads(text, object_hook=self._open_strict if strict else self._open_secret)

    def _open_secret(self, obj: Mapping[str, Any]) -> Any:
        try:
            return self._open_strict(obj)
        except SealError:
            return Secret(MASK)

    def _open_strict(self, obj: Mapping[str, Any]) -> Any:
        if len(obj) == 1 and SEALED in obj:
            token = obj[SEALED]
            if not isinstance(token, str) or not token:
                raise SealError("recorded without a key: the value was not kept")
            return Secret(self.open(token))
        return obj


def _read_or_make(key_file: Path) -> str:
    """The key in ``key_file``; a new one written there first (mode 0600) when it does not exist."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return key_file.read_text().strip()


def _revealed(value: Any) -> Any:
    return value.reveal() if isinstance(value, Secret) else str(value)
