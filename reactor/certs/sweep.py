"""The certificate sweep: walk every bootstrap config (paginated), validate its certificate,
rotate the ones due (unless it is a dry run), and sum it up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from reactor.certs.rotation import Rotator, VerdictSink, device_identity, rotate
from reactor.certs.validate import Policy, validate
from reactor.errors import ActionError
from reactor.ops.console import is_terminal, table
from reactor.settings import CertsSettings
from reactor.supermq.client import SuperMQClient

Progress = Callable[[int, int], None]
_PAGE = 100


@dataclass
class SweepSummary:
    total: int = 0
    without_cert: int = 0
    ok: int = 0
    renew: int = 0
    invalid: int = 0
    rotated: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


async def sweep(
    client: SuperMQClient,
    policy: Policy,
    settings: CertsSettings,
    rotator: Rotator | None,
    *,
    dry_run: bool = True,
    progress: Progress | None = None,
    on_verdict: VerdictSink | None = None,
) -> SweepSummary:
    """Validate every config's certificate; rotate what is due or invalid unless ``dry_run``.

    Each verdict of the walk goes to ``on_verdict``; a rotation reports through its ``rotator``."""
    summary = SweepSummary()
    offset = 0
    while True:
        page = await client.list_configs(offset=offset, limit=_PAGE)
        for listed in page.configs:
            config = await client.with_served_certs(listed)  # listings leave certificates out
            summary.total += 1
            if not config.client_cert:
                summary.without_cert += 1
            else:
                identity = device_identity(settings.bind, config)
                verdict = validate(config.client_cert, policy, ca_pem=config.ca_cert, identity=identity)
                if on_verdict is not None:
                    on_verdict(verdict)
                setattr(summary, verdict.verdict, getattr(summary, verdict.verdict) + 1)
                if verdict.verdict != "ok" and not dry_run and rotator is not None:
                    await _rotate(rotator, config.thing_id, summary)
            if progress is not None:
                progress(summary.total, page.total)
        offset += len(page.configs)
        if not page.configs or offset >= page.total:
            return summary


async def _rotate(rotator: Rotator, config_id: str, summary: SweepSummary) -> None:
    try:
        result = await rotate(rotator, config_id)
    except ActionError as exc:
        summary.failed += 1
        summary.failures.append(f"{config_id}: {exc}")
        return
    summary.rotated += bool(result.get("rotated"))


def print_summary(summary: SweepSummary, out: TextIO, *, dry_run: bool) -> None:
    rows = [
        ("configs", summary.total),
        ("without a certificate", summary.without_cert),
        ("ok", summary.ok),
        ("due for renewal", summary.renew),
        ("invalid", summary.invalid),
        ("rotated", summary.rotated),
        ("rotation failed", summary.failed),
    ]
    title = "dry run: nothing was changed" if dry_run else "sweep done"
    if is_terminal(out):
        table(out, ("configs", "count"), rows, title=title)
        for failure in summary.failures[:20]:
            print(f"  failed: {failure}", file=out)
        return
    print(title, file=out)
    for label, count in rows:
        print(f"  {label:<24}{count:>8}", file=out)
    for failure in summary.failures[:20]:
        print(f"  failed: {failure}", file=out)
