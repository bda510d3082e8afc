"""The courier starts each delivery eagerly after a commit: a handler that never waits costs no
task; one that waits goes on in a task that ``drain`` waits for and that can be cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import clp_core as clp

KEY = "clp:courier"


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"ping": {"inputs": {}}},
        transitions={"ping": {"effects": lambda ctx: {"n": (ctx.state.get("n") or 0) + 1},
                              "emit": lambda ctx: [("pinged", {"n": ctx.state["n"]})]}},
    )


async def test_a_handler_that_never_waits_is_delivered_before_execute_returns_without_a_task() -> None:
    got: list[int] = []
    created: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_task_factory(lambda lp, coro, **kw: created.append(coro) or asyncio.Task(coro, loop=lp, **kw))
    try:
        async def handler(message: clp.Message) -> None:
            got.append(message.payload["n"])

        runtime = clp.create_runtime(contract(), storage_key=KEY, handlers={"pinged": handler})
        for _ in range(3):
            await runtime.execute("ping")
        assert got == [1, 2, 3] and created == []
    finally:
        loop.set_task_factory(None)
    await runtime.drain()
    assert runtime.pending_messages() == []


async def test_a_handler_that_waits_goes_on_in_a_task_that_drain_waits_for() -> None:
    got: list[int] = []
    release = asyncio.Event()

    async def handler(message: clp.Message) -> None:
        await asyncio.sleep(0)
        await release.wait()
        await asyncio.sleep(0.01)
        got.append(message.payload["n"])

    runtime = clp.create_runtime(contract(), storage_key=KEY, handlers={"pinged": handler})
    await runtime.execute("ping")
    await runtime.execute("ping")
    assert got == [] and len(runtime.pending_messages()) == 2
    release.set()
    await runtime.drain()
    assert sorted(got) == [1, 2] and runtime.pending_messages() == []


async def test_cancelling_a_waiting_delivery_reaches_the_handler() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def handler(message: clp.Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    runtime = clp.create_runtime(contract(), storage_key=KEY, handlers={"pinged": handler})
    await runtime.execute("ping")
    assert started.is_set()
    (task,) = runtime._courier._tasks
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == ["cancelled"] and task.cancelled()
    assert len(runtime.pending_messages()) == 1  # not delivered: still owed
