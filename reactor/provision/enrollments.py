"""Enrollments: the devices the reactor may provision, and the external key each must present.

Two kinds, read from TOML or CSV files named by ``provision.enrollments``:

- an **individual enrollment** names one ``external_id``, its external key and a template;
- an **enrollment group** names an ``external_id`` pattern (a shell glob, ``fnmatch``) and a
  group secret; each device's external key is *derived*, so a factory can flash keys without
  sending a list::

      key = lowercase hex( HMAC-SHA256(key = UTF-8(group secret), msg = UTF-8(external_id)) )

  (``encoding = "hex"``, 64 characters), or, with ``encoding = "dps"``, as Azure DPS derives
  symmetric keys: the secret is base64-decoded and the key is standard base64 of the MAC.

A key or secret is never written in clear next to the rules: it comes from ``*_env`` (an
environment variable) or ``*_file`` (a file whose first line is the value); a clear
``external_key`` is accepted only in an enrollment file outside the rules directory. Keys are
held as ``SecretStr`` and shown masked everywhere (``mask``).
"""

from __future__ import annotations

import base64
import binascii
import csv
import fnmatch
import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from reactor.errors import ConfigError

Encoding = Literal["hex", "dps"]
#: Columns of a CSV enrollment file besides the optional fields (``field.<name>`` columns).
_CSV_KEYS = ("external_id", "external_key", "external_key_env", "external_key_file", "template")


def mask(secret: str) -> str:
    """How a key is shown: its length only (never a prefix: keys may be short)."""
    return f"***({len(secret)} chars)" if secret else ""


def derive_key(secret: str, external_id: str, encoding: Encoding = "hex") -> str:
    """The external key of ``external_id`` in a group with ``secret`` (see the module doc)."""
    if encoding == "dps":
        try:
            raw = base64.b64decode(secret, validate=True)
        except binascii.Error as exc:
            raise ConfigError('enrollment group secret is not base64 (encoding = "dps")') from exc
        return base64.b64encode(hmac.new(raw, external_id.encode(), hashlib.sha256).digest()).decode()
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Enrollment:
    """What applies to one device: its key, the template and the template's fields."""

    external_id: str
    external_key: SecretStr
    template: str
    fields: dict[str, Any]
    #: Where it comes from: ``file:line`` and, for a group, ``group <name>``.
    source: str

    def describe(self) -> dict[str, Any]:
        """For ``reactor enroll check`` and the audit trail: the key masked."""
        return {
            "external_id": self.external_id,
            "external_key": mask(self.external_key.get_secret_value()),
            "template": self.template,
            "fields": self.fields,
            "source": self.source,
        }


@dataclass(frozen=True)
class Group:
    name: str
    pattern: str
    secret: SecretStr
    template: str
    encoding: Encoding
    fields: dict[str, Any]
    source: str

    def enrollment(self, external_id: str) -> Enrollment:
        key = derive_key(self.secret.get_secret_value(), external_id, self.encoding)
        fields = dict(self.fields)
        return Enrollment(
            external_id, SecretStr(key), self.template, fields, f"{self.source} group {self.name!r}"
        )


@dataclass
class Enrollments:
    """Every enrollment loaded; individual enrollments win over groups, groups in file order."""

    individual: dict[str, Enrollment] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)

    def find(self, external_id: str) -> Enrollment | None:
        found = self.individual.get(external_id)
        if found is not None:
            return found
        for group in self.groups:
            if fnmatch.fnmatchcase(external_id, group.pattern):
                return group.enrollment(external_id)
        return None

    def why_not(self, external_id: str) -> str:
        """Why ``find`` answers None, for the audit trail."""
        return (
            f"external id {external_id!r} is not enrolled: no individual enrollment and no group pattern "
            f"matches ({len(self.individual)} enrollments, {len(self.groups)} groups loaded)"
        )

    def __len__(self) -> int:
        return len(self.individual) + len(self.groups)


def _secret(raw: dict[str, Any], name: str, where: str, *, clear_ok: bool) -> SecretStr:
    """``name`` from ``name_env``, ``name_file`` or (``clear_ok``) ``name`` itself."""
    env, path = raw.get(f"{name}_env"), raw.get(f"{name}_file")
    given = [k for k in (name, f"{name}_env", f"{name}_file") if raw.get(k)]
    if len(given) != 1:
        raise ConfigError(
            f"{where}: give exactly one of {name}_env, {name}_file" + ("" if not clear_ok else f", {name}")
        )
    if env:
        value = os.environ.get(str(env), "")
        if not value:
            raise ConfigError(f"{where}: {name}_env names {env!r}, which is not set or empty")
    elif path:
        try:
            value = Path(str(path)).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: {name}_file {path!r} cannot be read: {type(exc).__name__}") from None
    else:
        if not clear_ok:
            raise ConfigError(f"{where}: {name} in clear is not allowed here; use {name}_env or {name}_file")
        value = str(raw[name])
    return SecretStr(value)


def _lines_of(text: str, header: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == header]


def _load_toml(path: Path, out: Enrollments, clear_ok: bool) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - {"enrollment", "group"}
    if unknown:
        raise ConfigError(f"{path}: unknown tables {sorted(unknown)} (expected [[enrollment]], [[group]])")
    lines = _lines_of(text, "[[enrollment]]")
    for index, raw in enumerate(data.get("enrollment", [])):
        where = f"{path}:{lines[index] if index < len(lines) else '?'}"
        _check_keys(
            raw,
            {"external_id", "external_key", "external_key_env", "external_key_file", "template", "fields"},
            where,
        )
        _add(out, _individual(raw, where, clear_ok), where)
    glines = _lines_of(text, "[[group]]")
    for index, raw in enumerate(data.get("group", [])):
        where = f"{path}:{glines[index] if index < len(glines) else '?'}"
        _check_keys(
            raw,
            {"name", "pattern", "secret_env", "secret_file", "secret", "template", "encoding", "fields"},
            where,
        )
        out.groups.append(_group(raw, where))


def _check_keys(raw: Any, allowed: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an enrollment must be a table")
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} is required (a non-empty string)")
    return value


def _fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: fields must be a table")
    return fields


def _individual(raw: dict[str, Any], where: str, clear_ok: bool) -> Enrollment:
    key = _secret(raw, "external_key", where, clear_ok=clear_ok)
    return Enrollment(
        _text(raw, "external_id", where), key, _text(raw, "template", where), _fields(raw, where), where
    )


def _group(raw: dict[str, Any], where: str) -> Group:
    encoding = raw.get("encoding", "hex")
    if encoding not in ("hex", "dps"):
        raise ConfigError(f'{where}: encoding must be "hex" or "dps", not {encoding!r}')
    secret = _secret(raw, "secret", where, clear_ok=False)
    if encoding == "dps":
        derive_key(secret.get_secret_value(), "", "dps")  # a secret that is not base64 fails here, at load
    name = _text(raw, "name", where)
    return Group(
        name,
        _text(raw, "pattern", where),
        secret,
        _text(raw, "template", where),
        encoding,
        _fields(raw, where),
        where,
    )


def _add(out: Enrollments, enrollment: Enrollment, where: str) -> None:
    first = out.individual.get(enrollment.external_id)
    if first is not None:
        raise ConfigError(
            f"{where}: external id {enrollment.external_id!r} enrolled twice (first at {first.source})"
        )
    out.individual[enrollment.external_id] = enrollment


def _load_csv(path: Path, out: Enrollments, clear_ok: bool) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        unknown = [c for c in columns if c not in _CSV_KEYS and not c.startswith("field.")]
        if unknown:
            raise ConfigError(f"{path}:1: unknown columns {unknown} (fields go in field.<name> columns)")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            raw: dict[str, Any] = {k: v for k, v in row.items() if k in _CSV_KEYS and v}
            raw["fields"] = {k[6:]: v for k, v in row.items() if k and k.startswith("field.") and v}
            _add(out, _individual(raw, where, clear_ok), where)


def load_enrollments(paths: list[Path], rules_dir: Path | None = None) -> Enrollments:
    """Every enrollment file (``.toml`` or ``.csv``); ``ConfigError`` naming file:line on the first
    problem. A clear key is refused in a file inside ``rules_dir``."""
    out = Enrollments()
    for path in paths:
        clear_ok = rules_dir is None or not path.resolve().is_relative_to(rules_dir.resolve())
        try:
            if path.suffix == ".csv":
                _load_csv(path, out, clear_ok)
            else:
                _load_toml(path, out, clear_ok)
        except OSError as exc:
            raise ConfigError(
                f"provision.enrollments: {path} cannot be read: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"provision.enrollments: {path} is not UTF-8") from None
    return out
