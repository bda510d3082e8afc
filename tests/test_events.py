"""Event sourcing through the runtime: events per commit, hydration, snapshots, time travel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clp_core as clp
from clp_core import SQLiteEventStore, ops
from clp_core.errors import ConfigError, CorruptStateError, HistoryError
from clp_core.events import (
    FORMAT_VERSION,
    Event,
    MemoryEventStore,
    event_from_json,
    event_to_json,
    register_upcaster,
    replay,
)


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"add": {"inputs": {"amount": "number", "key": "string?"}},
                 "tag": {"inputs": {"tag": "string"}},
                 "untag": {"inputs": {"tag": "string"}}},
        guards=[{"name": "positive", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0,
                 "suggest": lambda ctx: {"amount": 0}}],
        transitions={
            "add": {"when": lambda ctx: ctx.intent.name == "add",
                    "effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + ctx.intent.payload["amount"]},
                    "idempotency_key": lambda ctx: ctx.intent.payload.get("key")},
            "tag": {"when": lambda ctx: ctx.intent.name == "tag",
                    "effects": lambda ctx: {"meta.tags": ops.push(ctx.intent.payload["tag"])}},
            "untag": {"when": lambda ctx: ctx.intent.name == "untag",
                      "effects": lambda ctx: {"meta.tags": ops.filter(lambda t: t != ctx.intent.payload["tag"])}},
        },
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryEventStore() if request.param == "memory" else SQLiteEventStore(str(tmp_path / "events.db"))


async def test_each_commit_appends_one_event(store: Any) -> None:
    rt = clp.create_runtime(contract(), storage_key="acct:1", event_store=store)
    await rt.execute("add", {"amount": 5})
    await rt.execute("tag", {"tag": "vip"})
    with pytest.raises(clp.errors.GuardDeniedError):
        await rt.execute("add", {"amount": -1})  # a denial appends nothing
    await rt.accept_proposal("add")
    await rt.commit()
    events = [e async for e in rt.history()]
    assert [(e.seq, e.intent_name, e.transition) for e in events] == [(1, "add", "add"), (2, "tag", "tag"),
                                                                      (3, "add", "add")]
    assert events[1].diff[0].op == "push" and events[1].diff[0].path == "meta.tags"
    assert events[0].proposal_source == "user" and events[2].proposal_source == "guard:positive"
    assert [(o.name, o.denied) for o in events[0].guard_outcomes] == [("positive", False)]
    assert events[0].format_version == FORMAT_VERSION and events[0].aggregate_id == "acct:1"


async def test_hydration_rebuilds_from_snapshot_and_tail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with clp.create_runtime(contract(), storage_key="a", event_store=url, snapshot_every=3) as rt:
        for i in range(7):
            await rt.execute("add", {"amount": i})
        await rt.execute("tag", {"tag": "x"})
        live = rt.get_state()
    store = SQLiteEventStore(f"{tmp_path}/events.db")
    snapshot = await store.load_snapshot("a")
    assert snapshot is not None and snapshot.seq == 6
    async with clp.create_runtime(contract(), storage_key="a", event_store=store) as again:
        assert again.get_state() == live == {"count": 21, "meta": {"tags": ["x"]}}
        await again.execute("add", {"amount": 1})
        assert [e.seq async for e in again.history()][-1] == 9


async def test_state_at_every_point_and_errors(store: Any) -> None:
    rt = clp.create_runtime(contract(), storage_key="t", event_store=store, snapshot_every=2,
                            initial_state={"count": 100})
    for amount in (1, 2, 3):
        await rt.execute("add", {"amount": amount})
    assert await rt.state_at(0) == {"count": 100}
    assert [(await rt.state_at(s))["count"] for s in (1, 2, 3)] == [101, 103, 106]
    for bad in (-1, 4, "2", True):
        with pytest.raises(HistoryError):
            await rt.state_at(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a runtime created with event_store"):
        await clp.create_runtime(contract()).state_at(1)


async def test_two_runtimes_on_one_stream_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    one = clp.create_runtime(contract(), storage_key="shared", event_store=url)
    two = clp.create_runtime(contract(), storage_key="shared", event_store=url)

    async def bump(rt: clp.Runtime) -> None:
        for _ in range(50):
            await rt.execute("add", {"amount": 1})

    await asyncio.gather(bump(one), bump(two))
    replayed = await replay(SQLiteEventStore(f"{tmp_path}/events.db"), "shared")
    assert replayed.state["count"] == 100 and replayed.seq == 100


async def test_idempotency_holds_across_restart_through_events(store: Any) -> None:
    rt = clp.create_runtime(contract(), storage_key="i", event_store=store)
    await rt.execute("add", {"amount": 5, "key": "pay-1"})
    again = clp.create_runtime(contract(), storage_key="i", event_store=store)
    entry = await again.execute("add", {"amount": 5, "key": "pay-1"})
    assert entry.replay and again.get_state("count") == 5
    assert await store.last_seq("i") == 1


def test_upcasting_old_events_on_read() -> None:
    event = Event(aggregate_id="a", seq=1, kind="commit", intent_name="add", payload={"amount": 1})
    raw = json.loads(event_to_json(event))
    raw["data"]["format_version"] = 0
    raw["data"].pop("intent_name")
    raw["data"]["intent"] = "add"  # the old field name
    old = json.dumps(raw)
    with pytest.raises(CorruptStateError, match="no upcaster"):
        event_from_json(old, backend="test")

    def rename(data: dict[str, Any]) -> dict[str, Any]:
        data["intent_name"] = data.pop("intent")
        return data

    register_upcaster(0, rename)
    try:
        assert event_from_json(old, backend="test").intent_name == "add"
    finally:
        from clp_core import events

        events._upcasters.pop(0)


commands = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(-3, 10)),
        st.tuples(st.sampled_from(["tag", "untag"]), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=commands, snapshot_every=st.integers(1, 5))
def test_replay_always_equals_live_state(script: list[tuple[str, Any]], snapshot_every: int) -> None:
    async def run() -> None:
        store = MemoryEventStore()
        rt = clp.create_runtime(contract(), storage_key="h", event_store=store, snapshot_every=snapshot_every)
        for name, arg in script:
            payload = {"amount": arg} if name == "add" else {"tag": arg}
            try:
                await rt.execute(name, payload)
            except clp.errors.GuardDeniedError:
                pass
        assert (await replay(store, "h")).state == rt.get_state()
        assert (await replay(store, "h", until=None, base=None)).state == rt.get_state()
        fresh = clp.create_runtime(contract(), storage_key="h", event_store=store)
        await fresh.hydrate()
        assert fresh.get_state() == rt.get_state()

    asyncio.run(run())


async def test_closing_the_runtime_closes_its_event_store() -> None:
    closed: list[str] = []

    class Store(MemoryEventStore):
        async def close(self) -> None:
            closed.append("events")

    async with clp.create_runtime(contract(), event_store=Store()) as rt:
        await rt.execute("add", {"amount": 1})
    assert closed == ["events"]


async def test_the_initial_state_is_the_streams_base_for_outside_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with clp.create_runtime(contract(), storage_key="b", event_store=url,
                                  initial_state={"count": 100}) as rt:
        await rt.execute("add", {"amount": 1})
        await rt.execute("add", {"amount": 2})
        live = rt.get_state()
    store = SQLiteEventStore(f"{tmp_path}/events.db")
    assert (await replay(store, "b")).state == live == {"count": 103}  # no base given: from the stream
    assert (await replay(store, "b", until=0)).state == {"count": 100}
    assert [e.seq for e in await store.get_events("b")] == [1, 2]  # the base is a snapshot, not an event
    await store.close()


@pytest.mark.parametrize(("store", "message"), [
    ("nosuchdb://x", "unknown event store scheme 'nosuchdb'"),
    ("no/scheme.db", "event store URL 'no/scheme.db' has no scheme"),
    (object(), r"event store object has no append\(\) method"),
])
def test_bad_event_stores_are_refused(store: Any, message: str) -> None:
    with pytest.raises(clp.errors.StorageError, match=message):
        clp.create_runtime(contract(), event_store=store)


async def test_a_conflict_catches_up_by_the_tail_not_a_full_reload() -> None:
    class Counting(MemoryEventStore):
        def __init__(self) -> None:
            super().__init__()
            self.snapshots_read, self.reads = 0, list[int]()

        async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Any:
            self.snapshots_read += 1
            return await super().load_snapshot(aggregate_id, at_or_before)

        async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> Any:
            self.reads.append(after)
            return await super().get_events(aggregate_id, after, until)

    store = Counting()
    one = clp.create_runtime(contract(), storage_key="shared", event_store=store)
    two = clp.create_runtime(contract(), storage_key="shared", event_store=store)
    await one.hydrate()
    await two.hydrate()
    for _ in range(3):
        await two.execute("add", {"amount": 1})
    store.reads.clear()
    read_before = store.snapshots_read
    await one.execute("add", {"amount": 10})  # conflicts, catches up from seq 0 by reading events 1-3
    assert one.get_state("count") == 13 and one.last_seq == 4
    assert store.snapshots_read == read_before  # no replay from a snapshot
    assert store.reads == [0]
