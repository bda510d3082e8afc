"""Runtimes on PostgreSQL through URL resolution: persistence, event sourcing, round trips per
commit, pools closed with the runtime, a reply lost mid-commit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore
from clp_postgres.testing import RoundTripProxy

import clp_core as clp
from clp_core.errors import StorageError


def _url(dsn: str, **params: str) -> str:
    return dsn + "?" + "&".join(f"{k}={v}" for k, v in params.items())


async def _backends(dsn: str, application_name: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name))
    finally:
        await connection.close()


async def _wait_for_backends(dsn: str, application_name: str, expected: int) -> int:
    for _ in range(100):  # a closed connection's backend exits a moment later
        count = await _backends(dsn, application_name)
        if count == expected:
            return count
        await asyncio.sleep(0.05)
    return count


async def test_state_persists_across_runtimes_through_the_url(pg_dsn: str, table: str, counter_contract: Any) -> None:
    url = _url(pg_dsn, table=table)
    async with clp.create_runtime(counter_contract(), storage=url, storage_key="counter") as runtime:
        assert isinstance(runtime.storage, PostgresAdapter) and runtime.storage.table == table
        await runtime.execute("increment", {"amount": 2})
        await runtime.execute("increment", {"amount": 3})
    async with clp.create_runtime(counter_contract(), storage=url.replace("postgresql://", "postgres://"),
                                  storage_key="counter") as runtime:
        assert runtime.get_state("count") == 5
        await runtime.execute("increment", {"amount": 1})
    adapter = PostgresAdapter(pg_dsn, table=table)
    document, version = await adapter.load_versioned("counter")
    assert version == 3 and document["state"] == {"count": 6} and document["idempotency"] == []
    await adapter.close()


async def test_two_runtimes_on_one_key_never_lose_an_increment(
        pg_dsn: str, table: str, counter_contract: Any) -> None:
    url = _url(pg_dsn, table=table)
    runtimes = [clp.create_runtime(counter_contract(), storage=url, storage_key="shared") for _ in range(3)]

    async def work(runtime: Any) -> None:
        async with runtime:
            for _ in range(15):
                await runtime.execute("increment", {"amount": 1})

    await asyncio.wait_for(asyncio.gather(*(work(r) for r in runtimes)), 60)
    async with clp.create_runtime(counter_contract(), storage=url, storage_key="shared") as runtime:
        assert runtime.get_state("count") == 45


async def test_event_sourced_runtime_through_the_url(pg_dsn: str, table: str, counter_contract: Any) -> None:
    url = _url(pg_dsn, table=table)
    runtime = clp.create_runtime(counter_contract(), event_store=url, storage_key="order:42", snapshot_every=3)
    async with runtime:
        assert isinstance(runtime.event_store, PostgresEventStore) and runtime.event_store.table == table
        for amount in (1, 2, 3, 4):
            await runtime.execute("increment", {"amount": amount})
        assert await runtime.state_at(2) == {"count": 3}
        assert [e.seq async for e in runtime.history()] == [1, 2, 3, 4]
    again = clp.create_runtime(counter_contract(), event_store=url, storage_key="order:42")
    async with again:
        assert again.get_state("count") == 10
        snapshot = await again.event_store.load_snapshot("order:42")
        assert snapshot is not None and snapshot.seq == 3


async def test_storage_pool_is_closed_with_the_runtime(pg_dsn: str, table: str, counter_contract: Any) -> None:
    name = f"clp-test-{uuid.uuid4().hex[:10]}"
    url = _url(pg_dsn, table=table, application_name=name, min_size="2")  # other parameters go to asyncpg
    runtime = clp.create_runtime(counter_contract(), storage=url, storage_key="k")
    async with runtime:
        await runtime.execute("increment", {})
        pool = runtime.storage.pool
        assert await _backends(pg_dsn, name) == 2
    assert pool.is_closing() and runtime.storage.pool is None
    assert await _wait_for_backends(pg_dsn, name, 0) == 0


async def test_event_store_pool_is_closed_with_the_runtime(pg_dsn: str, table: str, counter_contract: Any) -> None:
    name = f"clp-test-{uuid.uuid4().hex[:10]}"
    runtime = clp.create_runtime(counter_contract(), event_store=_url(pg_dsn, table=table, application_name=name),
                                 storage_key="k")
    async with runtime:
        await runtime.execute("increment", {})
        pool = runtime.event_store.pool
        assert await _backends(pg_dsn, name) == 1
    assert pool.is_closing() and runtime.event_store.pool is None
    assert await _wait_for_backends(pg_dsn, name, 0) == 0


# -- round trips ----------------------------------------------------------------------------


@pytest.fixture
async def proxy(pg_dsn: str) -> Any:
    proxy = await RoundTripProxy("127.0.0.1", 5432).start()
    yield proxy
    await proxy.close()


async def test_a_commit_is_one_round_trip(proxy: RoundTripProxy, table: str, counter_contract: Any) -> None:
    adapter = PostgresAdapter(proxy.dsn(), table=table, max_size=1)
    async with clp.create_runtime(counter_contract(), storage=adapter, storage_key="rt") as runtime:
        for _ in range(2):  # pool, table, the insert's and the update's prepared statements
            await runtime.execute("increment", {"amount": 1})
        proxy.reset()
        for _ in range(10):
            await runtime.execute("increment", {"amount": 1})
        assert proxy.round_trips == 10, f"{proxy.round_trips} round trips for 10 commits"
        assert runtime.get_state("count") == 12


async def test_an_event_sourced_commit_is_one_round_trip(
        proxy: RoundTripProxy, table: str, counter_contract: Any) -> None:
    store = PostgresEventStore(proxy.dsn(), table=table, max_size=1)
    async with clp.create_runtime(counter_contract(), event_store=store, storage_key="rt",
                                  snapshot_every=1000) as runtime:
        await runtime.execute("increment", {"amount": 1})
        proxy.reset()
        for _ in range(10):
            await runtime.execute("increment", {"amount": 1})
        assert proxy.round_trips == 10, f"{proxy.round_trips} round trips for 10 commits"


async def test_a_reply_lost_mid_commit_is_a_storage_error_then_heals(
        proxy: RoundTripProxy, table: str, counter_contract: Any) -> None:
    """The server applies the commit but the connection dies before its reply: the caller gets
    StorageError and the runtime keeps its old state; the next commit finds the newer version
    (ConflictError inside the runtime), reloads and applies on top: no update is lost."""
    adapter = PostgresAdapter(proxy.dsn(), table=table, max_size=1)
    async with clp.create_runtime(counter_contract(), storage=adapter, storage_key="cut") as runtime:
        await runtime.execute("increment", {"amount": 1})
        await runtime.execute("increment", {"amount": 1})
        proxy.lose_next_reply()
        with pytest.raises(StorageError) as info:
            await runtime.execute("increment", {"amount": 10})
        assert type(info.value) is StorageError and info.value.backend == "postgresql"
        assert not isinstance(info.value.__cause__, StorageError)
        assert runtime.get_state("count") == 2
        assert runtime.get_log()[-1].error is not None
        await runtime.execute("increment", {"amount": 100})
        assert runtime.get_state("count") == 112  # 2 + 10 (which did commit) + 100
