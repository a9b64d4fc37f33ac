"""The ``clients`` API profile: SuperMQ HEAD, where things became clients and every route sits
under the domain (see ``reactor.supermq.profile`` for the profiles and how one is chosen)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactor.errors import ConfigError, PermanentError
from reactor.supermq.profile import PROFILES, Call, Endpoint, ThingsProfile, _seg


class ClientsProfile(ThingsProfile):
    """SuperMQ HEAD (absmach/supermq 791e084; certs: absmach/certs 5d65013): clients and domains.

    Sources, each read at those commits: users/api/{users,requests}.go (login ``username``/
    ``password``, refresh reads only the bearer), bootstrap/api/transport.go (``/{domainID}/clients/
    configs...``, ``/{domainID}/clients/state/{clientID}``, the device's ``/clients/bootstrap/
    {externalID}`` with ``Authorization: Client <external key>``), clients/api/http and
    channels/api/http (``/{domainID}/clients/{id}``, ``/{domainID}/channels/connect``), certs
    api/http/transport.go (``/{domainID}/certs/issue/{entityID}``, ``/{domainID}/certs/{id}/revoke``),
    and apidocs/openapi/http.yaml (``/m/{domainPrefix}/c/{channelPrefix}``).
    """

    name = "clients"
    device_scheme = "Client"
    revokes_by_serial = True
    publishes_subtopics = False
    no_subtopics = (
        'the "clients" profile (SuperMQ HEAD) publishes to a channel only: its http adapter\'s '
        "document (apidocs/openapi/http.yaml) has /m/{domainPrefix}/c/{channelPrefix} and no "
        "subtopic path; leave subtopic out, or put the topic in the payload"
    )
    #: bootstrap/events/producer/streams.go View publishes ``bootstrap.config.view``.
    view_echo = "config.view"
    #: clients/events/streams.go: enable and disable publish ``client.enable`` / ``client.disable``.
    status_echo = "thing.enable"
    #: SuperMQ's connection types (pkg/connections/type.go): a device both publishes and subscribes.
    conn_types = ("publish", "subscribe")

    def __init__(self, domain_id: str) -> None:
        if not domain_id.strip():
            raise ConfigError(
                'supermq.domain_id is required with the "clients" profile (SuperMQ HEAD: every route '
                "sits under /{domainID}/)"
            )
        self.domain_id = domain_id
        self._d = f"/{_seg(domain_id)}"

    # users
    @staticmethod
    def login_body(identity: str, secret: str, domain_id: str) -> dict[str, str]:
        """users/api/requests.go loginUserReq: ``username`` (or e-mail) and ``password``; the
        domain is no part of a HEAD token (it is in every route instead)."""
        return {"username": identity, "password": secret}

    @staticmethod
    def refresh_body(domain_id: str) -> dict[str, str]:
        return {}  # users/api/users.go decodeRefreshToken reads only the Authorization header

    # bootstrap
    def configs(self) -> Endpoint:
        return Endpoint("bootstrap", "GET", f"{self._d}/clients/configs", "config.list")

    def config(self, method: str, config_id: str) -> Endpoint:
        echo = {"GET": self.view_echo, "PUT": "config.update", "DELETE": "config.remove"}.get(method, "")
        return Endpoint("bootstrap", method, f"{self._d}/clients/configs/{_seg(config_id)}", echo)

    def config_certs(self, config_id: str) -> Endpoint:
        path = f"{self._d}/clients/configs/certs/{_seg(config_id)}"
        return Endpoint("bootstrap", "PATCH", path, "cert.update")

    def config_connections(self, config_id: str) -> Endpoint:
        path = f"{self._d}/clients/configs/connections/{_seg(config_id)}"
        return Endpoint("bootstrap", "PUT", path, "thing.update_connections")

    def config_state(self, config_id: str) -> Endpoint:
        path = f"{self._d}/clients/state/{_seg(config_id)}"
        return Endpoint("bootstrap", "PUT", path, "thing.change_state")

    def device_config(self, external_id: str) -> Endpoint:
        return Endpoint("bootstrap", "GET", f"/clients/bootstrap/{_seg(external_id)}", "thing.bootstrap")

    # clients and channels
    def thing(self, thing_id: str) -> Endpoint:
        return Endpoint("clients", "GET", f"{self._d}/clients/{_seg(thing_id)}", "thing.view")

    def thing_status(self, thing_id: str, enable: bool) -> Endpoint:
        verb = "enable" if enable else "disable"
        return Endpoint("clients", "POST", f"{self._d}/clients/{_seg(thing_id)}/{verb}", f"thing.{verb}")

    def connections(self, thing_id: str, channel_ids: list[str], connect: bool) -> list[Call]:
        """channels/api/http/requests.go connectRequest: one channel a call, so that a repeated
        connect (``already_connected``: channels/service.go Connect checks every connection before
        it adds any, so a refused batch adds nothing) names the channel it is about."""
        verb = "connect" if connect else "disconnect"
        # No echo expected: HEAD's channel.connect names the client in ``client_ids`` (a list),
        # not as the device the loop guard keys on, so an expectation would never be met.
        ep = Endpoint("channels", "POST", f"{self._d}/channels/{verb}")
        types = list(self.conn_types)
        return [Call(ep, {"client_ids": [thing_id], "channel_ids": [c], "types": types}) for c in channel_ids]

    @staticmethod
    def already_connected(status: int, message: str = "") -> bool:
        """channels/service.go Connect: a connection that exists is ``svcerr.ErrConflict``, which
        is a request error at HEAD (pkg/errors/service/types.go), so 400 "entity already exists"."""
        return status == 400 and "already exists" in message

    def channel(self, channel_id: str) -> Endpoint:
        return Endpoint("channels", "GET", f"{self._d}/channels/{_seg(channel_id)}", "channel.view")

    # provisioning: create, find by name, remove (reactor.provision)
    def things_create(self) -> Endpoint:
        """clients/api/http/clients.go ``POST /{domainID}/clients``: 201 with the client, its
        secret generated when none is given (clients/service.go CreateClients)."""
        return Endpoint("clients", "POST", f"{self._d}/clients")

    def things_list(self) -> Endpoint:
        """``GET /{domainID}/clients``: ``name`` matched in part, ``status`` (default enabled:
        clients/api/http/decode.go decodeListClients); the page is ``{total, clients}``, its
        ``offset``/``limit`` and ``clients`` ``omitempty`` (responses.go clientsPageRes)."""
        return Endpoint("clients", "GET", f"{self._d}/clients")

    def thing_remove(self, thing_id: str) -> Endpoint:
        """``DELETE /{domainID}/clients/{clientID}``: 204; the client's connections removed and its
        status set to deleted (clients/service.go Delete), so it is listed no more."""
        return Endpoint("clients", "DELETE", f"{self._d}/clients/{_seg(thing_id)}", "thing.remove")

    def channels_create(self) -> Endpoint:
        return Endpoint("channels", "POST", f"{self._d}/channels")

    def channels_list(self) -> Endpoint:
        return Endpoint("channels", "GET", f"{self._d}/channels")

    def channel_remove(self, channel_id: str) -> Endpoint:
        """``DELETE /{domainID}/channels/{channelID}``: 204; connections removed, status deleted
        (channels/service.go RemoveChannel): the default listing (enabled) no longer has it."""
        return Endpoint("channels", "DELETE", f"{self._d}/channels/{_seg(channel_id)}", "channel.remove")

    def channel_enable(self, channel_id: str) -> Endpoint:
        return Endpoint("channels", "POST", f"{self._d}/channels/{_seg(channel_id)}/enable")

    def config_add(self) -> Endpoint:
        """bootstrap/api/transport.go ``POST /{domainID}/clients/configs``: 201, no body."""
        return Endpoint("bootstrap", "POST", f"{self._d}/clients/configs", "config.create")

    @staticmethod
    def config_add_body(config: Mapping[str, Any]) -> dict[str, Any]:
        """bootstrap/api/requests.go addReq reads ``client_id`` (a ``thing_id`` is ignored, and
        bootstrap's Add would then look up a client with an empty id)."""
        body = dict(config)
        if "thing_id" in body:
            body["client_id"] = body.pop("thing_id")
        return body

    # certs
    def cert_issue(self) -> Endpoint:
        raise NotImplementedError("the clients profile issues through issue_call(entity id)")

    def issue_call(self, thing_id: str, ttl: str, common_name: str) -> Call:
        """certs api/http/requests.go issueCertReq: the entity in the path, ``options.common_name``
        required (400 without)."""
        ep = Endpoint("certs", "POST", f"{self._d}/certs/issue/{_seg(thing_id)}")
        return Call(ep, {"ttl": ttl, "ip_addresses": [], "options": {"common_name": common_name}})

    def cert(self, method: str, cert_id: str) -> Endpoint:
        return Endpoint("certs", method, f"{self._d}/certs/{_seg(cert_id)}")

    def revoke(self, serial: str) -> Endpoint:
        """``PATCH /{domainID}/certs/{id}/revoke``: exactly the one certificate (204). The serial
        as the certs service stores it: lower-case hex pairs joined by colons (api/utils.go
        NormalizeSerialNumber), whichever way it is given."""
        return Endpoint("certs", "PATCH", f"{self._d}/certs/{_seg(serial_pairs(serial))}/revoke")

    def serials(self, thing_id: str) -> Endpoint:
        return Endpoint("certs", "GET", f"{self._d}/certs")

    def serials_query(self, thing_id: str) -> dict[str, str]:
        return {"entity_id": thing_id}  # certs api/http/transport.go decodeListCerts

    # http adapter
    def publish(self, channel_id: str, subtopic: str = "") -> Endpoint:
        """A subtopic is refused when the rule loads (``no_subtopics``); one that arrives anyway
        (``auto`` chose this profile after the rules loaded) is a ``PermanentError`` saying why."""
        if subtopic.strip("/"):
            raise PermanentError(self.no_subtopics)
        return Endpoint("http", "POST", f"/m/{_seg(self.domain_id)}/c/{_seg(channel_id)}")


def serial_pairs(serial: str) -> str:
    """``0A1b2c`` or ``0a:1b:2c`` → ``0a:1b:2c`` (absmach/certs api/utils.go NormalizeSerialNumber)."""
    cleaned = serial.replace(":", "").replace(" ", "").lower()
    cleaned = cleaned if len(cleaned) % 2 == 0 else f"0{cleaned}"
    return ":".join(cleaned[i : i + 2] for i in range(0, len(cleaned), 2))


def build_profile(name: str, domain_id: str = "") -> ThingsProfile:
    """The profile called ``name`` (``ConfigError`` for the clients profile without a domain)."""
    if name == "clients":
        return ClientsProfile(domain_id)
    return PROFILES[name]()
