"""A recorded step keeps its meaning across rule edits: it is the action (type and parameter
templates, and its id when one is given), not its position, so a reload that inserts, moves or
changes actions never lets a redelivered event skip an action that did not run, nor repeat one
that did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reactor.actions.base import Action, ActionContext, ActionRegistry, Params
from reactor.delivery.executor import Executor
from reactor.delivery.retry import RetryPolicy
from reactor.delivery.state import MemoryStateStore
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.rules.loader import load_rules

RULE = """
[[rule]]
name = "r"
on = ["thing.create"]
{actions}
"""


class CountParams(Params):
    tag: str


class Count(Action):
    """Remembers every run, by tag."""

    type_name = "count"
    params_model = CountParams

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def run(self, params: CountParams, ctx: ActionContext) -> Any:
        self.runs.append(params.tag)
        return params.tag


def _actions(*specs: tuple[str, str | None]) -> str:
    out = []
    for tag, action_id in specs:
        out.append("[[rule.actions]]")
        if action_id is not None:
            out.append(f'id = "{action_id}"')
        out.append(f'type = "count"\ntag = "{tag}"')
    return "\n".join(out)


def _event() -> Event:
    return Decoder().decode(
        {"operation": "thing.create", "id": "t1"}, source="test", stream="s", entry_id="1-0"
    )


async def _run(
    tmp_path: Path, count: Count, state: MemoryStateStore, actions: str, *, redelivered: bool
) -> None:
    (tmp_path / "r.toml").write_text(RULE.format(actions=actions))
    rules = load_rules(tmp_path, ActionRegistry([count]))
    executor = Executor(lambda: rules, RetryPolicy(attempts=1), state)
    (outcome,) = await executor.execute(_event(), redelivered=redelivered)
    assert outcome.failed is None


async def test_an_inserted_action_runs_and_the_recorded_one_is_not_repeated(tmp_path: Path) -> None:
    count, state = Count(), MemoryStateStore()
    await _run(tmp_path, count, state, _actions(("a", None), ("b", None)), redelivered=False)
    assert count.runs == ["a", "b"]
    # A reload inserts an action first; the event comes again (its ack was lost).
    await _run(tmp_path, count, state, _actions(("new", None), ("a", None), ("b", None)), redelivered=True)
    assert count.runs == ["a", "b", "new"]


async def test_a_moved_action_with_an_id_keeps_its_record(tmp_path: Path) -> None:
    count, state = Count(), MemoryStateStore()
    await _run(tmp_path, count, state, _actions(("a", "first"), ("b", "second")), redelivered=False)
    await _run(tmp_path, count, state, _actions(("b", "second"), ("a", "first")), redelivered=True)
    assert count.runs == ["a", "b"]


async def test_a_changed_action_does_not_count_as_done(tmp_path: Path) -> None:
    count, state = Count(), MemoryStateStore()
    await _run(tmp_path, count, state, _actions(("a", "x")), redelivered=False)
    await _run(tmp_path, count, state, _actions(("changed", "x")), redelivered=True)
    assert count.runs == ["a", "changed"]


async def test_identical_actions_are_distinct_steps(tmp_path: Path) -> None:
    count, state = Count(), MemoryStateStore()
    await _run(tmp_path, count, state, _actions(("a", None)), redelivered=False)
    await _run(tmp_path, count, state, _actions(("a", None), ("a", None)), redelivered=True)
    assert count.runs == ["a", "a"]  # the second of two identical actions had not run
