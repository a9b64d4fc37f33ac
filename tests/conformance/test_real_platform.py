"""The shipped rules, run by the reactor daemon over the real Mainflux's Redis streams, judged by
the real state read back through the real API (never by the reactor's own report of it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import nats
from nats.aio.msg import Msg

from reactor.certs.ca import LocalCA
from tests.conformance.conftest import RunReactor, eventually
from tests.conformance.deployment import ACCESS_TTL_S, ADMIN_EMAIL, ADMIN_SECRET, Deployment
from tests.conformance.platform import Platform
from tests.conftest import reactor_cli

DAY = 86_400.0


def _steps(outcome: object) -> list[tuple[str, str, bool]]:
    return [(r.rule, s.action_id, s.ok) for r in outcome.rules for s in r.steps]  # type: ignore[attr-defined]


async def test_onboarding_activates_and_connects_exactly_its_channels(
    platform: Platform, run_reactor: RunReactor
) -> None:
    async with run_reactor() as running:
        device = platform.device(n_channels=2)
        [outcome] = await running.settled("config.create", device.thing_id)
    assert outcome.dead_letter is None, outcome.dead_letter
    assert _steps(outcome) == [("onboard-new-config", "activate", True)]  # no things.connect sent
    assert platform.config(device.thing_id)["state"] == 1
    assert platform.connected_channels(device.thing_id) == set(device.channels)


async def test_push_configuration_on_bootstrap_reaches_the_device_over_nats(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment
) -> None:
    ctrl = platform.channel("ctrl", {"type": "control"})
    data = platform.channel("data")  # no metadata: the view serves "metadata": null
    thing = platform.thing("pusher")
    tag = thing["id"][:8]
    config = {
        "thing_id": thing["id"],
        "external_id": f"x-{tag}",
        "external_key": f"k-{tag}",
        "channels": [data, ctrl],
        "name": "pusher",
        "content": '{"mode":"eco"}',
    }
    broker = await nats.connect(deployment.nats_url)
    received: list[bytes] = []

    async def on_message(msg: Msg) -> None:
        received.append(msg.data)

    await broker.subscribe(f"channels.{ctrl}", cb=on_message)
    try:
        async with run_reactor() as running:
            platform.ok("POST", "bootstrap", "/things/configs", json=config)
            await running.settled("config.create", thing["id"])
            fetched = platform.http.get(
                f"{deployment.url('bootstrap')}/things/bootstrap/x-{tag}",
                headers={"Authorization": f"Thing k-{tag}"},
            )
            assert fetched.status_code == 200
            [outcome] = await running.settled("thing.bootstrap", thing["id"])
            await eventually(lambda: bool(received), 10, "the message on NATS")
            await asyncio.sleep(0.5)  # the reactor's own view (config.list) has come and gone
            own_views = running.of("config.list", thing["id"])
    finally:
        await broker.close()
    assert outcome.dead_letter is None, outcome.dead_letter
    assert [s[:2] for s in _steps(outcome)] == [
        ("push-config-on-bootstrap", "config"),
        ("push-config-on-bootstrap", "push"),
        ("push-config-on-bootstrap", "notify"),
    ]
    content = json.loads(platform.config(thing["id"])["content"])
    assert content["mode"] == "eco"
    assert content["reactor"]["bootstrapped"] is True
    assert len(received) == 1
    assert b'"vs":"updated"' in received[0].replace(b" ", b"")
    assert own_views
    assert all(not o.rules for o in own_views)


async def test_own_views_do_not_feed_rules_but_an_operators_view_does(
    platform: Platform, run_reactor: RunReactor, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "watch.toml").write_text(
        '[[rule]]\nname = "glob"\non = ["config.*"]\n[[rule.actions]]\ntype = "log"\nmessage = "x"\n\n'
        '[[rule]]\nname = "exact"\non = ["config.list"]\n[[rule.actions]]\ntype = "log"\nmessage = "x"\n\n'
        '[[rule]]\nname = "mine"\non = ["config.list"]\nown_events = true\n[[rule.actions]]\n'
        'type = "log"\nmessage = "x"\n\n'
        '[[rule]]\nname = "viewer"\non = ["thing.change_state"]\n[[rule.actions]]\n'
        'type = "bootstrap.view_config"\nconfig_id = "{{ event.thing_id }}"\n'
    )
    async with run_reactor(rules={"dir": rules, "reload_interval_s": 0}) as running:
        device = platform.device(n_channels=1)
        platform.ok("PUT", "bootstrap", f"/things/state/{device.thing_id}", json={"state": 1})
        await running.settled("thing.change_state", device.thing_id)  # the rule viewed the config
        [own] = await running.settled("config.list", device.thing_id)
        platform.config(device.thing_id)  # an operator's view
        views = await running.settled("config.list", device.thing_id, count=2)
    assert [r.rule for r in own.rules] == ["mine"]  # the reactor's own view: only own_events rules
    assert [r.rule for r in views[1].rules] == ["exact", "mine"]  # an operator's: exact names only


async def test_channel_removal_leaves_configs_without_it(platform: Platform, run_reactor: RunReactor) -> None:
    async with run_reactor() as running:
        device = platform.device(n_channels=2)
        await running.settled("config.create", device.thing_id)
        gone, kept = device.channels
        platform.ok("POST", "things", f"/channels/{gone}/disable")
        [outcome] = await running.settled("channel.remove_handler")
    assert outcome.dead_letter is None, outcome.dead_letter
    assert [r.rule for r in outcome.rules] == ["drop-removed-channel"]
    assert [c["id"] for c in platform.config(device.thing_id)["channels"]] == [kept]
    assert kept in platform.connected_channels(device.thing_id)


async def test_thing_disable_is_a_removal_and_enable_is_not(
    platform: Platform, run_reactor: RunReactor
) -> None:
    async with run_reactor() as running:
        device = platform.device(n_channels=1)
        await running.settled("config.create", device.thing_id)
        platform.ok("POST", "things", f"/things/{device.thing_id}/disable")
        [removed] = await running.settled("thing.remove", device.thing_id)
        await eventually(
            lambda: platform.config_status(device.thing_id) == 404, 10, "bootstrap removed the config"
        )
        platform.ok("POST", "things", f"/things/{device.thing_id}/enable")
        [enabled] = await running.settled("thing.enable", device.thing_id)
        handlers = await running.settled("config.remove_handler", count=2)
    assert [r.rule for r in removed.rules] == ["thing-removed"]
    assert (enabled.event.raw_operation, enabled.rules) == ("thing.remove", [])  # type: ignore[union-attr]
    assert all(o.dead_letter is None for o in [removed, enabled, *handlers])
    empty = [o.event for o in handlers if o.event is not None and not o.event.get("config_id")]
    assert empty
    assert all(e.device is None for e in empty)
    assert all(o.rules == [] for o in handlers)


def _ca(tmp_path: Path) -> tuple[LocalCA, Path]:
    directory = tmp_path / "ca"
    directory.mkdir()
    ca = LocalCA("Conformance CA")
    ca.save(directory)
    return ca, directory


async def test_certificate_verdicts_on_config_create_and_cert_update(
    platform: Platform, run_reactor: RunReactor, tmp_path: Path
) -> None:
    ca, trust = _ca(tmp_path)
    stranger = LocalCA("Nobody's CA")
    async with run_reactor(certs={"trust_dir": trust}) as running:
        good_thing = platform.thing("good")
        cert, key, _, _ = ca.issue(good_thing["credentials"]["secret"], good_thing["id"], 300 * DAY)
        good = platform.device(n_channels=1, client_cert=cert, client_key=key, ca_cert=ca.pem)
        bad_cert, bad_key, _, _ = stranger.issue("someone", "x", 300 * DAY)
        bad = platform.device(n_channels=1, client_cert=bad_cert, client_key=bad_key)
        [ok] = await running.settled("config.create", good.thing_id)
        [refused] = await running.settled("config.create", bad.thing_id)
        platform.ok(
            "PATCH",
            "bootstrap",
            f"/things/configs/certs/{good.thing_id}",
            json={"client_cert": bad_cert, "client_key": bad_key, "ca_cert": ""},
        )
        [updated] = await running.settled("cert.update", good.thing_id)
    assert ok.dead_letter is None
    assert ("validate-config-cert", "check", True) in _steps(ok)
    for outcome in (refused, updated):
        assert outcome.dead_letter is not None
        assert (outcome.dead_letter.rule, outcome.dead_letter.reason) == (
            "validate-config-cert",
            "action_failed",
        )
        assert "certificate invalid" in outcome.dead_letter.error


async def test_rotation_confirms_where_the_platform_serves_the_certificate(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path
) -> None:
    ca, trust = _ca(tmp_path)
    thing = platform.thing("rotating")
    old_cert, old_key, _, _ = ca.issue(thing["credentials"]["secret"], thing["id"], 5 * DAY)  # due
    tag = thing["id"][:8]
    platform.ok(
        "POST",
        "bootstrap",
        "/things/configs",
        json={  # before the reactor: no config.create seen
            "thing_id": thing["id"],
            "external_id": f"r-{tag}",
            "external_key": f"k-{tag}",
            "channels": [],
            "content": "{}",
            "client_cert": old_cert,
            "client_key": old_key,
            "ca_cert": ca.pem,
        },
    )
    certs = {"trust_dir": trust, "issuer": "local", "local_ca_dir": trust}
    async with run_reactor(certs=certs) as running:
        fetched = platform.http.get(
            f"{deployment.url('bootstrap')}/things/bootstrap/r-{tag}",
            headers={"Authorization": f"Thing k-{tag}"},
        )
        assert fetched.status_code == 200
        outcome = (await running.settled("thing.bootstrap", thing["id"]))[0]
        await asyncio.sleep(1.0)  # the reactor's own device fetches come back as thing.bootstrap
        bootstraps = running.of("thing.bootstrap", thing["id"])
    assert outcome.dead_letter is None, outcome.dead_letter
    rotated = next(s for r in outcome.rules for s in r.steps if s.type == "certs.rotate")
    assert rotated.result["rotated"] is True
    assert rotated.result["old_revoked"] is True
    served = platform.http.get(
        f"{deployment.url('bootstrap')}/things/bootstrap/r-{tag}", headers={"Authorization": f"Thing k-{tag}"}
    ).json()
    assert served["client_cert"] not in ("", old_cert)
    # The reactor read the certificate twice the device's way (before, and to confirm): both reads
    # came back as thing.bootstrap, and neither fed a rule.
    assert len(bootstraps) >= 3, [o.event.entry_id for o in bootstraps if o.event is not None]
    assert [o for o in bootstraps[1:] if o.rules] == []


async def test_an_expired_token_is_refreshed(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment
) -> None:
    async with run_reactor() as running:
        first = platform.device(n_channels=1)
        await running.settled("config.create", first.thing_id)
        await asyncio.sleep(ACCESS_TTL_S + 1.5)  # the reactor's access token has expired
        refreshes = deployment.log("users").count("Method refresh_token")
        # things answers an expired token on /connect with 403/500, not 401: renewed ahead of time
        assert await running.reactor.client.connect(first.thing_id, first.channels) == first.channels
        second = platform.device(n_channels=1)
        [outcome] = await running.settled("config.create", second.thing_id)
    assert outcome.dead_letter is None, outcome.dead_letter
    assert platform.config(second.thing_id)["state"] == 1
    assert deployment.log("users").count("Method refresh_token") > refreshes  # refreshed, not a new login


async def test_profile_auto_reads_health(run_reactor: RunReactor) -> None:
    async with run_reactor(supermq={"profile": "auto"}) as running:
        await eventually(lambda: bool(running.reactor.client.profile_reason), 10, "the profile chosen")
    assert running.reactor.client.profile.name == "mainflux"
    assert "version 0.13.0" in running.reactor.client.profile_reason


async def test_repeated_connect_counts_as_done(platform: Platform, run_reactor: RunReactor) -> None:
    async with run_reactor() as running:
        device = platform.device(n_channels=2)
        await running.settled("config.create", device.thing_id)
        client = running.reactor.client
        again = await client.connect(device.thing_id, device.channels)  # already connected by activation
        assert sorted(again) == sorted(device.channels)
        assert (
            await client.connect(device.thing_id, device.channels[:1], connect=False) == device.channels[:1]
        )
    assert platform.connected_channels(device.thing_id) == set(device.channels[1:])


async def test_certs_inspect_and_sweep_read_the_served_certificate(
    platform: Platform, deployment: Deployment, run_reactor: RunReactor, tmp_path: Path
) -> None:
    ca, trust = _ca(tmp_path)
    thing = platform.thing("inspected")
    cert, key, _, _ = ca.issue(thing["credentials"]["secret"], thing["id"], 300 * DAY)
    tag = thing["id"][:8]
    platform.ok(
        "POST",
        "bootstrap",
        "/things/configs",
        json={
            "thing_id": thing["id"],
            "external_id": f"i-{tag}",
            "external_key": f"k-{tag}",
            "channels": [platform.channel("ins")],  # so the push rule would take a read for a bootstrap
            "content": "{}",
            "client_cert": cert,
            "client_key": key,
            "ca_cert": ca.pem,
        },
    )
    env = {
        "REACTOR_SUPERMQ__PROFILE": "auto",
        "REACTOR_SUPERMQ__USERS_URL": deployment.url("users"),
        "REACTOR_SUPERMQ__THINGS_URL": deployment.url("things"),
        "REACTOR_SUPERMQ__BOOTSTRAP_URL": deployment.url("bootstrap"),
        "REACTOR_SUPERMQ__CERTS_URL": deployment.url("certs"),
        "REACTOR_SUPERMQ__IDENTITY": ADMIN_EMAIL,
        "REACTOR_SUPERMQ__SECRET": ADMIN_SECRET,
        "REACTOR_CERTS__TRUST_DIR": str(trust),
        "REACTOR_REDIS__URL": deployment.events_url,  # the daemon's: where the loop guard is shared
    }
    async with run_reactor() as running:  # a daemon beside the commands
        inspected, swept = await asyncio.to_thread(_inspect_and_sweep, thing["id"], env)
        await running.settled("thing.bootstrap", thing["id"], count=2)  # one read each
        await asyncio.sleep(1.0)
        reads = running.of("thing.bootstrap")
    assert all(o.rules == [] for o in reads), [r.rule for o in reads for r in o.rules]  # not a bootstrap
    assert inspected.returncode == 0, inspected.stderr
    assert "verdict: OK" in inspected.stdout  # the view has no certificate: read the device's way
    assert swept.returncode == 0, swept.stderr
    ok = next(line for line in swept.stdout.splitlines() if line.strip().startswith("ok "))
    assert int(ok.split()[-1]) >= 1, swept.stdout


def _inspect_and_sweep(
    thing_id: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    inspected = reactor_cli("certs", "inspect", "--thing", thing_id, env=env)
    return inspected, reactor_cli("certs", "sweep", "--dry-run", env=env)
