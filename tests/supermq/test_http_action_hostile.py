"""``http.request`` against hostile rules (issue 19): framing and routing headers refused (at load
with file:line when written as literals), URLs parsed once and strictly by the parser whose result
is sent, and the action on httpx's own transport while the reactor's serves only SuperMQ."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from reactor.actions.base import ActionContext, ActionRegistry
from reactor.actions.http import HttpParams, HttpRequest
from reactor.app import build_registry
from reactor.errors import PermanentError, RuleSetError
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.rules.loader import load_rules
from reactor.settings import load_settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.transport import Http1Transport
from tests.supermq.test_transport import Server, keep_alive

EVENT = Decoder().decode(
    {"operation": "config.create", "thing_id": "t", "host": "evil.example"},
    source="t",
    stream="supermq.bootstrap",
    entry_id="1-0",
)
RULE = """
[[rule]]
name = "hook"
on = ["config.create"]

[[rule.actions]]
type = "http.request"
url = "{url}"
headers = {headers}
"""


def _registry(allow: list[str], **supermq: Any) -> tuple[ActionRegistry, SuperMQClient]:
    settings = load_settings(None, supermq={"http_allowlist": allow, **supermq})
    client = SuperMQClient(settings.supermq)
    return build_registry(settings, get_logger("test"), client), client


def _load(tmp_path: Path, url: str, headers: str = "{}") -> Any:
    (tmp_path / "r.toml").write_text(RULE.format(url=url, headers=headers))
    reg, _ = _registry(["127.0.0.1"])
    return load_rules(tmp_path, reg)


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION", "Upgrade", "X Bad", "X:Y"]
)
def test_literal_framing_and_routing_headers_are_refused_at_load_with_file_and_line(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(RuleSetError) as refused:
        _load(tmp_path, "http://127.0.0.1/hook", f'{{ "{name}" = "x" }}')
    message = str(refused.value)
    assert "r.toml:" in message, message
    assert name in message, message
    assert "Traceback" not in message


def test_templated_header_values_are_refused_per_event_and_named_by_the_hook(tmp_path: Path) -> None:
    """The names are literals even when the values are templates: the action's load-time hook
    (``check_params``) names the problem; parameters that still name one are refused per event."""
    ruleset = _load(tmp_path, "http://127.0.0.1/hook", '{ X-Ok = "{{ event.thing_id }}" }')
    action = ruleset.rules[0].actions[0]
    assert isinstance(action.impl, HttpRequest)
    assert "Host" in action.impl.check_params({"headers": {"Host": "{{ event.thing_id }}"}})[0]
    assert action.impl.check_params({"headers": {"X-Ok": "{{ 1 }}"}}) == []
    with pytest.raises(ValidationError, match=r"Host.*transport's"):
        HttpParams.model_validate({"url": "http://127.0.0.1/hook", "headers": {"Host": "t1"}})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (" http://127.0.0.1/hook", "spaces or control"),
        ("http://127.0.0.1/ho ok", "spaces or control"),
        ("http://127.0.0.1:65536/hook", "out of range"),
        ("http://127.0.0.1:0/hook", "out of range"),
        ("http://example.com\\\\@127.0.0.1/", "backslash"),
        ("http://user:hunter2@127.0.0.1/", "credentials"),
        ("ftp://127.0.0.1/", "not an http"),
        ("http://127.0.0.1:80x/", "Invalid port"),
    ],
)
def test_bad_literal_urls_are_refused_at_load(tmp_path: Path, url: str, why: str) -> None:
    with pytest.raises(RuleSetError, match=why) as refused:
        _load(tmp_path, url)
    assert "r.toml:" in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (" http://127.0.0.1/hook", "spaces or control"),  # passed the allowlist, then failed elsewhere
        ("http://127.0.0.1:65536/hook", "out of range"),  # was an OverflowError from the socket layer
        ("http://user:hunter2@127.0.0.1/", "credentials"),
        ("http://127.0.0.2/x", "not on supermq.http_allowlist"),
        ("http://example.com\\@127.0.0.1/", "backslash"),  # urlsplit's host 127.0.0.1, WHATWG's example.com
    ],
)
async def test_bad_urls_fail_as_one_clear_permanent_error_per_event(url: str, why: str) -> None:
    reg, client = _registry(["127.0.0.1", "127.0.0.1:*"])
    action = reg.get("http.request")
    assert action is not None
    ctx = ActionContext(event=EVENT, rule="r", action_id="a", results={})
    try:
        with pytest.raises(PermanentError, match=why) as failed:
            await action.run(HttpParams.model_construct(url=url, method="GET", headers={}), ctx)
        assert "hunter2" not in str(failed.value)
        if "allowlist" not in why:  # and the parameters are refused when rendered
            with pytest.raises(ValidationError, match=why):
                HttpParams.model_validate({"url": url})
    finally:
        await client.aclose()


async def test_http_request_goes_through_httpx_and_ours_serves_only_supermq() -> None:
    seen: list[bytes] = []
    async with Server(keep_alive(seen=seen)) as server:
        reg, client = _registry(["127.0.0.1"], transport="http1")
        action = reg.get("http.request")
        assert action is not None
        ctx = ActionContext(event=EVENT, rule="r", action_id="a", results={})
        params = HttpParams.model_validate(
            {"url": server.url("/hook"), "headers": {"X-Rule": "1"}, "json_body": {"a": 1}}
        )
        answer = await action.run(params, ctx)
        assert answer["status"] == 200
        assert isinstance(client.external_http.transport, httpx.AsyncHTTPTransport)
        assert isinstance(client.http.transport, Http1Transport)
        with pytest.raises(httpx.UnsupportedProtocol, match="not a configured SuperMQ service"):
            await client.http.request("GET", httpx.URL(server.url("/other")))
        await client.aclose()
    assert len(seen) == 1  # the SuperMQ transport sent nothing to the other origin
    head = seen[0].split(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\nhost: 127.0.0.1:%d" % server.port) == 1
    assert head.count(b"content-length") == 1
    assert b"x-rule: 1" in head
    await asyncio.sleep(0)


def test_literal_header_names_under_templated_values_are_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match=r"r\.toml:.*Host"):
        _load(tmp_path, "http://127.0.0.1/hook", '{ Host = "{{ event.thing_id }}" }')
