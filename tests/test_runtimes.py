"""clp.Runtimes: many aggregates of one contract, a bounded LRU of live runtimes sharing one
storage adapter and event store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import ClpError, ConfigError


def counter(emit: Any = None) -> clp.Contract:
    transition: dict[str, Any] = {
        "effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}
    if emit is not None:
        transition["emit"] = emit
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": transition},
    )


class Closes:
    """Middleware counting ``on_close`` (every runtime of the home shares it)."""

    def __init__(self) -> None:
        self.closed = 0

    @clp.hookimpl
    def on_close(self) -> None:
        self.closed += 1


class CountingAdapter(clp.MemoryAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


NO_PLUGINS = {"disable": ["*"]}


async def test_lru_bound_and_eviction_order() -> None:
    async with clp.Runtimes(counter(), max_live=3, config=NO_PLUGINS) as runtimes:
        for key in ("a", "b", "c"):
            await runtimes.execute(key, "increment")
        assert runtimes.live_keys() == ["a", "b", "c"]
        await runtimes.execute("a", "increment")  # a is now the most recently used
        assert runtimes.live_keys() == ["b", "c", "a"]
        async with runtimes.get("c"):
            pass
        assert runtimes.live_keys() == ["b", "a", "c"]
        await runtimes.execute("d", "increment")  # b, the least recently used, goes
        assert runtimes.live_keys() == ["a", "c", "d"]
        assert "b" not in runtimes and len(runtimes) == 3
        await runtimes.execute("e", "increment")
        assert runtimes.live_keys() == ["c", "d", "e"]
        assert (runtimes.created, runtimes.evicted) == (5, 2)


async def test_evicted_runtime_is_closed_and_rehydrated_with_its_state() -> None:
    closes = Closes()
    async with clp.Runtimes(counter(), max_live=1, middleware=[closes], config=NO_PLUGINS) as runtimes:
        await runtimes.execute("a", "increment", {"amount": 2})
        await runtimes.execute("a", "increment", {"amount": 3})
        async with runtimes.get("a") as first:
            pass
        await runtimes.execute("b", "increment")
        assert closes.closed == 1 and runtimes.live_keys() == ["b"]
        async with runtimes.get("a") as again:
            assert again is not first
            assert again.get_state("count") == 5  # hydrated from the shared storage
        assert closes.closed == 2  # b went when a came back
        await runtimes.execute("a", "increment")
        async with runtimes.get("a") as runtime:
            assert runtime.get_state("count") == 6
        assert runtimes.created == 3
    assert closes.closed == 3  # close() closed the last live one


async def test_eviction_drains_deliveries_before_the_key_is_used_again() -> None:
    got: list[str] = []

    async def slow(message: clp.Message) -> None:
        await asyncio.sleep(0.02)
        got.append(message.payload["key"])

    contract = clp.create_contract(
        intents={"increment": {"inputs": {"key": "string"}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1},
                               "emit": lambda ctx: [("counted", {"key": ctx.intent.payload["key"]})]}},
    )
    async with clp.Runtimes(contract, max_live=1, handlers={"counted": slow}, config=NO_PLUGINS) as runtimes:
        await runtimes.execute("a", "increment", {"key": "a"})
        assert got == []  # delivered after the commit, in the background
        await runtimes.execute("b", "increment", {"key": "b"})  # evicts a: drained first
        assert "a" in got
        # a comes back while b is being evicted; both end with their own count
        await asyncio.gather(runtimes.execute("a", "increment", {"key": "a"}),
                             runtimes.execute("b", "increment", {"key": "b"}))
        for key in ("a", "b"):
            async with runtimes.get(key) as runtime:
                assert runtime.get_state("count") == 2
                assert runtime.pending_messages() == [] or all(m.payload["key"] == key
                                                               for m in runtime.pending_messages())
    assert sorted(got) == ["a", "a", "b", "b"]  # close() drained the rest


async def test_concurrent_requests_for_one_key_make_one_runtime() -> None:
    async with clp.Runtimes(counter(), max_live=10, config=NO_PLUGINS) as runtimes:
        await asyncio.gather(*(runtimes.execute("k", "increment") for _ in range(25)))
        assert runtimes.created == 1

        async def holder() -> clp.Runtime:
            async with runtimes.get("other") as runtime:
                await asyncio.sleep(0)
                return runtime

        seen = await asyncio.gather(*(holder() for _ in range(10)))
        assert len({id(r) for r in seen}) == 1 and runtimes.created == 2
        async with runtimes.get("k") as runtime:
            assert runtime.get_state("count") == 25
            assert [e.phase for e in runtime.get_log()].count("commit") == 25


async def test_a_runtime_in_use_is_never_evicted() -> None:
    async with clp.Runtimes(counter(), max_live=1, config=NO_PLUGINS) as runtimes:
        async with runtimes.get("busy") as busy:
            seen: list[list[str]] = []

            for key in ("x", "y", "z"):
                async with runtimes.get(key):
                    seen.append(runtimes.live_keys())  # both in use: over max_live for now
                assert runtimes.live_keys() == ["busy"]  # the idle one went, not the busy one
            await busy.execute("increment")
            assert seen == [["busy", "x"], ["busy", "y"], ["busy", "z"]]
            assert runtimes.evicted == 3
        assert runtimes.live_keys() == ["busy"]
        await runtimes.execute("other", "increment")
        assert runtimes.live_keys() == ["other"]  # released, busy is evictable like any other
        async with runtimes.get("busy") as runtime:
            assert runtime.get_state("count") == 1


async def test_a_call_cancelled_while_an_eviction_closes_does_not_pin_its_runtime() -> None:
    class SlowClose:
        @clp.hookimpl
        async def on_close(self) -> None:
            await asyncio.sleep(0.05)

    async with clp.Runtimes(counter(), max_live=1, middleware=[SlowClose()], config=NO_PLUGINS) as runtimes:
        await runtimes.execute("a", "increment")
        call = asyncio.ensure_future(runtimes.execute("b", "increment"))  # evicts a: waits for its close
        await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await runtimes.execute("c", "increment")  # b, never used, is evictable
        assert runtimes.live_keys() == ["c"]


async def test_the_shared_adapter_is_not_closed_by_eviction() -> None:
    adapter = CountingAdapter()
    runtimes = clp.Runtimes(counter(), storage=adapter, max_live=2, config=NO_PLUGINS)
    for i in range(10):
        await runtimes.execute(f"agg:{i}", "increment", {"amount": i})
    async with runtimes.get("agg:3") as runtime:
        assert runtime.storage is adapter and runtime.owns_resources is False
        assert runtime.get_state("count") == 3
    assert runtimes.evicted >= 8 and adapter.closes == 0
    await runtimes.close()
    assert adapter.closes == 1
    await runtimes.close()  # twice is fine
    assert adapter.closes == 1
    with pytest.raises(ClpError, match="closed"):
        await runtimes.execute("agg:1", "increment")


async def test_owns_resources_false_leaves_the_adapter_open() -> None:
    adapter = CountingAdapter()
    runtimes = clp.Runtimes(counter(), storage=adapter, config=NO_PLUGINS)
    runtimes.owns_resources = False
    await runtimes.execute("a", "increment")
    await runtimes.close()
    assert adapter.closes == 0


async def test_without_storage_the_runtimes_share_one_memory_adapter() -> None:
    async with clp.Runtimes(counter(), max_live=1, config=NO_PLUGINS) as runtimes:
        assert isinstance(runtimes.storage, clp.MemoryAdapter)
        await runtimes.execute("a", "increment", {"amount": 4})
        await runtimes.execute("b", "increment")
        async with runtimes.get("a") as runtime:
            assert runtime.get_state("count") == 4


async def test_storage_url_is_resolved_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with clp.Runtimes(counter(), storage=url, max_live=3, config=NO_PLUGINS) as runtimes:
        assert isinstance(runtimes.storage, clp.SQLiteAdapter)
        for i in range(20):
            await runtimes.execute(f"order:{i % 10}", "increment", {"amount": i + 1})
        async with runtimes.get("order:5") as runtime:
            assert runtime.storage is runtimes.storage
    # a new home (a restart) reads what the first wrote
    async with clp.Runtimes(counter(), storage=url, max_live=3, config=NO_PLUGINS) as runtimes:
        for i in range(10):
            async with runtimes.get(f"order:{i}") as runtime:
                assert runtime.get_state("count") == (i + 1) + (i + 11)


async def test_event_store(tmp_path: Path) -> None:
    store = clp.SQLiteEventStore(str(tmp_path / "events.db"))
    async with clp.Runtimes(counter(), event_store=store, max_live=2, config=NO_PLUGINS) as runtimes:
        assert runtimes.event_store is store
        for i in range(12):
            await runtimes.execute(f"cart:{i % 4}", "increment")
        async with runtimes.get("cart:1") as runtime:
            assert runtime.event_store is store
            assert runtime.get_state("count") == 3
            assert await runtime.state_at(1) == {"count": 1}
        assert runtimes.evicted > 0
    assert await clp.SQLiteEventStore(str(tmp_path / "events.db")).last_seq("cart:2") == 3


async def test_options() -> None:
    with pytest.raises(ConfigError, match="max_live"):
        clp.Runtimes(counter(), max_live=0)
    with pytest.raises(ConfigError, match="storage_key"):
        clp.Runtimes(counter(), storage_key="x")
    async with clp.Runtimes(counter(), config=NO_PLUGINS, log_limit=5) as runtimes:
        for _ in range(10):
            await runtimes.execute("a", "increment")
        async with runtimes.get("a") as runtime:
            assert len(runtime.get_log()) == 5
