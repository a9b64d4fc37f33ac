"""Where SuperMQ HEAD's code answers differently from its OpenAPI documents (the clients profile).

Read at absmach/supermq 791e084 (2026-04-03) and absmach/certs 5d65013 (2026-04-06); the
documents are ``apidocs/openapi/*.yaml`` at the same commit (our copies of the operations we
call: openapi/supermq-head/). The simulator follows the code; each place is listed with its source, and only
that (operation, status) pair, or those request errors, are exempt from validation.
"""

from __future__ import annotations

_CLIENT_SCHEME = (
    ("SecurityValidationError",),
    "the document declares an HTTP bearer scheme but describes, and the code reads, "
    "'Authorization: Client <key>' (pkg/sdk/sdk.go ClientPrefix; bootstrap/api/transport.go "
    "decodeBootstrapRequest reads the header after it)",
)

#: (service, method, path template, status the code answers) → why the document is not followed.
HEAD_DEVIATIONS: dict[tuple[str, str, str, int], str] = {
    ("users", "post", "/users/tokens/refresh", 201): (
        "users/api/responses.go: tokenRes.Code() is 201 for the refresh as for the login; the "
        "document says 200"
    ),
    ("bootstrap", "get", "/clients/bootstrap/{externalId}", 200): (
        "bootstrap/reader.go bootstrapRes is {client_id, client_secret, channels (objects {id, name, "
        "metadata}), content, client_cert, client_key, ca_cert}; the document's BootstrapConfig "
        "requires client_key and lists channels as strings"
    ),
    ("bootstrap", "patch", "/{domainID}/clients/configs/certs/{configID}", 200): (
        "bootstrap/api/responses.go updateConfigRes is {client_id, ca_cert, client_cert, client_key}, "
        "each omitempty; the document's ConfigUpdateCerts also requires channels and content"
    ),
    ("bootstrap", "put", "/{domainID}/clients/state/{configID}", 200): (
        "bootstrap/api/responses.go: stateRes.Code() is 200; the document says 204"
    ),
    ("channels", "post", "/{domainID}/channels/disconnect", 204): (
        "channels/api/http/responses.go: disconnectRes.Code() is 204; the document says 201"
    ),
}

#: (service, method, path template) → (the request errors the code does not make, why).
HEAD_REQUEST_DEVIATIONS: dict[tuple[str, str, str], tuple[tuple[str, ...], str]] = {
    ("users", "post", "/users/tokens/issue"): (
        ("SecurityValidationError",),
        "users.yaml puts the whole API under bearerAuth, token issue included; logging in cannot "
        "need a token, and users/api/users.go mounts /users/tokens/issue outside the authn middleware",
    ),
    ("bootstrap", "get", "/clients/bootstrap/{externalId}"): _CLIENT_SCHEME,
    ("http", "post", "/m/{domainPrefix}/c/{channelPrefix}"): _CLIENT_SCHEME,
}

#: Where the code serves more than the document says, without the validator objecting (so no
#: exemption is needed above); listed so the simulator's behaviour has its source.
HEAD_UNDOCUMENTED: dict[tuple[str, str, str], str] = {
    ("bootstrap", "get", "/{domainID}/clients/configs"): (
        "bootstrap/api/transport.go parseFilter: external_id, client_id, client_key and state match "
        "whole, name in part; the document lists only limit, offset, state and name (find_config "
        "filters by external_id)"
    ),
    ("bootstrap", "post", "/{domainID}/clients/configs"): (
        "bootstrap/api/requests.go addReq reads client_id (the document's ConfigCreateReq too); a "
        "thing_id is ignored and bootstrap's Add would create a new client for the config "
        "(service.go client(): an empty id creates one), so the clients profile renames it"
    ),
    ("clients", "delete", "/{domainID}/clients/{clientID}"): (
        "clients/service.go Delete sets the status to deleted after removing the client's "
        "connections; the default listing (status enabled) no longer has it"
    ),
}
