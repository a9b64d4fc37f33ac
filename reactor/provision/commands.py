"""``reactor enroll check``, ``reactor provision`` and the provisioning lines of ``reactor status``.

The commands do what the ``provision`` action does, by hand: ``enroll check`` reads only the
files (which enrollment and template apply, the rendered plan, keys masked); ``provision
--dry-run`` also looks up what exists on the platform (reads only) and says what it would
create or reuse; ``provision`` applies the template.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from reactor.errors import ActionError, ConfigError
from reactor.ops.audit import AuditStore
from reactor.provision.engine import Provisioner
from reactor.provision.enrollments import Enrollments, load_enrollments
from reactor.provision.inventory import Inventory, check_inventory_url
from reactor.provision.templates import load_templates
from reactor.settings import Settings
from reactor.supermq.client import SuperMQClient


def run_provision_command(args: Any, settings: Settings, out: TextIO) -> int:
    """The dispatcher of both commands."""
    if args.command == "enroll":
        return asyncio.run(enroll_check_command(args.external_id, settings, out, as_json=args.json))
    return asyncio.run(provision_command(args.external_id, settings, out, dry_run=args.dry_run))


def build_provisioner(settings: Settings, client: SuperMQClient) -> Provisioner:
    """The enrollments and templates of ``[provision]`` (none configured: every device refused)."""
    p = settings.provision
    if not p.enrollments and not p.inventory_url:
        return Provisioner(client, Enrollments(), {})
    enrollments = load_enrollments(p.enrollments, settings.rules.dir)
    inventory = None
    if p.inventory_url:
        check_inventory_url(p.inventory_url, settings.supermq.http_allowlist)
        token = p.inventory_token if p.inventory_token.get_secret_value() else None
        inventory = Inventory(client.external_http, p.inventory_url, token)
    local_ca = Path(settings.certs.local_ca_dir) if settings.certs.issuer == "local" else None
    return Provisioner(client, enrollments, load_templates(p.templates_dir), inventory, local_ca)


def _show(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out)


async def enroll_check_command(
    external_id: str, settings: Settings, out: TextIO, *, as_json: bool = False
) -> int:
    """0 and the plan when ``external_id`` is enrolled; 1 and why not otherwise (reads the files,
    and the inventory when one is configured; never the platform). ``as_json``: both answers as
    one JSON document with ``enrolled``."""
    client = SuperMQClient(settings.supermq)
    try:
        plan = await build_provisioner(settings, client).describe(external_id)
        _show({"enrolled": True, **plan} if as_json else plan, out)
    except ActionError as exc:
        if as_json:
            _show({"enrolled": False, "external_id": external_id, "reason": str(exc)}, out)
        else:
            print(f"refused: {exc}", file=out)
        return 1
    finally:
        await client.aclose()
    return 0


async def provision_command(external_id: str, settings: Settings, out: TextIO, *, dry_run: bool) -> int:
    """Provision one device as the rule would (``--dry-run``: look up, create nothing)."""
    client = SuperMQClient(settings.supermq)
    try:
        provisioner = build_provisioner(settings, client)
        result = await (provisioner.preview(external_id) if dry_run else provisioner.provision(external_id))
    except ActionError as exc:
        print(f"refused: {exc}" if "not enrolled" in str(exc) else f"failed: {exc}", file=out)
        return 1
    finally:
        await client.aclose()
    _show(result, out)
    return 0


async def provision_summary(settings: Settings, audit: AuditStore | None) -> dict[str, Any]:
    """For ``reactor status``: enrollments and templates loaded; today's (UTC) provisionings and
    refusals from the audit trail (at most 10,000 rows read)."""
    summary: dict[str, Any] = {}
    if not settings.provision.enrollments and not settings.provision.inventory_url:
        return summary
    try:
        enrollments = load_enrollments(settings.provision.enrollments, settings.rules.dir)
        templates = load_templates(settings.provision.templates_dir)
    except ConfigError as exc:
        return {"error": str(exc).splitlines()[0]}
    summary |= {
        "enrollments": len(enrollments.individual),
        "groups": len(enrollments.groups),
        "templates": len(templates),
        "inventory": bool(settings.provision.inventory_url),
    }
    if audit is not None:
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = [
            r
            for r in await audit.query(since_ns=int(midnight.timestamp() * 1e9), limit=10_000)
            if r.type == "provision"
        ]
        summary["provisioned_today"] = sum(1 for r in rows if r.outcome == "success")
        failed = [r for r in rows if r.outcome == "failed"]
        summary["refused_today"] = sum(1 for r in failed if "not enrolled" in r.error)
        summary["failed_today"] = len(failed) - summary["refused_today"]
    return summary
