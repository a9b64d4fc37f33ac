"""Provisioning templates: what an enrolled device gets, one TOML file per template.

A template is named by its file (``templates/sensor.toml`` is ``sensor``) and has::

    activate = true                       # optional (default true): activate the config last

    [thing]                               # the thing: name and metadata, templated
    name = "{{ external_id }}"
    metadata = { site = "{{ fields.site }}" }

    [[channel]]                           # zero or more: created, or reused by exact name
    name = "{{ external_id }}-control"
    metadata = { type = "control" }

    [config]                              # the bootstrap config
    name = "{{ external_id }}"
    content = { broker = "mqtt://broker:1883" }   # a table, stored as JSON text

    [cert]                                # optional: a client certificate from the certs service
    ttl = "2400h"

Strings are sandboxed Jinja, as in rules; they see ``external_id``, ``template`` and ``fields``
(the enrollment's fields), never the external key. Everything is validated at load and every
problem names ``file:line``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.errors import ConfigError, PermanentError
from reactor.rules.expressions import ExpressionError, Template

_TOP = {"activate", "thing", "channel", "config", "cert"}
_SECTIONS: dict[str, set[str]] = {
    "thing": {"name", "metadata"},
    "channel": {"name", "metadata"},
    "config": {"name", "content"},
    "cert": {"ttl"},
}


@dataclass(frozen=True)
class Named:
    """A thing or channel: a templated name and metadata."""

    name: Template
    metadata: Template
    where: str


@dataclass(frozen=True)
class ProvisionTemplate:
    name: str
    thing: Named
    channels: tuple[Named, ...]
    config_name: Template
    content: Template
    cert_ttl: str
    activate: bool
    where: str

    def render(self, context: dict[str, Any]) -> dict[str, Any]:
        """The plan for one device: every string rendered (``PermanentError`` naming the place)."""

        def one(template: Template, where: str) -> Any:
            try:
                return template.render(context)
            except ExpressionError as exc:
                raise PermanentError(f"template {self.name!r} ({where}): {exc}") from None

        content = one(self.content, self.where)
        return {
            "thing": {
                "name": str(one(self.thing.name, self.thing.where)),
                "metadata": one(self.thing.metadata, self.thing.where),
            },
            "channels": [
                {"name": str(one(c.name, c.where)), "metadata": one(c.metadata, c.where)}
                for c in self.channels
            ],
            "config": {
                "name": str(one(self.config_name, self.where)),
                "content": content
                if isinstance(content, str)
                else json.dumps(content, separators=(",", ":"), sort_keys=True),
            },
            "cert": {"ttl": self.cert_ttl} if self.cert_ttl else None,
            "activate": self.activate,
        }


def _line(text: str, header: str, index: int = 0) -> int | None:
    found = [n for n, line in enumerate(text.splitlines(), 1) if line.split("#", 1)[0].strip() == header]
    return found[index] if index < len(found) else None


def _compile(value: Any, where: str, what: str) -> Template:
    try:
        return Template(value)
    except ExpressionError as exc:
        raise ConfigError(f"{where}: {what}: {exc}") from None


def _section(raw: Any, kind: str, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{kind}] must be a table")
    unknown = set(raw) - _SECTIONS[kind]
    if unknown:
        raise ConfigError(f"{where}: unknown keys in [{kind}]: {sorted(unknown)}")
    return raw


def _named(raw: Any, kind: str, where: str) -> Named:
    section = _section(raw, kind, where)
    name = section.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: [{kind}] name is required (a non-empty string)")
    metadata = section.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ConfigError(f"{where}: [{kind}] metadata must be a table")
    return Named(_compile(name, where, f"{kind} name"), _compile(metadata, where, f"{kind} metadata"), where)


def load_template(path: Path) -> ProvisionTemplate:
    """One template file; ``ConfigError`` naming ``file:line`` for anything wrong in it."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{path}:1: unknown keys {sorted(unknown)} (expected {sorted(_TOP)})")

    def at(header: str, index: int = 0) -> str:
        line = _line(text, header, index)
        return f"{path}:{line}" if line is not None else str(path)

    if "thing" not in data:
        raise ConfigError(f"{path}: a template needs a [thing] table")
    thing = _named(data["thing"], "thing", at("[thing]"))
    raw_channels = data.get("channel", [])
    if not isinstance(raw_channels, list):
        raise ConfigError(f"{at('[channel]')}: channels are [[channel]] tables")
    channels = tuple(_named(c, "channel", at("[[channel]]", i)) for i, c in enumerate(raw_channels))
    config = _section(data.get("config", {}), "config", at("[config]"))
    content = config.get("content", {})
    if not isinstance(content, (dict, str)):
        raise ConfigError(f"{at('[config]')}: [config] content must be a table (stored as JSON) or a string")
    cert = _section(data.get("cert", {}), "cert", at("[cert]"))
    ttl = cert.get("ttl", "2400h" if "cert" in data else "")
    if not isinstance(ttl, str):
        raise ConfigError(f'{at("[cert]")}: [cert] ttl must be a string such as "2400h"')
    activate = data.get("activate", True)
    if not isinstance(activate, bool):
        raise ConfigError(f"{path}:{_line_of_key(text, 'activate')}: activate must be true or false")
    return ProvisionTemplate(
        path.stem,
        thing,
        channels,
        _compile(config.get("name", "{{ external_id }}"), at("[config]"), "config name"),
        _compile(content, at("[config]"), "config content"),
        ttl,
        activate,
        str(path),
    )


def _line_of_key(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if line.split("=", 1)[0].strip() == key:
            return number
    return 1


def load_templates(directory: Path) -> dict[str, ProvisionTemplate]:
    """Every ``*.toml`` in ``directory``, by name; every problem of every file reported at once."""
    if not directory.is_dir():
        raise ConfigError(f"provision.templates_dir: {directory} is not a directory")
    found: dict[str, ProvisionTemplate] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            found[path.stem] = load_template(path)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return found
