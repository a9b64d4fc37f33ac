"""Applying a template to an enrolled device, step by step, idempotently, undoing on failure.

The steps, in order: ``thing`` (reused when the config exists or an enabled thing of that name
does, else created), ``channels`` (each reused by exact name, else created), ``config`` (the
bootstrap config: external id and key, channels, content; reused when the external id has one),
``cert`` (optional: the certs service issues one and it is stored in the config, unless the config
serves one already), ``activate`` (the config's state 1, which makes the bootstrap service connect
the thing to its channels).

Every step looks up what exists first, so a redelivery or a second attempt never creates a second
thing or config; one device is provisioned by one task at a time in this process (a lock per
external id), and across processes the rule's throttle keeps attempts apart. When a step fails
for good (``PermanentError``) what this attempt created is removed again, newest first, and the
error names the step; a transient failure leaves it in place for the retry to reuse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.certs.ca import LocalCA
from reactor.durations import parse_go_duration
from reactor.errors import ActionError, PermanentError
from reactor.provision.enrollments import Enrollment, Enrollments, mask
from reactor.provision.inventory import Inventory
from reactor.provision.templates import ProvisionTemplate
from reactor.supermq.client import SuperMQClient
from reactor.supermq.models import Config


@dataclass
class _Attempt:
    external_id: str
    created: list[tuple[str, str]] = field(default_factory=list)  # (kind, id), oldest first
    step: str = ""


class Provisioner:
    """Applies templates for enrolled devices through a ``SuperMQClient``."""

    def __init__(
        self,
        client: SuperMQClient,
        enrollments: Enrollments,
        templates: dict[str, ProvisionTemplate],
        inventory: Inventory | None = None,
        local_ca_dir: Path | None = None,
    ) -> None:
        self._client = client
        #: ``certs.issuer = "local"``: certificates from this CA, else from the certs service.
        self.local_ca_dir = local_ca_dir
        self.inventory = inventory
        self.enrollments = enrollments
        self.templates = templates
        self._locks: dict[str, asyncio.Lock] = {}

    async def plan(self, external_id: str) -> tuple[Enrollment, ProvisionTemplate, dict[str, Any]]:
        """Which enrollment (the files first, then the inventory) and template apply, and the
        rendered plan (``PermanentError`` when the device is not enrolled or its template is
        unknown)."""
        enrollment = self.enrollments.find(external_id)
        if enrollment is None and self.inventory is not None:
            enrollment = await self.inventory.lookup(external_id)
        if enrollment is None:
            why = self.enrollments.why_not(external_id)
            raise PermanentError(why + (", nor the inventory" if self.inventory is not None else ""))
        template = self.templates.get(enrollment.template)
        if template is None:
            raise PermanentError(
                f"enrollment of {external_id!r} ({enrollment.source}) names template "
                f"{enrollment.template!r}, which is not loaded (loaded: {sorted(self.templates) or 'none'})"
            )
        context = {"external_id": external_id, "template": template.name, "fields": enrollment.fields}
        return enrollment, template, template.render(context)

    async def describe(self, external_id: str) -> dict[str, Any]:
        """``reactor enroll check``: the enrollment (key masked), the template and the plan."""
        enrollment, template, plan = await self.plan(external_id)
        return {"enrollment": enrollment.describe(), "template": template.where, "plan": plan}

    async def preview(self, external_id: str) -> dict[str, Any]:
        """A dry run: the plan and, per step, whether it would reuse or create (reads only)."""
        enrollment, template, plan = await self.plan(external_id)
        client = self._client
        config = await client.find_config(external_id)
        things = [] if config is not None else await client.find_things(plan["thing"]["name"])
        steps: dict[str, Any] = {
            "thing": f"reuse {config.thing_id if config else things[0].id}" if config or things else "create",
            "channels": {},
            "config": f"reuse {config.thing_id}" if config is not None else "create",
            "activate": "done" if config is not None and config.state == 1 else "activate",
        }
        for channel in plan["channels"]:
            found = await client.find_channels(channel["name"])
            enabled = [c for c in found if c.status != "disabled"]
            steps["channels"][channel["name"]] = (
                f"reuse {enabled[0].id}" if enabled else f"enable {found[0].id}" if found else "create"
            )
        if not plan["activate"]:
            steps.pop("activate")
        return {"enrollment": enrollment.describe(), "template": template.where, "plan": plan, "steps": steps}

    async def provision(self, external_id: str) -> dict[str, Any]:
        """Provision ``external_id`` (or find it provisioned); the result names what was created."""
        enrollment, _, plan = await self.plan(external_id)
        lock = self._locks.setdefault(external_id, asyncio.Lock())
        try:
            async with lock:
                return await self._apply(enrollment, plan)
        finally:
            if not lock.locked() and self._locks.get(external_id) is lock:
                del self._locks[external_id]  # bounded by the devices in flight

    async def _apply(self, enrollment: Enrollment, plan: dict[str, Any]) -> dict[str, Any]:
        attempt = _Attempt(enrollment.external_id)
        try:
            result = await self._steps(enrollment, plan, attempt)
        except PermanentError as exc:
            undone = await self._undo(attempt)
            raise PermanentError(
                f"provision of {enrollment.external_id!r} failed at step {attempt.step!r}: {exc}; "
                f"undone: {', '.join(undone) or 'nothing was created'}",
                status=exc.status,
            ) from exc
        return result

    async def _steps(self, enrollment: Enrollment, plan: dict[str, Any], attempt: _Attempt) -> dict[str, Any]:
        client = self._client
        attempt.step = "config lookup"
        config = await client.find_config(enrollment.external_id)
        attempt.step = "thing"
        thing_id = config.thing_id if config is not None else await self._thing(plan["thing"], attempt)
        attempt.step = "channels"
        channel_ids = [await self._channel(c, attempt) for c in plan["channels"]]
        attempt.step = "config"
        if config is None:
            await client.add_config(
                {
                    "thing_id": thing_id,
                    "external_id": enrollment.external_id,
                    "external_key": enrollment.external_key.get_secret_value(),
                    "channels": channel_ids,
                    "name": plan["config"]["name"],
                    "content": plan["config"]["content"],
                }
            )
            attempt.created.append(("config", thing_id))
            config = await client.view_config(thing_id)
        if plan["cert"] and not (await client.with_served_certs(config)).client_cert:
            attempt.step = "cert"
            cert, key, ca = await self._issue(config, plan["cert"]["ttl"])
            await client.update_certs(thing_id, client_cert=cert, client_key=key, ca_cert=ca)
        if plan["activate"] and config.state != 1:
            attempt.step = "activate"
            await client.change_state(thing_id, 1)
        return {
            "external_id": enrollment.external_id,
            "external_key": mask(enrollment.external_key.get_secret_value()),
            "thing_id": thing_id,
            "channel_ids": channel_ids,
            "created": [f"{kind} {ident}" for kind, ident in attempt.created],
        }

    async def _issue(self, config: Config, ttl: str) -> tuple[str, str, str]:
        """(certificate, key, CA) from the certs service, or from the local CA (``certs.issuer =
        "local"``: CN = the thing key, as the certs service issues)."""
        if self.local_ca_dir is None:
            cert = await self._client.issue_cert(config.thing_id, ttl)
            return cert.client_cert, cert.client_key, ""
        try:
            ca = LocalCA.load(self.local_ca_dir)
            pem, key, _, _ = ca.issue(config.thing_key, config.thing_id, parse_go_duration(ttl))
        except (OSError, ValueError) as exc:
            raise PermanentError(f"the local CA in {self.local_ca_dir} cannot issue: {exc}") from None
        return pem, key, ca.pem

    async def _thing(self, spec: dict[str, Any], attempt: _Attempt) -> str:
        """The thing of that name to reuse (one without a config: the device's own from an
        earlier attempt), else a new one. A thing that bootstraps another device is not taken."""
        found = await self._client.find_things(spec["name"])
        for thing in found:
            try:
                owner = await self._client.view_config(thing.id)
            except PermanentError as exc:
                if exc.status in (403, 404):  # no config (v0.14.0 answers an unknown one 404 too)
                    return thing.id
                raise
            raise PermanentError(
                f"thing {thing.id} named {spec['name']!r} bootstraps external id {owner.external_id!r}; "
                "the template's thing name must be unique per device"
            )
        thing = await self._client.create_thing(spec["name"], _table(spec["metadata"], "thing metadata"))
        attempt.created.append(("thing", thing.id))
        return thing.id

    async def _channel(self, spec: dict[str, Any], attempt: _Attempt) -> str:
        found = await self._client.find_channels(spec["name"])
        if found and found[0].status != "disabled":
            return found[0].id
        if found:  # Mainflux: an undone attempt's channel, its name still taken; enabled again
            await self._client.enable_channel(found[0].id)
            attempt.created.append(("channel", found[0].id))
            return found[0].id
        channel = await self._client.create_channel(
            spec["name"], _table(spec["metadata"], "channel metadata")
        )
        attempt.created.append(("channel", channel.id))
        return channel.id

    async def _undo(self, attempt: _Attempt) -> list[str]:
        """Remove what the attempt created, newest first; what cannot be removed is named."""
        remove = {
            "config": self._client.remove_config,
            "channel": self._client.remove_channel,
            "thing": self._client.remove_thing,
        }
        undone = []
        for kind, ident in reversed(attempt.created):
            try:
                await remove[kind](ident)
                undone.append(f"{kind} {ident} removed")
            except ActionError as exc:
                undone.append(f"{kind} {ident} NOT removed ({exc})")
        return undone


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PermanentError(f"{what} must render to a table, not {type(value).__name__}")
    return value
