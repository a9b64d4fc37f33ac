"""Checking requests and responses against SuperMQ's OpenAPI specs, with openapi-core.

The documents are the package's own (``openapi/<service>.yml``): the operations the client calls,
as Magistrala v0.14.0's OpenAPI documents state them (paths, methods, parameters, security, status
codes, schemas), so the checks are on wherever the simulator runs. The test suite holds each of
them to the real document where it has one (tests/supermq/test_openapi_documents.py).
Where SuperMQ's code answers differently from its spec, the simulator follows the code; each such
place is listed in ``DEVIATIONS`` with its source, and only that (operation, status) pair is
exempt from response validation. Every other request and response must validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from multidict import CIMultiDict
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from reactor.redact import redact_text
from reactor.supermq.simulator.contract_head import HEAD_DEVIATIONS, HEAD_REQUEST_DEVIATIONS

SERVICES = ("users", "things", "bootstrap", "certs", "http")
#: SuperMQ HEAD's services (the clients profile): clients and channels in place of things.
HEAD_SERVICES = ("users", "clients", "channels", "bootstrap", "certs", "http")


def services_of(profile: str) -> tuple[str, ...]:
    """The services a simulator of ``profile`` runs, each on its own port."""
    return HEAD_SERVICES if profile == "clients" else SERVICES


_FACTS = "supermq-facts.md"


def _d(service: str, method: str, path: str, status: int, why: str) -> tuple[tuple[str, str, str, int], str]:
    return (service, method, path, status), why


#: (service, method, path template, status the code answers) → why the spec is not followed.
DEVIATIONS: dict[tuple[str, str, str, int], str] = dict(
    [
        _d(
            "http",
            "post",
            "/channels/{id}/messages",
            502,
            "v0.14.0 serves the adapter through mproxy v0.4.2 (cmd/http/main.go; mproxy pkg/http/http.go "
            "Handler answers a request without Authorization 502); the spec lists 202/400/401/404/415",
        ),
        _d(
            "bootstrap",
            "get",
            "/things/bootstrap/{externalId}",
            200,
            "the spec lists channels as strings; the code (bootstrap/api/responses.go bootstrapRes, "
            "v0.14.0) serves channel objects {id, name, metadata}, as the real Mainflux does",
        ),
        _d(
            "users",
            "post",
            "/users/tokens/issue",
            201,
            f"users/api/responses.go: tokenRes.Code() is 201; the spec says 200 ({_FACTS} §4.1)",
        ),
        _d(
            "users",
            "post",
            "/users/tokens/refresh",
            201,
            f"users/api/responses.go: tokenRes.Code() is 201; the spec says 200 ({_FACTS} §4.1)",
        ),
        _d(
            "users",
            "post",
            "/users/tokens/refresh",
            401,
            "auth/jwt/tokenizer.go Parse: a token that is no JWT of auth's is errors.ErrAuthentication, "
            "which internal/api/common.go EncodeError answers 401; the spec lists 200/404/422/500",
        ),
        _d(
            "bootstrap",
            "get",
            "/things/configs/{configId}",
            200,
            "bootstrap/api/responses.go channelRes: a channel without metadata is stored as null "
            '(bootstrap/postgres/configs.go toDBChannel) and served as "metadata": null; the spec\'s '
            "channel metadata is an object",
        ),
        *(
            _d(
                "bootstrap",
                method,
                path,
                503,
                f"bootstrap/service.go {func}: a refusal from things is ErrThings, which "
                f"bootstrap/api/transport.go encodeError answers 503; the spec does not list it",
            )
            for method, path, func in (
                ("post", "/things/configs", "Add (an unknown thing id)"),
                ("put", "/things/state/{configId}", "ChangeState (a pair connected already: 409)"),
                ("put", "/things/configs/connections/{configId}", "UpdateConnections"),
            )
        ),
        _d(
            "bootstrap",
            "post",
            "/things/configs",
            409,
            "bootstrap/postgres/configs.go Save: a thing or external id with a config already breaks a "
            "UNIQUE constraint (ErrConflict, 409); the spec lists 201/400/401/415/500",
        ),
        *(
            _d(
                "things",
                method,
                path,
                403,
                f"{source}: an id that does not exist has no permission in SpiceDB "
                f"(errors.ErrAuthorization, 403 in internal/api/common.go EncodeError) before any "
                f"lookup; the spec says 404",
            )
            for method, path, source in (
                ("get", "/things/{thingID}", "things/service.go ViewClient"),
                ("post", "/things/{thingID}/enable", "things/service.go changeClientStatus"),
                ("post", "/things/{thingID}/disable", "things/service.go changeClientStatus"),
                ("post", "/connect", "internal/groups/service.go Assign (a channel gone)"),
                ("post", "/disconnect", "internal/groups/service.go Unassign (a channel gone)"),
                ("get", "/channels/{chanID}", "internal/groups/service.go ViewGroup"),
            )
        ),
        _d(
            "bootstrap",
            "put",
            "/things/state/{configId}",
            200,
            f"bootstrap/api/responses.go: stateRes.Code() is 200; the spec says 204 ({_FACTS} §2.1)",
        ),
        _d(
            "bootstrap",
            "patch",
            "/things/configs/certs/{configId}",
            200,
            "bootstrap/api/responses.go: updateConfigRes is {thing_id, client_cert, client_key, ca_cert}; "
            f"the spec's ConfigUpdateCerts also requires thing_key, channels, content ({_FACTS} §2.1)",
        ),
        _d(
            "things",
            "post",
            "/connect",
            201,
            f"things/api/http/responses.go: connect answers 201 with an empty body; the spec declares a "
            f"PoliciesPage body ({_FACTS} §4.2)",
        ),
        _d(
            "certs",
            "post",
            "/certs",
            201,
            "certs/api/responses.go: issue answers 201 with thing_id, client_cert, client_key, cert_serial, "
            f"expiration; the spec declares no body ({_FACTS} §4.3)",
        ),
    ]
)

#: (service, method, path template) → (the request errors the code does not make, why).
REQUEST_DEVIATIONS: dict[tuple[str, str, str], tuple[tuple[str, ...], str]] = {
    ("users", "post", "/users/tokens/issue"): (
        ("SecurityValidationError",),
        "users.yml puts the whole API under bearerAuth/refreshAuth, token issue included; logging in "
        "cannot need a token, and users/api/transport.go reads none for it",
    ),
    ("certs", "get", "/certs/{certID}"): (
        ("InvalidParameter",),
        "certs.yml gives certID format uuid, but it is a certificate serial (hex pairs) in "
        "certs/api/transport.go and in what POST /certs returns as cert_serial",
    ),
    ("http", "post", "/channels/{id}/messages/{subtopic}"): (
        ("PathNotFound", "SecurityValidationError"),
        "http/api/transport.go routes /channels/{id}/messages/* (subtopics); the spec lists only "
        "/channels/{id}/messages",
    ),
    **dict.fromkeys(
        [("http", "post", "/channels/{id}/messages"), ("bootstrap", "get", "/things/bootstrap/{externalId}")],
        (
            ("SecurityValidationError",),
            "the spec declares an HTTP bearer scheme but describes, and the code reads "
            "(internal/apiutil/token.go), 'Authorization: Thing <key>'",
        ),
    ),
}


#: The package's OpenAPI documents, one per service (SuperMQ HEAD's in ``supermq-head/``).
OPENAPI_DIR = Path(__file__).resolve().parent / "openapi"
HEAD_OPENAPI_DIR = OPENAPI_DIR / "supermq-head"


@dataclass(frozen=True)
class Violation:
    service: str
    method: str
    path: str
    status: int | None
    kind: str  # "request" or "response"
    error: str


class _Request:
    """openapi-core's Request protocol over plain data."""

    def __init__(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: CIMultiDict[str],
        body: bytes | None,
    ) -> None:
        self.host_url = "http://localhost"
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self.content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(list(headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        self.status_code = status
        self.data = body
        self.content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        self.headers = Headers(list(headers.items()))


class Contract:
    """One OpenAPI document per service; validates exchanges and records violations."""

    def __init__(self, directory: Path | None = None, *, profile: str = "things") -> None:
        head = profile == "clients"
        self.directory = directory or (HEAD_OPENAPI_DIR if head else OPENAPI_DIR)
        self.violations: list[Violation] = []
        #: The code's answers that differ from the spec, for the era checked (with their sources).
        self.deviations = HEAD_DEVIATIONS if head else DEVIATIONS
        self.request_deviations = HEAD_REQUEST_DEVIATIONS if head else REQUEST_DEVIATIONS
        self.deviations_seen: set[tuple[str, str, str, int]] = set()
        self.request_deviations_seen: set[tuple[str, str, str]] = set()
        self._specs = _load_all(self.directory, services_of(profile))

    def check(
        self,
        service: str,
        method: str,
        path: str,
        template: str,
        query: list[tuple[str, str]],
        req_headers: CIMultiDict[str],
        body: bytes | None,
    ) -> str | None:
        """Validate a request; None when valid, else the error (recorded)."""
        spec = self._specs.get(service)
        if spec is None:
            return None
        result = spec.unmarshal_request(_Request(method, path, query, req_headers, body))
        errors = result.errors
        allowed = self.request_deviations.get((service, method.lower(), template))
        if errors and allowed and all(type(e).__name__ in allowed[0] for e in errors):
            self.request_deviations_seen.add((service, method.lower(), template))
            errors = []
        if not errors:
            return None
        error = "; ".join(_describe(e) for e in errors)
        self.violations.append(Violation(service, method, path, None, "request", error))
        return error

    def check_response(
        self,
        service: str,
        method: str,
        path: str,
        template: str,
        query: list[tuple[str, str]],
        req_headers: CIMultiDict[str],
        body: bytes | None,
        status: int,
        resp_headers: CIMultiDict[str],
        resp_body: bytes,
    ) -> None:
        """Validate a response unless it is a listed deviation (which is then marked as seen)."""
        spec = self._specs.get(service)
        if spec is None:
            return
        key = (service, method.lower(), template, status)
        if key in self.deviations:
            self.deviations_seen.add(key)
            return
        undocumented = self.request_deviations.get((service, method.lower(), template))
        if undocumented and "PathNotFound" in undocumented[0]:
            return  # a path the spec does not list has no response to check against
        result = spec.unmarshal_response(
            _Request(method, path, query, req_headers, body), _Response(status, resp_headers, resp_body)
        )
        if result.errors:
            error = "; ".join(_describe(e) for e in result.errors)
            self.violations.append(Violation(service, method, path, status, "response", error))


@lru_cache(maxsize=4)
def _load_all(directory: Path, services: tuple[str, ...]) -> dict[str, OpenAPI]:
    """The parsed specs of one directory, shared by every Contract (parsing takes most of a second)."""
    return {service: _load(directory / f"{service}.yml") for service in services}


def _load(path: Path) -> OpenAPI:
    spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["servers"] = [{"url": "/"}]  # match any host: the simulator listens on free ports
    _drop_url_format(spec)
    return OpenAPI.from_dict(spec, base_uri=path.resolve().as_uri())


def _drop_url_format(node: Any) -> None:
    """things.yml gives its ``Location`` headers ``format: url``, no format JSON Schema or
    openapi-core knows (``uri`` is, but the value is relative): read as a plain string."""
    if isinstance(node, dict):
        if node.get("format") == "url":
            del node["format"]
        for value in node.values():
            _drop_url_format(value)
    elif isinstance(node, list):
        for value in node:
            _drop_url_format(value)


def _describe(exc: Exception) -> str:
    cause = exc.__cause__
    detail = f" ({type(cause).__name__}: {str(cause)[:300]})" if cause else ""
    return redact_text(f"{type(exc).__name__}: {exc}{detail}")
