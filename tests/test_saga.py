"""Sagas: ordered steps, compensation in reverse, persisted progress, resume after a real kill."""

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
from clp_core.errors import ConfigError


def booking_contract(fail_charge: bool = False) -> clp.Contract:
    async def charge(ctx: Any) -> dict:
        if fail_charge:
            raise RuntimeError("card declined")
        return {"payments": clp.ops.push({"card": ctx.intent.payload["card"], "amount": 120})}

    return clp.create_contract(
        intents={
            "reserveSeat": {"inputs": {"seat": "string"}},
            "releaseSeat": {"inputs": {"seat": "string"}},
            "chargeCard": {"inputs": {"card": "string", "seat": "string"}},
            "issueTicket": {"inputs": {"seat": "string"}},
        },
        guards=[{"name": "seat_free",
                 "deny": lambda ctx: ctx.intent.name == "reserveSeat"
                 and ctx.state.path(f"seats.{ctx.intent.payload['seat']}") == "taken"}],
        transitions={
            "reserve": {"when": lambda ctx: ctx.intent.name == "reserveSeat",
                        "effects": lambda ctx: {f"seats.{ctx.intent.payload['seat']}": "taken"}},
            "release": {"when": lambda ctx: ctx.intent.name == "releaseSeat",
                        "effects": lambda ctx: {f"seats.{ctx.intent.payload['seat']}": "free"}},
            "charge": {"when": lambda ctx: ctx.intent.name == "chargeCard", "effects": charge},
            "issue": {"when": lambda ctx: ctx.intent.name == "issueTicket",
                      "effects": lambda ctx: {"tickets": clp.ops.push(ctx.intent.payload["seat"])}},
        },
    )


async def release_seat(ctx: clp.SagaContext) -> None:
    await ctx.runtime.execute("releaseSeat", {"seat": ctx.entry.intent_payload["seat"]})


def booking_saga() -> clp.Saga:
    return clp.Saga(name="booking", steps={
        "reserve": clp.Step(intent="reserveSeat", payload={"seat": "12A"}, compensate=release_seat),
        "charge": clp.Step(intent="chargeCard",
                           payload=lambda results: {"card": "4242", "seat": results["reserve"].intent_payload["seat"]}),
        "issue": clp.Step(intent="issueTicket", payload={"seat": "12A"}),
    })


async def test_a_saga_completes_in_order() -> None:
    rt = clp.create_runtime(booking_contract())
    result = await rt.run_saga(booking_saga())
    assert result.status == "completed"
    assert list(result.results) == ["reserve", "charge", "issue"]
    assert rt.get_state() == {"seats": {"12A": "taken"}, "payments": [{"card": "4242", "amount": 120}],
                              "tickets": ["12A"]}


async def test_a_failed_step_compensates_completed_steps_in_reverse() -> None:
    seen: list[tuple[str, str | None]] = []

    class Spy:
        def on_saga_event(self, event: clp.Event) -> None:
            seen.append((event.kind, event.data.get("step")))

    rt = clp.create_runtime(booking_contract(fail_charge=True), middleware=[Spy()])
    result = await rt.run_saga(booking_saga())
    assert result.status == "compensated" and result.failed_step == "charge"
    assert isinstance(result.error, clp.errors.EffectError)
    assert rt.get_state() == {"seats": {"12A": "free"}}  # the seat was released
    assert seen == [("saga_started", None), ("step_started", "reserve"), ("step_completed", "reserve"),
                    ("step_started", "charge"), ("step_failed", "charge"), ("compensation_started", "reserve"),
                    ("step_compensated", "reserve"),
                    ("saga_compensated", None)]
    saga_entries = [e for e in rt.get_log() if e.phase == "saga"]
    assert [e.detail["kind"] for e in saga_entries][-2:] == ["step_compensated", "saga_compensated"]
    commits = [e.intent_name for e in rt.get_log() if e.phase == "commit"]
    assert commits == ["reserveSeat", "chargeCard", "releaseSeat"]


async def test_a_guard_denial_fails_the_step_and_a_failing_compensation_fails_the_saga() -> None:
    async def broken(ctx: clp.SagaContext) -> None:
        raise RuntimeError("release service down")

    saga = clp.Saga(name="double", steps={
        "first": clp.Step(intent="reserveSeat", payload={"seat": "1A"}, compensate=broken),
        "second": clp.Step(intent="reserveSeat", payload={"seat": "1A"}),  # seat_free denies
    })
    rt = clp.create_runtime(booking_contract())
    result = await rt.run_saga(saga)
    assert result.status == "failed" and result.failed_step == "second"
    assert isinstance(result.error, clp.errors.GuardDeniedError)
    assert str(result.compensation_error) == "release service down"


async def test_progress_is_recorded_in_its_own_stream(tmp_path: Path) -> None:
    store = clp.SQLiteEventStore(str(tmp_path / "e.db"))
    rt = clp.create_runtime(booking_contract(), storage_key="flight:1", event_store=store)
    result = await rt.run_saga(booking_saga(), saga_id="s1")
    saga_events = await store.get_events("saga:flight:1:s1")
    assert saga_events[0].kind == "saga_started" and saga_events[-1].kind == "saga_completed"
    assert [e.seq async for e in rt.history()] == [1, 2, 3]  # saga progress does not shift the aggregate
    assert result.status == "completed"


def test_saga_definitions_are_checked() -> None:
    with pytest.raises(ConfigError):
        clp.Saga(steps={})
    with pytest.raises(ConfigError, match=r"must be a clp\.Step"):
        clp.Saga(steps={"a": {"intent": "x"}})  # type: ignore[dict-item]


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    import clp_core as clp
    from test_saga import booking_contract, booking_saga

    async def main():
        contract = booking_contract()
        slow = contract.transitions["charge"]
        async def stall(ctx):
            print("charging", flush=True)
            await asyncio.sleep(60)
        import attrs
        transitions = dict(contract.transitions)
        transitions["charge"] = attrs.evolve(slow, effects=stall)
        contract = attrs.evolve(contract, transitions=transitions)
        rt = clp.create_runtime(contract, storage_key="flight:9", event_store={url!r})
        await rt.run_saga(booking_saga(), saga_id="killed")

    asyncio.run(main())
""")


async def test_a_killed_process_is_resumed_by_the_next_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), url=url))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.stdout.readline().strip() != "charging":
            pass
        os.kill(child.pid, signal.SIGKILL)  # mid-saga: seat reserved, charge running
    finally:
        child.wait(timeout=10)
    rt = clp.create_runtime(booking_contract(), storage_key="flight:9", event_store=url)
    await rt.hydrate()
    assert rt.get_state() == {"seats": {"12A": "taken"}}
    results = await rt.resume_sagas({"booking": booking_saga()})
    assert [(r.saga_id, r.status) for r in results] == [("killed", "completed")]
    assert rt.get_state("tickets") == ["12A"] and len(rt.get_state("payments")) == 1
    assert await rt.resume_sagas({"booking": booking_saga()}) == []  # nothing left to resume


async def test_resume_can_compensate_instead(tmp_path: Path) -> None:
    store = clp.MemoryEventStore()
    rt = clp.create_runtime(booking_contract(), storage_key="k", event_store=store)
    # a saga that stopped after its first step (as if its process died there)
    first_only = clp.Saga(name="booking", steps=dict(list(booking_saga().steps.items())[:1]))
    from clp_core import saga as saga_module

    progress = saga_module._Progress(rt, first_only, "half")
    await progress.record("saga_started", steps=["reserve", "charge", "issue"])
    await progress.record("step_started", step="reserve", payload={"seat": "12A"}, after_seq=0)
    await rt.execute("reserveSeat", {"seat": "12A"})  # committed, but the process died before recording it
    results = await rt.resume_sagas({"booking": booking_saga()}, compensate=True)
    assert [r.status for r in results] == ["compensated"]
    assert rt.get_state("seats.12A") == "free"


async def test_resume_needs_the_saga_definitions() -> None:
    from clp_core import saga as saga_module

    rt = clp.create_runtime(booking_contract(), storage_key="k", event_store=clp.MemoryEventStore())
    await saga_module._Progress(rt, clp.Saga(name="mystery", steps=booking_saga().steps), "m").record("saga_started")
    with pytest.raises(ConfigError, match="pass its definition"):
        await rt.resume_sagas({})
    with pytest.raises(ConfigError, match="needs a runtime created with event_store"):
        await clp.create_runtime(booking_contract()).resume_sagas({})


async def _half_done(rt: clp.Runtime, saga_id: str) -> None:
    """A booking saga whose process died after reserving (recorded as running)."""
    from clp_core import saga as saga_module

    progress = saga_module._Progress(rt, booking_saga(), saga_id)
    await progress.record("saga_started", steps=["reserve", "charge", "issue"])
    await progress.record("step_started", step="reserve", payload={"seat": "12A"}, after_seq=rt.last_seq)
    await rt.execute("reserveSeat", {"seat": "12A"})


async def test_resume_only_takes_this_aggregates_sagas() -> None:
    store = clp.MemoryEventStore()
    other = clp.create_runtime(booking_contract(), storage_key="flight:1:extra", event_store=store)
    await _half_done(other, "s9")
    mine = clp.create_runtime(booking_contract(), storage_key="flight:1", event_store=store)
    assert await mine.resume_sagas({"booking": booking_saga()}) == []
    assert [r.status for r in await other.resume_sagas({"booking": booking_saga()})] == ["completed"]


async def test_saga_ids_may_contain_colons() -> None:
    rt = clp.create_runtime(booking_contract())
    await rt.run_saga(booking_saga(), saga_id="order:5")
    assert {e.detail["saga_id"] for e in rt.get_log() if e.phase == "saga"} == {"order:5"}


async def test_two_resumers_compensate_once() -> None:
    store = clp.MemoryEventStore()
    released: list[str] = []

    async def release(ctx: clp.SagaContext) -> None:
        released.append(ctx.saga_id)
        await asyncio.sleep(0.01)
        await ctx.runtime.execute("releaseSeat", {"seat": "12A"})

    saga = clp.Saga(name="booking", steps={**booking_saga().steps,
                                           "reserve": clp.Step(intent="reserveSeat", payload={"seat": "12A"},
                                                               compensate=release)})
    first = clp.create_runtime(booking_contract(), storage_key="k", event_store=store)
    await _half_done(first, "twice")
    await asyncio.sleep(0.2)  # the dead process's last progress is now older than stale_after
    second = clp.create_runtime(booking_contract(), storage_key="k", event_store=store)
    results = await asyncio.gather(first.resume_sagas({"booking": saga}, compensate=True, stale_after=0.1),
                                   second.resume_sagas({"booking": saga}, compensate=True, stale_after=0.1))
    assert released == ["twice"]
    assert sorted(len(r) for r in results) == [0, 1]
