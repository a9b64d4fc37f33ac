"""The Secret type (reactor/secrets.py) and the second net (reactor/redact.py), issue #19:
templates cannot turn a secret into text, sealed secrets come back only under their key, a
malformed dead-letter record is masked for ``dlq show`` and sealed for ``dlq replay``."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from reactor.actions.base import Action, ActionContext, Params
from reactor.app import Reactor, build_source
from reactor.delivery.executor import RuleOutcome, StepOutcome, dead_letter_for
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import RedisStateStore, SQLiteStateStore
from reactor.events.decode import Decoder
from reactor.events.model import raw_view
from reactor.ops.audit import AuditRow, SQLiteAudit, rows_for
from reactor.ops.logging import configure_logging, get_logger
from reactor.redact import redact, redact_text
from reactor.rules.expressions import Expression, ExpressionError, Template
from reactor.rules.model import CompiledAction
from reactor.secrets import MASK, Sealer, Secret
from reactor.settings import load_settings
from reactor.sources.base import DeadLetter, Delivery, Record
from tests.conftest import REDIS_URL, reactor_cli
from tests.ops.test_secret_outputs import (
    EXTERNAL_KEY,
    MQTT_KEY,
    REDIS_PASSWORD,
    SHORT,
    TOKEN_SECRET,
    URL_PASSWORD,
    _pem,
    _sqlite_text,
)

KEY = Fernet.generate_key()


async def test_the_state_store_seals_an_issued_key_and_a_redelivery_gets_it_back(tmp_path: Path) -> None:
    """S7: certs.issue's key, needed by a later step on a redelivery: sealed in the SQLite file."""
    pem = _pem()
    sealer = Sealer(Fernet.generate_key())
    store = SQLiteStateStore(tmp_path / "s.sqlite3", 3600, sealer)
    await store.record("s/1-0", "rule", "cert:abc", {"client_key": Secret(pem), "serial": "01"})
    await store.close()
    assert pem.splitlines()[1] not in _sqlite_text(tmp_path / "s.sqlite3")
    again = SQLiteStateStore(tmp_path / "s.sqlite3", 3600, sealer)
    [result] = (await again.completed("s/1-0")).values()
    await again.close()
    assert isinstance(result["client_key"], Secret)
    assert result["client_key"].reveal() == pem
    other = SQLiteStateStore(tmp_path / "s.sqlite3", 3600, Sealer(Fernet.generate_key()))
    # Another key: never a guess, and never the mask as the value: the step is not done, it runs again.
    assert await other.completed("s/1-0") == {}
    await other.close()


def test_a_malformed_record_is_masked_for_show_and_sealed_for_replay() -> None:
    """S1/S2: dlq show masks the raw payload of a malformed entry; dlq replay has the original."""
    sealer = Sealer(Fernet.generate_key())
    broken = f'{{"operation":"config.create","external_key":"{EXTERNAL_KEY}","token":"{TOKEN_SECRET}'
    payload = {"data": broken}
    decoder = Decoder()
    record = DeadLetter(
        "supermq.bootstrap",
        "1-0",
        "malformed",
        "not JSON",
        payload,
        secrets=decoder.raw_secrets(payload, "supermq.bootstrap"),
        sealed=sealer.seal_json(payload),
    )
    fields = record.to_fields()
    assert EXTERNAL_KEY not in json.dumps(fields)
    assert TOKEN_SECRET not in json.dumps(fields)
    replayed = Record("1-0", fields).delivery(sealer)
    assert replayed.payload == payload  # the original, secrets included
    masked = Record("1-0", fields).delivery(Sealer(Fernet.generate_key()))  # another key: masked
    assert EXTERNAL_KEY not in json.dumps(masked.payload)
    mqtt = {"thing_id": MQTT_KEY, "event_type": ""}
    assert MQTT_KEY in decoder.raw_secrets(mqtt, "supermq.mqtt")
    mqtt_record = DeadLetter(
        "supermq.mqtt", "2-0", "malformed", "x", mqtt, secrets=decoder.raw_secrets(mqtt, "supermq.mqtt")
    )
    assert MQTT_KEY not in json.dumps(mqtt_record.to_fields())


@pytest.mark.parametrize(
    "template",
    [
        "{{ s | reverse | join }}",
        "{{ s[1:] }}",
        "{{ s | lower }}",
        "{{ s | title }}",
        "{{ s | list | join }}",
        "{{ s.replace('PRIVATE KEY', 'PK') }}",
        "{{ s | replace('PRIVATE KEY', 'PK') }}",
        "{{ s ~ '' }}",
        "{{ '%s' % s }}",
        "{{ '{}'.format(s) }}",
        "{{ s | tojson }}",
        "{{ s | string }}",
        "{{ [s] | join(',') }}",
        "{{ s | first }}",
        "x {{ s }}",
    ],
)
def test_a_template_cannot_turn_a_secret_into_text(template: str) -> None:
    """S5: what string filters and methods make of a Secret is the mask."""
    pem = _pem()
    out = Template(template).render({"s": Secret(pem)})
    assert "BEGIN" not in str(out)
    assert pem.splitlines()[1][:20] not in str(out)
    assert MASK in str(out)


def test_a_secret_offers_no_way_out_in_the_sandbox() -> None:
    for source in ("s.reveal()", "s._value", "s | attr('_value')", "s.__class__"):
        try:
            value = Expression(source).evaluate({"s": Secret("a-secret-value")})
        except ExpressionError:
            continue
        assert "a-secret-value" not in str(value)


def test_value_masking_second_net() -> None:
    """S6: short known secrets masked where they stand alone; S8/S9: URL passwords."""
    assert redact_text(f"pin {SHORT} in table", frozenset({SHORT})) == f"pin {MASK} in table"
    assert redact_text(f"x{SHORT}y", frozenset({SHORT})) == f"x{SHORT}y"  # not inside a longer word
    assert REDIS_PASSWORD not in redact_text(f"Error connecting to redis://:{REDIS_PASSWORD}@host:6379/0")
    assert URL_PASSWORD not in redact_text(f"http.request POST http://hook:{URL_PASSWORD}@127.0.0.1:1/hook")
    assert redact({"k": Secret("abc")}) == {"k": MASK}


async def test_a_redis_url_password_never_reaches_the_log(tmp_path: Path) -> None:
    """S8: ``source.start_failed`` names the URL it could not reach, password masked."""
    log = io.StringIO()
    configure_logging("DEBUG", "json", log)
    rules = tmp_path / "rules"
    rules.mkdir()
    settings = load_settings(
        None,
        redis={"url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"},
        rules={"dir": rules},
        state={"backend": "memory"},
    )
    reactor = Reactor.build(settings, build_source(settings), get_logger("test"))
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if "source.start_failed" in log.getvalue():
            break
    stop.set()
    await asyncio.wait_for(task, 10)
    text = log.getvalue()
    assert "source.start_failed" in text
    assert REDIS_PASSWORD not in text


def test_a_cli_error_never_prints_a_url_password() -> None:
    """CLI errors: a setting refused names its value, password masked."""
    result = reactor_cli("dlq", "list", env={"REACTOR_REDIS__URL": f"http://:{REDIS_PASSWORD}@127.0.0.1:1/0"})
    assert result.returncode == 2
    assert "redis.url" in result.stderr
    assert REDIS_PASSWORD not in result.stderr + result.stdout


async def test_the_redis_state_store_seals_secrets(redis_client: aioredis.Redis, unique: str) -> None:
    """S7 on Redis: the hash holds the sealed key, a redelivery reads the Secret back."""
    pem = _pem()
    store = RedisStateStore(
        aioredis.Redis.from_url(REDIS_URL, decode_responses=True), 60, f"t{unique}:steps", Sealer(KEY)
    )
    await store.record("s/1-0", "rule", "cert:abc", {"client_key": Secret(pem)})
    raw = await redis_client.hgetall(f"t{unique}:steps:s/1-0")
    assert raw
    assert pem.splitlines()[1] not in json.dumps(raw)
    [result] = (await store.completed("s/1-0")).values()
    await store.close()
    assert result["client_key"].reveal() == pem


class _AuthParams(Params):
    auth: dict[str, str]
    note: str


class _Auth(Action):
    type_name = "test.auth"
    params_model = _AuthParams
    secret_params = frozenset({"auth"})

    async def run(self, params: Any, ctx: ActionContext) -> Any:
        return None


def test_only_a_secret_accepting_parameter_gets_the_value() -> None:
    """``"Thing {{ key }}"`` in a secret-accepting parameter sends the key; in any other, ``***``."""
    action = CompiledAction(
        "a",
        "test.auth",
        _Auth(),
        {
            "auth": Template({"Authorization": "Thing {{ event.thing_key }}"}),
            "note": Template("key {{ event.thing_key }} {{ event.thing_key ~ '!' }}"),
        },
        None,
    )
    event = Decoder().decode(
        {"thing_id": "a-thing-key-1234", "event_type": "connect"},
        source="t",
        stream="supermq.mqtt",
        entry_id="1-0",
    )
    params = action.render({"event": event})
    assert params.auth == {"Authorization": "Thing a-thing-key-1234"}  # type: ignore[attr-defined]
    assert params.note == f"key {MASK} {MASK}!"  # type: ignore[attr-defined]
    preview = action.rendered_preview({"event": event})  # a dry run: the mask everywhere
    assert "a-thing-key-1234" not in json.dumps(preview)


def test_a_bad_secrets_key_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    made = tmp_path / "keys" / "reactor.key"
    sealer = Sealer.from_config("", made)  # made when missing, owner-only, and used again
    assert made.stat().st_mode & 0o777 == 0o600
    assert Sealer.from_config("", made).open(sealer.seal("x")) == "x"
    for env, named in (
        ({"REACTOR_SECRETS__KEY": "not-a-key"}, "secrets.key:"),
        ({"REACTOR_SECRETS__KEY_FILE": str(tmp_path / "f" / "k")}, "secrets.key_file"),
    ):
        if "KEY_FILE" in next(iter(env)):
            (tmp_path / "f").write_text("a file where the folder would be")
        # An event store nobody listens on: were the key taken, the daemon would wait, not consume.
        nowhere = {"REACTOR_REDIS__URL": "redis://127.0.0.1:1/0", "REACTOR_RULES__DIR": str(tmp_path)}
        result = reactor_cli("run", env={**env, **nowhere})
        assert result.returncode == 2
        assert result.stderr.startswith(f"reactor: {named}")
        assert "Traceback" not in result.stderr
        assert "not-a-key" not in result.stderr


def test_a_secret_copies_as_itself_and_pickles_as_the_mask() -> None:
    secret = Secret("a-secret-value")
    assert copy.deepcopy({"k": secret})["k"].reveal() == "a-secret-value"
    assert b"a-secret-value" not in pickle.dumps(secret)
    assert pickle.loads(pickle.dumps(secret)).reveal() == MASK
    assert secret == "a-secret-value"
    assert "a-secret-value" == secret  # noqa: SIM300 - the reflected comparison is the point
    assert f"{secret!s} {secret!r} {secret}" == f"{MASK} {MASK} {MASK}"


async def test_history_masks_a_row_an_older_version_wrote(tmp_path: Path) -> None:
    """S4/S9 as an older version recorded them: ``reactor history`` prints them masked."""
    path = tmp_path / "state.sqlite3"
    audit = SQLiteAudit(path)
    params = json.dumps(
        {"message": "x", "thing_key": "thing-Key-old-4f1e", "url": f"http://u:{URL_PASSWORD}@h/"}
    )
    error = f"http.request POST http://u:{URL_PASSWORD}@h/: refused"
    row = AuditRow(time.time_ns(), "s", "1-0", "d", "op", "r", "a", "log", params, "failed", 1, 1.0, error)
    await audit.write([row])
    await audit.close()
    result = reactor_cli("history", "--rule", "r", env={"REACTOR_STATE__PATH": str(path)})
    assert result.returncode == 0, result.stderr
    assert "r / a (log): failed" in result.stdout
    assert "thing-Key-old-4f1e" not in result.stdout
    assert URL_PASSWORD not in result.stdout


def test_a_dead_letter_masks_a_secret_an_earlier_step_returned() -> None:
    """A key ``bootstrap.view_config`` returned, given to the next step, quoted by its error."""
    fields = {"operation": "thing.bootstrap", "thing_id": "t1"}
    event = Decoder().decode(fields, source="t", stream="supermq.bootstrap", entry_id="1-0")
    view = StepOutcome("config", "bootstrap.view_config", ok=True, attempts=1, duration_s=0.0)
    view.result = {"thing_key": Secret("a-returned-thing-key")}
    publish = StepOutcome(
        "notify",
        "message.publish",
        ok=False,
        attempts=1,
        duration_s=0.0,
        error="key a-returned-thing-key refused",
    )
    outcome = RuleOutcome("push", steps=[view, publish], failed=publish)
    record = dead_letter_for(event, [outcome])
    assert record is not None
    assert "a-returned-thing-key" not in json.dumps(record.to_fields())
    assert f"key {MASK} refused" in record.error
    rows = rows_for(Outcome(Delivery("supermq.bootstrap", "1-0", fields), event, rules=[outcome]))
    assert rows
    assert "a-returned-thing-key" not in json.dumps([dataclasses.asdict(r) for r in rows])


@pytest.mark.parametrize(
    "source",
    ["{{ event.payload.external_key | reverse | join }}", "{{ event.raw }}", "x {{ event.secrets | list }}"],
)
def test_a_template_cannot_reach_the_payload_as_received(source: str) -> None:
    """The raw payload holds the secrets in clear: templates see the typed fields only."""
    fields = {"operation": "config.create", "thing_id": "t1", "external_key": "ext-Key-raw-1234"}
    event = Decoder().decode(fields, source="t", stream="supermq.bootstrap", entry_id="1-0")
    with pytest.raises(ExpressionError, match="unsafe"):
        Template(source).render({"event": event})
    assert Template("{{ event.external_key }}").render({"event": event}).reveal() == "ext-Key-raw-1234"


@pytest.mark.parametrize(
    "body",
    [
        f'{{"thing_id": "{MQTT_KEY}", "event_type": "connect", oops',
        f'{{"client_id":"{MQTT_KEY}"'.encode(),
    ],
)
def test_a_broken_mqtt_body_keeps_its_thing_key_masked(body: str | bytes) -> None:
    """S2 for a message body (NATS, RabbitMQ) that is not JSON: the key is read from its text."""
    secrets = Decoder().raw_secrets(body, "supermq.mqtt")
    record = DeadLetter("supermq.mqtt", "1", "malformed", "not JSON", raw_view(body), secrets=secrets)
    assert MQTT_KEY not in json.dumps(record.to_fields())
