"""Typed views of SuperMQ's responses (Magistrala v0.14 / things era), as the code serves them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Tokens(_Model):
    access_token: str
    refresh_token: str = ""
    access_type: str = ""


class ConfigChannel(_Model):
    id: str
    name: str = ""
    metadata: dict[str, Any] = {}


class Config(_Model):
    """A bootstrap config as ``GET /things/configs/{id}`` returns it (no client_key)."""

    thing_id: str
    thing_key: str = ""
    channels: list[ConfigChannel] = []
    external_id: str = ""
    external_key: str = ""
    content: str = ""
    name: str = ""
    state: int = 0
    client_cert: str = ""
    ca_cert: str = ""

    @property
    def channel_ids(self) -> list[str]:
        return [c.id for c in self.channels]


class ConfigsPage(_Model):
    total: int = 0
    offset: int = 0
    limit: int = 10
    configs: list[Config] = []


class ConfigCerts(_Model):
    thing_id: str
    client_cert: str = ""
    client_key: str = ""
    ca_cert: str = ""


class Credentials(_Model):
    identity: str = ""
    secret: str = ""


class Thing(_Model):
    id: str
    name: str = ""
    tags: list[str] = []
    credentials: Credentials = Field(default_factory=Credentials)
    metadata: dict[str, Any] = {}
    status: str = ""


class Channel(_Model):
    id: str
    name: str = ""
    metadata: dict[str, Any] = {}
    status: str = ""


class Cert(_Model):
    """``POST /certs`` and ``GET /certs/{serial}`` as the code answers (``client_key`` empty on view)."""

    thing_id: str
    client_cert: str = ""
    client_key: str = ""
    cert_serial: str = ""
    expiration: str = ""


class SerialsPage(_Model):
    total: int = 0
    offset: int = 0
    limit: int = 10
    certs: list[Cert] = []


class Revocation(_Model):
    revocation_time: str = ""
