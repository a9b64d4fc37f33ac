"""Helpers for rule tests: an event, a registry, rules from TOML text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reactor.actions.base import ActionRegistry
from reactor.app import build_registry
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.ops.logging import get_logger
from reactor.rules.loader import load_rules
from reactor.rules.ruleset import RuleSet
from reactor.settings import load_settings
from reactor.supermq.client import SuperMQClient


def registry() -> ActionRegistry:
    settings = load_settings(None)
    return build_registry(settings, get_logger("test"), SuperMQClient(settings.supermq))


def event(fields: dict[str, Any], stream: str = "supermq.bootstrap", entry_id: str = "1-0") -> Event:
    return Decoder().decode(fields, source="test", stream=stream, entry_id=entry_id)


def rules_from(tmp_path: Path, text: str, name: str = "r.toml") -> RuleSet:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return load_rules(directory, registry())
