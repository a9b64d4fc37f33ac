"""One ``Settings`` object, built once in ``main`` and passed down.

Sources, strongest first: keyword overrides (CLI flags), ``REACTOR_*`` environment variables
(nested keys with ``__``: ``REACTOR_REDIS__URL``), the TOML file given with ``--config``, the
defaults below. ``config.example.toml`` documents every key. Unknown keys and invalid values
fail at start with a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from reactor.durations import renew_threshold_s
from reactor.errors import ConfigError
from reactor.redact import shown_url

#: The platform families whose streams are read by default (``[events] families``).
DEFAULT_FAMILIES = ("supermq", "magistrala", "mainflux")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _url(value: str, schemes: tuple[str, ...]) -> str:
    """``value`` if it is a URL with one of ``schemes`` and a host (or a unix socket path), and
    a port from 0 to 65535 if any."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.hostname or (parts.scheme == "unix" and parts.path)):
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{shown_url(value)!r} is not a URL with a host and the scheme {wanted}")
    try:
        _ = parts.port  # a port over 65535 would end in an OverflowError from connect
    except ValueError as exc:  # its text names only the port (what follows the last '@')
        raise ValueError(f"{shown_url(value)!r}: {exc}") from None
    return value


class RedisSettings(_Section):
    """The Redis Streams event source and the dead-letter stream."""

    url: str = "redis://127.0.0.1:6379/0"
    streams: list[str] = Field(default_factory=lambda: ["supermq.bootstrap", "supermq.things"], min_length=1)
    group: str = Field(default="reactor", min_length=1)
    consumer: str = Field(default_factory=_default_consumer, min_length=1)
    start_id: str = "$"
    #: Deprecated: ``worker.batch_size`` / ``worker.block_ms`` (every store reads so); used for
    #: them, with a warning, when ``[worker]`` does not set them.
    batch_size: int | None = Field(default=None, gt=0, le=10_000)
    block_ms: int | None = Field(default=None, ge=0)
    dlq_stream: str = Field(default="reactor.dlq", min_length=1)
    dlq_maxlen: int = Field(default=1_000_000, gt=0)
    #: A consumer's liveness lease lasts this long; the entries pending this long of a consumer
    #: whose lease lapsed (it died) are claimed with XCLAIM.
    reclaim_idle_ms: int = Field(default=60_000, gt=0)
    reclaim_interval_s: float = Field(default=5.0, gt=0)
    #: Entries read but not yet settled hold at most this many bytes; reading waits beyond it.
    max_unsettled_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: ``streams`` may hold glob patterns (``events.magistrala.bootstrap.*``): matching streams
    #: are found by SCAN this often, joined from their start, at most ``max_streams`` in all.
    discover_interval_s: float = Field(default=5.0, gt=0)
    max_streams: int = Field(default=1000, gt=0, le=100_000)
    scan_count: int = Field(default=1000, gt=0, le=100_000)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _url(value, ("redis", "rediss", "unix"))

    @field_validator("start_id")
    @classmethod
    def _start_id(cls, value: str) -> str:
        if value in ("$", "0") or value.replace("-", "").isdigit():
            return value
        raise ValueError("must be '$' (new events only), '0' (from the beginning) or a stream id")


class NatsSettings(_Section):
    """NATS JetStream: SuperMQ's stream ``events`` (subjects ``events.>``), a durable pull consumer."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = "events"
    subjects: list[str] = Field(default_factory=lambda: ["events.>"])
    #: Create the stream (with SuperMQ's settings) when it does not exist.
    create_stream: bool = True
    durable: str = Field(default="reactor", min_length=1)
    filter_subject: str = "events.>"
    ack_wait_s: float = Field(default=30.0, gt=0)
    dlq_stream: str = "REACTOR_DLQ"
    dlq_subject: str = "reactor.dlq"
    #: Messages read but not yet settled hold at most this many bytes; reading waits beyond it.
    max_unsettled_bytes: int = Field(default=16 * 1024 * 1024, gt=0)

    @field_validator("url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        return _url(value, ("nats", "tls", "ws", "wss"))


class RabbitSettings(_Section):
    """RabbitMQ: SuperMQ's durable topic exchange ``events``, a durable queue of our own."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "events"
    queue: str = Field(default="reactor", min_length=1)
    routing_keys: list[str] = Field(default_factory=lambda: ["events.#"], min_length=1)
    prefetch: int = Field(default=200, gt=0)
    dlq_queue: str = "reactor.dlq"
    #: Messages delivered but not yet settled hold at most this many bytes (beyond it the
    #: consumer is paused until settles make room).
    max_unsettled_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: "quorum": the broker counts deliveries, so poison messages are detected ("classic" cannot).
    queue_type: Literal["classic", "quorum"] = "classic"

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        return _url(value, ("amqp", "amqps"))


class EventsSettings(_Section):
    """How stream names are read, and how much of an entry is accepted."""

    families: list[str] = Field(default_factory=lambda: list(DEFAULT_FAMILIES), min_length=1)
    #: An entry (its field names and values, or a message body) larger than this is malformed.
    max_entry_bytes: int = Field(default=1_048_576, gt=0)
    #: JSON nested deeper than this (objects and arrays, in any field) is malformed.
    max_depth: int = Field(default=32, gt=0, le=128)
    #: An operation name, field name or id longer than this is malformed (SuperMQ's are under 64).
    max_name_chars: int = Field(default=256, gt=0, le=65_536)


class RulesSettings(_Section):
    """Where the rules live, and the bounds on evaluating them (reactor/rules/bounds.py)."""

    dir: Path = Path("rules")
    reload_interval_s: float = Field(default=2.0, ge=0)
    #: Evaluation time the conditions and templates of one event may take in all (not the actions).
    eval_timeout_s: float = Field(default=0.5, gt=0, le=60)
    #: Characters or items of any one string or list a rule may build.
    max_value_size: int = Field(default=1_000_000, gt=0)
    #: Characters or items a rule may build in all while one event is evaluated.
    max_event_output: int = Field(default=16_000_000, gt=0)
    #: ``{% for %}`` iterations per event.
    max_loop_iterations: int = Field(default=100_000, gt=0)
    #: Bits of an integer a rule may compute (``2 ** 4096`` is the largest power of two).
    max_int_bits: int = Field(default=4096, ge=64)
    #: Tokens of one condition or template, counted at load before it is parsed (reactor/rules/screen.py).
    max_template_tokens: int = Field(default=10_000, gt=0)


class WorkerSettings(_Section):
    """The consume loop."""

    #: Entries read from the event store at once, and how long one read waits (every store).
    batch_size: int = Field(default=100, gt=0, le=10_000)
    block_ms: int = Field(default=1000, ge=0)
    concurrency: int = Field(default=64, gt=0, le=10_000)
    max_in_flight: int = Field(default=1000, gt=0)
    settle_interval_ms: float = Field(default=5.0, ge=0)
    max_deliveries: int = Field(default=10, gt=0)
    grace_s: float = Field(default=10.0, ge=0)
    #: /readyz fails while a processed event has waited longer than this to be settled (acked).
    max_unsettled_s: float = Field(default=30.0, gt=0)


class StateSettings(_Section):
    """Where completed (event, rule, action) steps are remembered, so redeliveries skip them."""

    backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    path: Path = Path("state/reactor.sqlite3")
    retention_s: float = Field(default=7 * 86_400.0, gt=0)
    #: SQLite: completed steps are committed together, before the acks of their batch and at
    #: most this long after they completed (0: each step as it completes).
    commit_interval_ms: float = Field(default=5.0, ge=0, le=10_000)
    #: Rule throttle/debounce keys held in memory (not "redis"): the oldest dropped beyond this.
    gates_capacity: int = Field(default=100_000, gt=0)


class RetrySettings(_Section):
    """The default retry policy of actions; a rule's ``retry`` table overrides any of these."""

    attempts: int = Field(default=5, ge=1, le=100)
    initial_s: float = Field(default=0.2, ge=0)
    max_wait_s: float = Field(default=10.0, ge=0)
    max_total_s: float = Field(default=60.0, ge=0)
    jitter_s: float = Field(default=0.5, ge=0)


class SuperMQSettings(_Section):
    """SuperMQ's HTTP APIs (defaults: SuperMQ's ports on localhost) and how to authenticate."""

    #: "mainflux" (Mainflux 2023), "things" (Magistrala v0.14-v0.15), "clients" (SuperMQ HEAD,
    #: clients and domains), or "auto": read /health and pick.
    profile: Literal["auto", "mainflux", "things", "clients"] = "auto"
    users_url: str = "http://localhost:9002"
    things_url: str = "http://localhost:9000"
    #: The clients profile's clients and channels services (SuperMQ HEAD docker/.env ports).
    clients_url: str = "http://localhost:9006"
    channels_url: str = "http://localhost:9005"
    bootstrap_url: str = "http://localhost:9013"
    certs_url: str = "http://localhost:9019"
    http_url: str = "http://localhost:8008"
    #: A static user token; when empty, the reactor logs in with identity/secret.
    token: SecretStr = SecretStr("")
    identity: str = ""
    secret: SecretStr = SecretStr("")
    domain_id: str = ""
    timeout_s: float = Field(default=10.0, gt=0)
    #: The whole of one HTTP exchange (connect, send, the full answer): ``timeout_s`` bounds each
    #: wait, this bounds a server that drips its answer a byte at a time.
    deadline_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    #: "http1": the reactor's own HTTP/1.1 transport (fast); "httpx": httpx's own transport.
    transport: Literal["http1", "httpx"] = "http1"
    #: An http:// or https:// forward proxy for every call (``user:password@`` sent as
    #: Proxy-Authorization: Basic), taken by the chosen transport; over the environment's proxies.
    proxy: str = ""
    #: Close a kept-alive connection after this long unused (below the servers' idle timeouts).
    keepalive_s: float = Field(default=15.0, gt=0)
    verify_tls: bool = True
    ca_bundle: str = ""
    cert_ttl: str = "2400h"
    #: Hosts the generic ``http.request`` action may call (exact names, or ``*.example.com``).
    http_allowlist: list[str] = []

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        if value and urlsplit(value).scheme.startswith("socks"):
            raise ValueError(
                f"{shown_url(value)!r}: SOCKS proxies are not supported; use an http:// or https:// proxy"
            )
        return _url(value, ("http", "https")) if value else value

    @model_validator(mode="after")
    def _domain(self) -> SuperMQSettings:
        if self.profile == "clients" and not self.domain_id.strip():
            raise ValueError(
                'supermq.domain_id is required with supermq.profile = "clients" '
                "(every SuperMQ HEAD route sits under /{domainID}/)"
            )
        return self


class CertsSettings(_Section):
    """Device certificate policy, issuing, and the sweep."""

    #: Trust anchors (self-signed) and intermediates: every *.pem / *.crt in this directory.
    trust_dir: Path = Path("certs")
    clock_skew_s: float = Field(default=300.0, ge=0)
    #: Renew when this close to expiry: a duration (30d, 720h) or a share of the lifetime (33%).
    renew_before: str = "30d"
    min_rsa_bits: int = Field(default=2048, ge=1024)
    require_client_auth: bool = True
    #: What the certificate's identity must be: the thing key in the CN (as SuperMQ's certs
    #: service issues), the thing id, the external id, a subjectAltName, or nothing.
    bind: Literal["thing_key", "thing_id", "external_id", "san", "none"] = "thing_key"
    #: Who issues rotated certificates: SuperMQ's certs service, or the local CA in local_ca_dir.
    issuer: Literal["supermq", "local"] = "supermq"
    local_ca_dir: Path = Path("certs/dev-ca")
    #: Sweep every bootstrap config's certificate inside the daemon this often (0: never).
    sweep_interval_s: float = Field(default=0.0, ge=0)

    @field_validator("renew_before")
    @classmethod
    def _renew(cls, value: str) -> str:
        renew_threshold_s(value, 86400.0)
        return value


class ProvisionSettings(_Section):
    """Zero-touch provisioning (``reactor.provision``): enrollments and templates."""

    #: Enrollment files (``.toml`` or ``.csv``); none: every device is refused, nothing is loaded.
    enrollments: list[Path] = []
    #: Provisioning templates, one ``<name>.toml`` each.
    templates_dir: Path = Path("templates")
    #: An inventory asked for devices not in the files: ``https://host/devices/{external_id}``,
    #: on a host of ``supermq.http_allowlist``; empty: none.
    inventory_url: str = ""
    #: Its bearer token (``REACTOR_PROVISION__INVENTORY_TOKEN``; masked everywhere).
    inventory_token: SecretStr = SecretStr("")


class OpsSettings(_Section):
    """The operator's endpoint (/metrics, /healthz, /readyz) and the audit trail."""

    #: ``host:port`` to serve on; empty to serve nothing.
    listen: str = "127.0.0.1:9464"
    backlog_interval_s: float = Field(default=5.0, gt=0)
    audit: bool = True
    #: Audit rows older than this are pruned (as state.retention_s: a week by default).
    audit_retention_s: float = Field(default=7 * 86_400.0, gt=0)
    #: At most this many audit rows are kept (SQLite; the Redis stream is capped the same).
    audit_max_rows: int = Field(default=1_000_000, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value and (":" not in value or not value.rsplit(":", 1)[1].isdigit()):
            raise ValueError("must be host:port, or empty")
        return value


class SecretsSettings(_Section):
    """The key that seals kept secrets: the original event of a dead-letter record (for replay)
    and the secrets in step results (certs.issue's key, for a redelivery). A Fernet key
    (``python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'``).

    ``key`` (env ``REACTOR_SECRETS__KEY``) first, else ``key_file`` (made, mode 0600, when it does
    not exist), else a key for this process alone, with a warning: what it sealed cannot be opened
    after a restart nor by ``reactor dlq replay`` (those records replay masked)."""

    key: SecretStr = SecretStr("")
    key_file: str = ""


class LogSettings(_Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Everything the reactor can be told."""

    model_config = SettingsConfigDict(
        env_prefix="REACTOR_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    source: Literal["redis", "nats", "rabbitmq", "memory"] = "redis"
    redis: RedisSettings = Field(default_factory=RedisSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    rabbitmq: RabbitSettings = Field(default_factory=RabbitSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    state: StateSettings = Field(default_factory=StateSettings)
    supermq: SuperMQSettings = Field(default_factory=SuperMQSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    certs: CertsSettings = Field(default_factory=CertsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    provision: ProvisionSettings = Field(default_factory=ProvisionSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="before")
    @classmethod
    def _shared_reads(cls, data: Any) -> Any:
        """The deprecated ``[redis]`` keys stand for ``[worker]``'s when it does not set them."""
        if not isinstance(data, dict):
            return data
        redis, worker = data.get("redis"), data.get("worker", {})
        if isinstance(redis, RedisSettings):
            redis = redis.model_dump(exclude_unset=True)
        if not isinstance(redis, dict) or not isinstance(worker, dict):
            return data  # a whole [worker] given as settings, or something validation will name
        moved = {
            k: redis[k] for k in ("batch_size", "block_ms") if redis.get(k) is not None and k not in worker
        }
        return {**data, "worker": {**worker, **moved}} if moved else data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


#: Keys still read, and what replaces them.
DEPRECATED = {"redis.batch_size": "worker.batch_size", "redis.block_ms": "worker.block_ms"}


def deprecated_keys(settings: Settings) -> list[str]:
    """One line per deprecated key the settings set: what to write instead."""
    return [
        f"{old} is deprecated (every event store reads so): write {new} instead"
        for old, new in DEPRECATED.items()
        if getattr(settings.redis, old.split(".")[1]) is not None
    ]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings from file, environment and overrides; raise ``ConfigError`` naming the key."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from exc
    except SettingsError as exc:  # a REACTOR_* variable the environment source could not parse
        raise ConfigError(_not_json(os.environ) or f"REACTOR_* environment: {exc}") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{config_file}: {exc}") from exc


_PREFIX = "REACTOR_"
#: ``REACTOR_`` variables that are not settings: the test suite's.
_NOT_SETTINGS = ("REACTOR_TEST_",)


def _setting(name: str) -> tuple[bool, Any]:
    """Whether the variable ``name`` names a setting, and that setting's type."""
    model: Any = Settings
    annotation: Any = None
    for part in name.upper().removeprefix(_PREFIX).lower().split("__"):
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            return False, None
        annotation = model = fields[part].annotation
    return True, annotation


def _is_complex(annotation: Any) -> bool:
    """Written as JSON in the environment: lists, tables and sections."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in (list, dict, set, tuple) or annotation in (list, dict, set, tuple)


def _reactor_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in sorted(environ.items())
        if name.upper().startswith(_PREFIX) and not name.upper().startswith(_NOT_SETTINGS)
    ]


def _not_json(environ: Mapping[str, str]) -> str | None:
    """The first list or section variable whose value is not JSON, as one line naming it."""
    for name, value in _reactor_variables(environ):
        known, annotation = _setting(name)
        if not known or not _is_complex(annotation):
            continue
        try:
            json.loads(value)
        except ValueError as exc:
            return f'{name}: not JSON ({exc}); write lists and tables as JSON, e.g. {name}=\'["a", "b"]\''
    return None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``REACTOR_`` variables that name no section or setting (a typo, an old name): they are ignored.

    Unknown keys *inside* a section (``REACTOR_REDIS__BOGUS``) are errors of ``load_settings``.
    """
    unknown = []
    for name, _ in _reactor_variables(environ):
        section = name.upper().removeprefix(_PREFIX).lower().split("__", 1)[0]
        if section not in Settings.model_fields:
            unknown.append(name)
    return unknown


def meant(name: str) -> str | None:
    """The setting an unknown variable probably meant: ``REACTOR_REDIS_URL`` → ``REACTOR_REDIS__URL``."""
    rest = name.upper().removeprefix(_PREFIX)
    for at in (i for i, ch in enumerate(rest) if ch == "_"):
        candidate = f"{_PREFIX}{rest[:at]}__{rest[at + 1 :]}"
        if _setting(candidate)[0]:
            return candidate
    return None


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    """One line for one error (``invalid setting in c.toml ...: redis.url: ...``), else a list."""
    where = f" in {config_file} or REACTOR_* environment" if config_file else " in REACTOR_* environment"
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {msg}")
    if len(problems) == 1:
        return f"invalid setting{where}: {problems[0]}"
    return "\n  ".join([f"invalid settings{where}:", *problems])
