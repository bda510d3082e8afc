"""The counter contract behind ``clp demo``, and one run of the demo.

Kept apart from :mod:`clp_core.cli` so it can be tested (and reused) without typer or rich.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from .contract import Contract, ContractBuilder, compiled
from .errors import GuardDeniedError
from .lifecycle import Context, create_runtime
from .log import LogEntry
from .storage import FileSystemAdapter

DEFAULT_DIRECTORY = ".clp-demo"
STORAGE_KEY = "clp:demo-counter"


def _amount(ctx: Any) -> Any:
    amount = ctx.intent.payload.get("amount")
    return 1 if amount is None else amount


def counter_contract() -> Contract:
    """0.1's counter: ``increment`` by an optional amount; negative amounts are denied and
    the guard suggests 0 instead."""
    contract = ContractBuilder(state={"count": "number"})
    contract.intent("increment", inputs={"amount": "number?"})

    @contract.guard(on="increment", suggest=lambda ctx: {"amount": 0})
    def no_negative(ctx: Context) -> bool:
        return bool(_amount(ctx) < 0)

    @contract.transition(on="increment")
    def apply(ctx: Context) -> dict[str, Any]:
        return {"count": (ctx.state.get("count") or 0) + _amount(ctx)}

    return compiled(contract)


@attrs.frozen
class DemoRun:
    """What one run of the demo did: the count before and after, and this run's log."""

    directory: str
    count_before: int
    count_after: int
    entries: tuple[LogEntry, ...]
    denied_guard: str | None
    suggestion: dict[str, Any] | None


async def run_demo(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> DemoRun:
    """Run the counter once on a :class:`FileSystemAdapter` in ``directory``.

    Increments by 1 and by 2, then tries -5: the ``no_negative`` guard denies it and stages
    its suggestion (``amount`` 0), which is accepted and committed. Each run adds 3 to the
    count kept in ``directory``, so successive runs carry the count forward.
    """
    runtime = create_runtime(counter_contract(), storage=FileSystemAdapter(directory), storage_key=STORAGE_KEY)
    denied: GuardDeniedError | None = None
    async with runtime:
        before = runtime.get_state("count") or 0
        await runtime.execute("increment")
        await runtime.execute("increment", {"amount": 2})
        try:
            await runtime.execute("increment", {"amount": -5})
        except GuardDeniedError as exc:
            denied = exc
            await runtime.accept_proposal("increment")
            await runtime.commit()
        after = runtime.get_state("count") or 0
    return DemoRun(
        directory=os.fspath(directory),
        count_before=before,
        count_after=after,
        entries=tuple(runtime.get_log()),
        denied_guard=denied.guard if denied else None,
        suggestion=denied.suggestion if denied else None,
    )


__all__ = ["DEFAULT_DIRECTORY", "STORAGE_KEY", "DemoRun", "counter_contract", "run_demo"]
