"""``log``: write a line to the reactor's log (and the report); ``noop``: do nothing."""

from __future__ import annotations

from typing import Any, Literal

import structlog

from reactor.actions.base import Action, ActionContext, Params
from reactor.redact import redact, redact_text


class LogParams(Params):
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: dict[str, Any] = {}


class LogAction(Action):
    type_name = "log"
    params_model = LogParams
    has_effect = False

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._log = logger

    async def run(self, params: LogParams, ctx: ActionContext) -> dict[str, Any]:
        secrets = ctx.event.secrets
        message = redact_text(params.message, secrets)
        await self._log.alog(
            _LEVELS[params.level],
            "action.log",
            message=message,
            rule=ctx.rule,
            entry_id=ctx.event.entry_id,
            device=ctx.event.device,
            **redact(params.fields, secrets=secrets),
        )
        return {"message": message}


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class NoopParams(Params):
    pass


class NoopAction(Action):
    """Does nothing; for benchmarks and for rules that only record a match."""

    type_name = "noop"
    params_model = NoopParams
    has_effect = False
    inert = True

    async def run(self, params: NoopParams, ctx: ActionContext) -> None:
        return None
