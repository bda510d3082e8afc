"""The runtime on Redis, reached through URLs (so through the plugin's entry point): persistence
and hydration, commits of several runtimes on one key, event sourcing on Redis Streams, one
round trip per commit, TTL, and pools closed on exit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter, RedisEventStore

import clp_core as clp
from clp_core.testing.contracts import counter_contract as counter

from .conftest import count_commands


def charges(calls: list[str]) -> clp.Contract:
    def charge(ctx: Any) -> dict[str, Any]:
        calls.append(ctx.intent.payload["order_id"])
        return {"charged": (ctx.state.get("charged") or 0) + ctx.intent.payload["amount"]}

    return clp.create_contract(
        intents={"charge": {"inputs": {"order_id": "string", "amount": "number"}}},
        state={"charged": "number"},
        transitions={"charge": {"effects": charge, "idempotency_key": lambda ctx: ctx.intent.payload["order_id"]}},
    )


def url(prefix: str, **query: Any) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"redis://127.0.0.1:6379/0?prefix={prefix}{extra}"


# -- storage ------------------------------------------------------------------------------------
async def test_state_persists_and_hydrates_through_a_redis_url(prefix: str, shared_redis: aioredis.Redis) -> None:
    async with clp.create_runtime(counter(), storage=url(prefix), storage_key="clp:counter") as runtime:
        assert isinstance(runtime.storage, RedisAdapter) and runtime.storage.prefix == prefix
        for _ in range(3):
            await runtime.execute("increment", {"amount": 2})
        assert runtime.get_state("count") == 6
    async with clp.create_runtime(counter(), storage=url(prefix), storage_key="clp:counter") as again:
        assert again.get_state("count") == 6
        await again.execute("increment", {})
    raw = await shared_redis.hgetall(f"{prefix}clp:counter".encode())
    assert raw[b"v"] == b"4"


async def test_a_commit_is_one_round_trip(prefix: str) -> None:
    async with clp.create_runtime(counter(), storage=url(prefix), storage_key="k") as runtime:
        await runtime.execute("increment", {})  # loads the script once
        sent = count_commands(runtime.storage.client)
        for _ in range(10):
            await runtime.execute("increment", {})
        assert [str(command[0]) for command in sent] == ["EVALSHA"] * 10
        assert runtime.get_state("count") == 11


async def test_runtimes_sharing_a_key_never_lose_a_commit(prefix: str) -> None:
    runtimes = [clp.create_runtime(counter(), storage=url(prefix), storage_key="shared") for _ in range(4)]

    async def work(runtime: clp.Runtime) -> None:
        for _ in range(10):
            await runtime.execute("increment", {})
            await asyncio.sleep(0)

    try:
        await asyncio.wait_for(asyncio.gather(*(work(r) for r in runtimes)), 60)
    finally:
        for runtime in runtimes:
            await runtime.close()
    async with clp.create_runtime(counter(), storage=url(prefix), storage_key="shared") as check:
        assert check.get_state("count") == 40


async def test_idempotent_commit_replays_after_a_restart(prefix: str) -> None:
    calls: list[str] = []
    async with clp.create_runtime(charges(calls), storage=url(prefix), storage_key="orders") as first:
        await first.execute("charge", {"order_id": "A", "amount": 5})
    async with clp.create_runtime(charges(calls), storage=url(prefix), storage_key="orders") as second:
        entry = await second.execute("charge", {"order_id": "A", "amount": 5})
        assert entry.replay
        assert second.get_state("charged") == 5
    assert calls == ["A"]


async def test_ttl_in_the_url_applies_to_the_runtime_key(prefix: str, shared_redis: aioredis.Redis) -> None:
    async with clp.create_runtime(counter(), storage=url(prefix, ttl=120), storage_key="short-lived") as runtime:
        await runtime.execute("increment", {})
    assert 115_000 < await shared_redis.pttl(f"{prefix}short-lived".encode()) <= 120_000


async def test_async_with_closes_the_storage_pool(prefix: str, shared_redis: aioredis.Redis) -> None:
    name = f"clp-redis-test-{uuid.uuid4().hex}"
    async with clp.create_runtime(counter(), storage=url(prefix, client_name=name), storage_key="k") as runtime:
        await runtime.execute("increment", {})
        assert await connections_named(shared_redis, name) == 1
    assert await eventually_zero(shared_redis, name), "the runtime's exit left Redis connections open"


async def connections_named(client: aioredis.Redis, name: str) -> int:
    return sum(1 for c in await client.client_list() if c.get("name") == name)


async def eventually_zero(client: aioredis.Redis, name: str) -> bool:
    for _ in range(50):
        if await connections_named(client, name) == 0:
            return True
        await asyncio.sleep(0.02)
    return False


# -- event store -------------------------------------------------------------------------------
async def test_event_sourced_runtime_on_redis_streams(prefix: str, shared_redis: aioredis.Redis) -> None:
    events = url(prefix + "events:")
    runtime = clp.create_runtime(counter(), storage_key="order:42", event_store=events, snapshot_every=3)
    async with runtime:
        assert isinstance(runtime.event_store, RedisEventStore)
        for amount in range(1, 8):
            await runtime.execute("increment", {"amount": amount})
        assert runtime.get_state("count") == 28
        assert await runtime.state_at(2) == {"count": 3}
        assert await runtime.state_at(0) == {}
        assert [e.seq async for e in runtime.history()] == list(range(1, 8))
    await runtime.event_store.close()  # see test_async_with_closes_the_event_store_pool
    snapshots = await shared_redis.zrange(f"{prefix}events:snapshots:order:42".encode(), 0, -1, withscores=True)
    assert [score for _, score in snapshots] == [3.0, 6.0]
    assert await shared_redis.xlen(f"{prefix}events:stream:order:42".encode()) == 7

    again = clp.create_runtime(counter(), storage_key="order:42", event_store=events, snapshot_every=3)
    async with again:
        assert again.get_state("count") == 28
        await again.execute("increment", {"amount": 2})
        assert await again.state_at(8) == {"count": 30}
    await again.event_store.close()


async def test_an_event_sourced_commit_is_one_round_trip(prefix: str) -> None:
    runtime = clp.create_runtime(counter(), storage_key="agg", event_store=url(prefix), snapshot_every=1000)
    async with runtime:
        await runtime.execute("increment", {})  # loads the script once
        sent = count_commands(runtime.event_store.client)
        for _ in range(10):
            await runtime.execute("increment", {})
        assert [str(command[0]) for command in sent] == ["EVALSHA"] * 10
    await runtime.event_store.close()


async def test_event_sourced_runtimes_sharing_an_aggregate_never_lose_a_commit(prefix: str) -> None:
    runtimes = [clp.create_runtime(counter(), storage_key="agg", event_store=url(prefix), snapshot_every=5)
                for _ in range(3)]

    async def work(runtime: clp.Runtime) -> None:
        for _ in range(10):
            await runtime.execute("increment", {})
            await asyncio.sleep(0)

    try:
        await asyncio.wait_for(asyncio.gather(*(work(r) for r in runtimes)), 60)
        check = clp.create_runtime(counter(), storage_key="agg", event_store=url(prefix))
        async with check:
            assert check.get_state("count") == 30
        await check.event_store.close()
    finally:
        for runtime in runtimes:
            await runtime.close()
            await runtime.event_store.close()


async def test_async_with_closes_the_event_store_pool(prefix: str, shared_redis: aioredis.Redis) -> None:
    name = f"clp-redis-test-{uuid.uuid4().hex}"
    runtime = clp.create_runtime(counter(), storage_key="agg", event_store=url(prefix, client_name=name))
    async with runtime:
        await runtime.execute("increment", {})
    closed = await eventually_zero(shared_redis, name)
    await runtime.event_store.close()
    assert await eventually_zero(shared_redis, name), "RedisEventStore.close() left connections open"
    if not closed:
        pytest.xfail("clp_core Runtime.close() closes the storage adapter but not the event store")


def test_an_adapter_and_an_event_store_serve_one_asyncio_run_after_another(prefix: str) -> None:
    """A script calling asyncio.run() several times with one runtime's storage: the pool
    forgets the connections of the closed loop instead of failing the next command with
    RuntimeError (Event loop is closed)."""
    adapter = RedisAdapter(url(prefix))
    store = RedisEventStore(url(prefix))

    async def commit(storage: Any, key: str) -> int:
        if storage is store:
            runtime = clp.create_runtime(counter(), storage_key=key, event_store=store)
        else:
            runtime = clp.create_runtime(counter(), storage_key=key, storage=storage)
        runtime.owns_resources = False  # the adapter and the store outlive each loop
        async with runtime:
            await runtime.execute("increment", {})
            return int(runtime.get_state("count"))

    assert [asyncio.run(commit(adapter, "doc")) for _ in range(3)] == [1, 2, 3]
    assert [asyncio.run(commit(store, "events")) for _ in range(3)] == [1, 2, 3]

    async def close() -> None:
        await adapter.close()
        await store.close()

    asyncio.run(close())
