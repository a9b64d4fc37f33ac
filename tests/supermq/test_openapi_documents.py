"""The simulator's own OpenAPI documents: exactly the operations it serves, each one what SuperMQ's
real document says (checked where the reference copy is beside the checkout, as in CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reactor.supermq.simulator.contract import (
    HEAD_OPENAPI_DIR,
    HEAD_SERVICES,
    OPENAPI_DIR,
    REQUEST_DEVIATIONS,
    SERVICES,
)
from reactor.supermq.simulator.contract_head import HEAD_REQUEST_DEVIATIONS, HEAD_UNDOCUMENTED
from reactor.supermq.simulator.handlers import routes
from reactor.supermq.simulator.state import State
from tests.conftest import shared

METHODS = ("get", "put", "post", "delete", "patch")
#: Words for people, not facts a validator checks.
PROSE = frozenset({"description", "summary", "example", "examples", "tags", "externalDocs", "title"})


def _document(directory: Path, service: str) -> dict[str, Any]:
    [path] = [p for p in (directory / f"{service}.yml", directory / f"{service}.yaml") if p.is_file()]
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def _facts(document: dict[str, Any], node: Any, directory: Path) -> Any:
    """``node`` with every reference resolved and the prose left out."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name, _, pointer = ref.partition("#")
            target: Any = (
                document if not name else yaml.safe_load(_referred(directory, name).read_text("utf-8"))
            )
            for part in filter(None, pointer.split("/")):
                target = target[part]
            return _facts(document, target, directory)
        return {k: _facts(document, v, directory) for k, v in node.items() if k not in PROSE}
    if isinstance(node, list):
        return [_facts(document, item, directory) for item in node]
    return node


def _referred(directory: Path, name: str) -> Path:
    """A document another refers to. SuperMQ HEAD's clients and channels documents refer to
    ``auth.yaml`` for the DomainID parameter, which the reference set lacks: the package's copy of
    that one parameter (absmach/supermq 791e084 apidocs/openapi/auth.yaml) stands in for it."""
    path = directory / name
    return path if path.is_file() else HEAD_OPENAPI_DIR / name


def _operations(
    directory: Path, service: str, only: set[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Any]:
    """(method, path) → the operation's facts: parameters (the path's too), security, bodies.
    With ``only``, just those operations (the real users document refers to files it lacks)."""
    document = _document(directory, service)
    found = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item and (only is None or (method, path) in only):
                operation = dict(item[method])
                operation["parameters"] = item.get("parameters", []) + operation.get("parameters", [])
                operation["security"] = operation.get("security", document.get("security"))
                found[method, path] = _facts(document, operation, directory)
    schemes = _facts(document, document.get("components", {}).get("securitySchemes", {}), directory)
    for operation in found.values():
        used = {name for requirement in operation["security"] or [] for name in requirement}
        operation["schemes"] = {name: schemes[name] for name in sorted(used)}
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_the_documents_cover_exactly_what_the_simulator_serves(service: str) -> None:
    served = {(r.method.lower(), r.path) for r in routes(service, State())}
    off_the_spec = {  # routes the real document does not list either (REQUEST_DEVIATIONS says why)
        (method, path.replace("{subtopic}", "{subtopic:.+}"))
        for (s, method, path), (errors, _) in REQUEST_DEVIATIONS.items()
        if s == service and "PathNotFound" in errors
    }
    assert set(_operations(OPENAPI_DIR, service)) == served - off_the_spec


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_is_what_the_real_document_says(service: str) -> None:
    ours = _operations(OPENAPI_DIR, service)
    real = _operations(shared("reference", "openapi", "magistrala-v0.14.0"), service, set(ours))
    for key, operation in ours.items():
        assert key in real, f"{service}: {key} is not in the real document"
        for part in sorted(set(operation) | set(real[key])):
            assert operation.get(part) == real[key].get(part), f"{service} {key}: {part} differs"


@pytest.mark.parametrize("service", HEAD_SERVICES)
def test_the_head_documents_cover_exactly_what_the_clients_simulator_serves(service: str) -> None:
    served = {(r.method.lower(), r.path) for r in routes(service, State(profile="clients"))}
    off_the_spec = {
        (method, path)
        for (s, method, path), (errors, _) in HEAD_REQUEST_DEVIATIONS.items()
        if s == service and "PathNotFound" in errors
    }
    assert served, f"{service}: the clients simulator serves nothing"
    assert set(_operations(HEAD_OPENAPI_DIR, service)) == served - off_the_spec


@pytest.mark.parametrize("service", HEAD_SERVICES)
def test_every_head_operation_is_what_the_real_document_says(service: str) -> None:
    ours = _operations(HEAD_OPENAPI_DIR, service)
    real = _operations(shared("reference", "openapi", "supermq-head"), service, set(ours))
    for key, operation in ours.items():
        assert key in real, f"{service}: {key} is not in the real document"
        for part in sorted(set(operation) | set(real[key])):
            assert operation.get(part) == real[key].get(part), f"{service} {key}: {part} differs"


def test_every_undocumented_head_behaviour_names_an_operation_the_simulator_serves() -> None:
    """contract_head.HEAD_UNDOCUMENTED explains behaviours of served operations, each with a source."""
    served = {
        (service, r.method.lower(), r.path)
        for service in HEAD_SERVICES
        for r in routes(service, State(profile="clients"))
    }
    assert HEAD_UNDOCUMENTED
    for key, why in HEAD_UNDOCUMENTED.items():
        assert key in served, f"{key} is not served by the clients simulator"
        assert ".go" in why, f"{key}: no source named"
