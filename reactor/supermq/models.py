"""Typed views of SuperMQ's responses, as the code serves them.

Field names are the things era's (Magistrala v0.14); SuperMQ HEAD's names are read as aliases
(``client_id`` for ``thing_id``, ``client_secret`` for ``thing_key``; the certs service's
``entity_id``, ``certificate``, ``key``, ``serial_number``, ``expiry_time``), so the actions read
one model whatever the profile."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _also(*names: str) -> Any:
    """A field read under its own name or HEAD's ``names``."""
    return AliasChoices(*names)


def _null_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _null_is_no_list(value: Any) -> Any:
    return [] if value is None else value


#: Metadata: Mainflux serves ``"metadata": null`` for a channel created without any.
Metadata = Annotated[dict[str, Any], BeforeValidator(_null_is_empty)]
#: Lists: Go marshals an empty slice that was never made as ``null`` (a config without channels).
Channels = Annotated[list["ConfigChannel"], BeforeValidator(_null_is_no_list)]


class Tokens(_Model):
    access_token: str
    refresh_token: str = ""
    access_type: str = ""


class ConfigChannel(_Model):
    id: str
    name: str = ""
    metadata: Metadata = {}


class Config(_Model):
    """A bootstrap config as ``GET /things/configs/{id}`` returns it (no client_key)."""

    thing_id: str = Field(validation_alias=_also("thing_id", "client_id"))
    thing_key: str = Field("", validation_alias=_also("thing_key", "client_secret"))
    channels: Channels = []
    external_id: str = ""
    external_key: str = ""
    content: str = ""
    name: str = ""
    state: int = 0
    #: Never filled by a view (bootstrap/api/endpoint.go); ``SuperMQClient.served_config`` reads
    #: them from the device's own fetch.
    client_cert: str = ""
    ca_cert: str = ""

    @property
    def channel_ids(self) -> list[str]:
        """The channel ids, sorted: the platform lists them in no stable order (no ORDER BY)."""
        return sorted(c.id for c in self.channels)

    @property
    def control_channel_id(self) -> str:
        """The channel to tell the device on: the one whose metadata says ``type = "control"``
        (as SuperMQ's provision service marks them), else the first id in sorted order."""
        for channel in sorted(self.channels, key=lambda c: c.id):
            if channel.metadata.get("type") == "control":
                return channel.id
        return self.channel_ids[0] if self.channels else ""


class DeviceConfig(_Model):
    """``GET /things/bootstrap/{external_id}`` as the device gets it: certificates included."""

    thing_id: str = Field(validation_alias=_also("thing_id", "client_id"))
    thing_key: str = Field("", validation_alias=_also("thing_key", "client_secret"))
    channels: Channels = []
    content: str = ""
    client_cert: str = ""
    client_key: str = ""
    ca_cert: str = ""


class ConfigsPage(_Model):
    total: int = 0
    offset: int = 0
    limit: int = 10
    configs: Annotated[list[Config], BeforeValidator(_null_is_no_list)] = []


class ConfigCerts(_Model):
    thing_id: str = Field(validation_alias=_also("thing_id", "client_id"))
    client_cert: str = ""
    client_key: str = ""
    ca_cert: str = ""


class Credentials(_Model):
    identity: str = ""
    secret: str = ""


class Thing(_Model):
    id: str
    name: str = ""
    tags: Annotated[list[str], BeforeValidator(_null_is_no_list)] = []
    credentials: Credentials = Field(default_factory=Credentials)
    metadata: Metadata = {}
    status: str = ""


class Channel(_Model):
    id: str
    name: str = ""
    metadata: Metadata = {}
    status: str = ""


class ThingsPage(_Model):
    total: int = 0
    #: SuperMQ HEAD names them ``clients`` (clients/api/http/responses.go clientsPageRes).
    things: Annotated[list[Thing], BeforeValidator(_null_is_no_list)] = Field(
        [], validation_alias=_also("things", "clients")
    )


class ChannelsPage(_Model):
    total: int = 0
    channels: Annotated[list[Channel], BeforeValidator(_null_is_no_list)] = []


class Cert(_Model):
    """``POST /certs`` and ``GET /certs/{serial}`` as the code answers (``client_key`` empty on view);
    HEAD's certs service (absmach/certs api/http/responses.go issueCertRes, viewCertRes) names them
    entity_id, certificate, key, serial_number, expiry_time and adds ``revoked``."""

    thing_id: str = Field(validation_alias=_also("thing_id", "entity_id"))
    client_cert: str = Field("", validation_alias=_also("client_cert", "certificate"))
    client_key: str = Field("", validation_alias=_also("client_key", "key"))
    cert_serial: str = Field("", validation_alias=_also("cert_serial", "serial_number"))
    expiration: str = Field("", validation_alias=_also("expiration", "expiry_time"))
    revoked: bool = False


class SerialsPage(_Model):
    total: int = 0
    offset: int = 0
    limit: int = 10
    certs: Annotated[list[Cert], BeforeValidator(_null_is_no_list)] = Field(
        [], validation_alias=_also("certs", "certificates")
    )


class Revocation(_Model):
    revocation_time: str = ""
