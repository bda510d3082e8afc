"""Parallel saga steps: clp.Parallel groups run concurrently, compensate in reverse order of
completion, and resume after a crash in the middle of a group (in process and SIGKILL'd)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core import saga as saga_module
from clp_core.errors import ConfigError
from clp_core.log import entry_to_dict


def trip_contract(fail: str | None = None, stall: str | None = None) -> clp.Contract:
    def book(kind: str) -> Any:
        async def effects(ctx: Any) -> dict:
            if kind == fail:
                raise RuntimeError(f"{kind} sold out")
            if kind == stall:
                print("stalling", flush=True)
                await asyncio.sleep(60)
            return {f"booked.{kind}": ctx.intent.payload["ref"], "count": (ctx.state.get("count") or 0) + 1}
        return effects

    def named(kind: str) -> Any:
        return lambda ctx: ctx.intent.name == kind

    kinds = ("flight", "hotel", "car", "cancel")
    return clp.create_contract(
        intents={k: {"inputs": {"ref": "string"}} for k in kinds},
        transitions={
            **{k: {"when": named(k), "effects": book(k)} for k in kinds[:3]},
            "cancel": {"when": lambda ctx: ctx.intent.name == "cancel",
                       "effects": lambda ctx: {f"booked.{ctx.intent.payload['ref']}": None}},
        })


def cancel(kind: str, order: list[str] | None = None) -> Any:
    async def compensate(ctx: clp.SagaContext) -> None:
        if order is not None:
            order.append(ctx.step)
        await ctx.runtime.execute("cancel", {"ref": kind})
    return compensate


def trip(order: list[str] | None = None, car_delay: float = 0.0) -> clp.Saga:
    async def car_payload(results: Any) -> dict:
        await asyncio.sleep(car_delay)
        return {"ref": "car"}

    return clp.Saga(name="trip", steps={
        "flight": clp.Step(intent="flight", payload={"ref": "FL1"}, compensate=cancel("flight", order)),
        "stay": clp.Parallel({
            "hotel": clp.Step(intent="hotel", payload=lambda results: {"ref": results["flight"].intent_payload["ref"]},
                              compensate=cancel("hotel", order)),
            "car": clp.Step(intent="car", payload=car_payload, compensate=cancel("car", order)),
        }),
    })


async def test_a_group_runs_its_members_and_the_saga_completes() -> None:
    store = clp.MemoryEventStore()
    rt = clp.create_runtime(trip_contract(), storage_key="trip:1", event_store=store)
    result = await rt.run_saga(trip(), saga_id="s")
    assert result.status == "completed"
    assert set(result.results) == {"flight", "hotel", "car"} and next(iter(result.results)) == "flight"
    assert rt.get_state("booked") == {"flight": "FL1", "hotel": "FL1", "car": "car"}
    events = await store.get_events("saga:trip:1:s")
    assert events[0].data["groups"] == {"stay": ["hotel", "car"]}
    done = [(e.data["step"], e.data.get("group")) for e in events if e.kind == "step_completed"]
    assert done[0] == ("flight", None) and sorted(done[1:]) == [("car", "stay"), ("hotel", "stay")]


async def test_members_payload_functions_run_concurrently() -> None:
    both = asyncio.Event()
    arrived: list[str] = []

    def meet(name: str) -> Any:
        async def payload(results: Any) -> dict:
            arrived.append(name)
            if len(arrived) == 2:
                both.set()
            await asyncio.wait_for(both.wait(), timeout=5)  # sequential members would time out here
            return {"ref": name}
        return payload

    saga = clp.Saga(name="meet", steps={"g": clp.Parallel({
        "hotel": clp.Step(intent="hotel", payload=meet("hotel")), "car": clp.Step(intent="car", payload=meet("car"))})})
    result = await clp.create_runtime(trip_contract()).run_saga(saga)
    assert result.status == "completed" and sorted(arrived) == ["car", "hotel"]


async def test_a_failing_member_compensates_completed_steps_in_reverse_order_of_completion() -> None:
    order: list[str] = []
    rt = clp.create_runtime(trip_contract(fail="car"), storage_key="t", event_store=clp.MemoryEventStore())
    result = await rt.run_saga(trip(order, car_delay=0.05))
    assert result.status == "compensated" and result.failed_step == "car"
    assert isinstance(result.error, clp.errors.ClpError)
    assert order == ["hotel", "flight"]  # the member that completed, then the earlier step
    assert rt.get_state("booked") == {"flight": None, "hotel": None}


async def test_saga_definitions_with_groups_are_checked() -> None:
    with pytest.raises(ConfigError):
        clp.Parallel({})
    with pytest.raises(ConfigError, match=r"must be a clp\.Step"):
        clp.Parallel({"a": clp.Parallel({"b": clp.Step(intent="x")})})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="used twice"):
        clp.Saga(steps={"a": clp.Step(intent="x"), "g": clp.Parallel({"a": clp.Step(intent="y")})})
    saga = trip()
    assert list(saga.members) == ["flight", "hotel", "car"]


async def test_resume_mid_group_runs_only_what_did_not_commit() -> None:
    """The process died with both members started: hotel committed but was not recorded,
    car never committed."""
    store = clp.MemoryEventStore()
    rt = clp.create_runtime(trip_contract(), storage_key="t", event_store=store)
    progress = saga_module._Progress(rt, trip(), "crashed")
    await progress.record("saga_started", steps=["flight", "stay"])
    await progress.record("step_started", step="flight", payload={"ref": "FL1"}, after_seq=0, intent_id="i-flight")
    flight = await rt.execute("flight", {"ref": "FL1"}, intent_id="i-flight")
    await progress.record("step_completed", step="flight", entry=entry_to_dict(flight))
    await progress.record("step_started", step="hotel", group="stay", payload={"ref": "FL1"}, after_seq=1,
                          intent_id="i-hotel")
    await progress.record("step_started", step="car", group="stay", payload={"ref": "car"}, after_seq=1,
                          intent_id="i-car")
    await rt.execute("hotel", {"ref": "FL1"}, intent_id="i-hotel")
    # a commit of the same intent and payload by someone else is not mistaken for car's
    await rt.execute("car", {"ref": "car"})
    results = await rt.resume_sagas({"trip": trip()})
    assert [(r.saga_id, r.status) for r in results] == [("crashed", "completed")]
    assert rt.get_state("count") == 4  # flight, hotel, the other car, and car: hotel was not run again
    events = await store.get_events("saga:t:crashed")
    recovered = [e.data["step"] for e in events if e.data.get("recovered")]
    assert recovered == ["hotel"]


async def test_resume_after_a_failed_member_compensates_the_rest() -> None:
    order: list[str] = []
    store = clp.MemoryEventStore()
    rt = clp.create_runtime(trip_contract(), storage_key="t", event_store=store)
    progress = saga_module._Progress(rt, trip(order), "half")
    await progress.record("saga_started", steps=["flight", "stay"])
    for name in ("flight", "hotel"):
        await progress.record("step_started", step=name, payload={"ref": "FL1"}, after_seq=rt.last_seq,
                              intent_id=f"i-{name}")
        entry = await rt.execute(name, {"ref": "FL1"}, intent_id=f"i-{name}")
        if name == "flight":
            await progress.record("step_completed", step=name, entry=entry_to_dict(entry))
    await progress.record("step_failed", step="car", group="stay", error="RuntimeError: sold out")
    results = await rt.resume_sagas({"trip": trip(order)})
    assert [r.status for r in results] == ["compensated"]
    assert order == ["hotel", "flight"]


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    import clp_core as clp
    from test_saga_parallel import trip, trip_contract

    async def main():
        rt = clp.create_runtime(trip_contract(stall="car"), storage_key="trip:9", event_store={url!r})
        await rt.run_saga(trip(car_delay=0.3), saga_id="killed")

    asyncio.run(main())
""")


async def test_a_process_killed_mid_group_is_resumed_by_the_next_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), url=url))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.stdout.readline().strip() != "stalling":
            pass
        os.kill(child.pid, signal.SIGKILL)  # flight and hotel committed, car inside its commit
    finally:
        child.wait(timeout=10)
    rt = clp.create_runtime(trip_contract(), storage_key="trip:9", event_store=url)
    await rt.hydrate()
    assert rt.get_state("booked") == {"flight": "FL1", "hotel": "FL1"}
    results = await rt.resume_sagas({"trip": trip()})
    assert [(r.saga_id, r.status) for r in results] == [("killed", "completed")]
    assert rt.get_state("booked") == {"flight": "FL1", "hotel": "FL1", "car": "car"}
    assert rt.get_state("count") == 3  # nothing ran twice
    assert await rt.resume_sagas({"trip": trip()}) == []
    await rt.close()
