"""Time limits (URL options; one failed operation takes at most 5 s by default) and
StorageError.outcome, shown with clp_core.testing.faults.FaultProxy in front of the shared
server (tables of each test's own)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore
from clp_postgres._common import DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT
from clp_postgres.testing import free_port

import clp_core as clp
from clp_core.errors import ConfigError, StorageError
from clp_core.resolve import resolve_storage
from clp_core.testing.contracts import counter_contract as counter
from clp_core.testing.faults import FaultProxy

MODES = pytest.mark.parametrize("mode", ["storage", "event_store"])


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(pg_dsn) as running:
        yield running


def runtime_on(url: str, mode: str) -> clp.Runtime:
    if mode == "storage":
        return clp.create_runtime(counter(), storage=url, storage_key="counter")
    return clp.create_runtime(counter(), event_store=url, storage_key="counter", snapshot_every=1000)


async def close(runtime: clp.Runtime) -> None:
    await runtime.close()
    if runtime.event_store is not None:
        await runtime.event_store.close()


def test_default_time_limits_total_at_most_five_seconds() -> None:
    assert DEFAULT_CONNECT_TIMEOUT + DEFAULT_COMMAND_TIMEOUT <= DEFAULT_OPERATION_TIMEOUT <= 5
    adapter = PostgresAdapter()
    assert adapter._client.operation_timeout == DEFAULT_OPERATION_TIMEOUT


def test_url_time_limits_reach_the_pool_client() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test?command_timeout=2&connect_timeout=1&operation_timeout=4"
    adapter = resolve_storage(url)
    assert isinstance(adapter, PostgresAdapter)
    client = adapter._client
    assert (client.connect_timeout, client.command_timeout, client.operation_timeout) == (1, 2, 4)
    assert "timeout" not in client.dsn, "asyncpg would send unknown query options to the server"


@pytest.mark.parametrize("query", ["command_timeout=abc", "connect_timeout=0", "operation_timeout=-1",
                                   "command_timeout=inf"])
def test_bad_time_limits_are_config_errors(query: str) -> None:
    with pytest.raises(ConfigError, match=query.split("=")[0]):
        resolve_storage(f"postgresql://postgres@127.0.0.1:5432/test?{query}")
    with pytest.raises(ConfigError):
        PostgresEventStore(**{query.split("=")[0]: query.split("=")[1]})  # type: ignore[arg-type]


@MODES
async def test_a_commit_against_a_stalled_server_fails_within_the_default_bound(
        proxy: FaultProxy, pg_dsn: str, table: str, mode: str) -> None:
    runtime = runtime_on(proxy.url_for(f"{pg_dsn}?table={table}"), mode)
    try:
        async with runtime:
            await runtime.execute("increment", {"amount": 2})
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                await runtime.execute("increment", {"amount": 1})
            elapsed = time.monotonic() - started
            assert elapsed < 5.5, f"a stalled server held the commit {elapsed:.1f} s"
            assert info.value.backend.startswith("postgresql")
            assert info.value.outcome == "unknown"
            assert runtime.get_state() == {"count": 2}
    finally:
        proxy.forward()
        await close(runtime)


async def test_a_server_stalled_before_connecting_is_not_applied(
        proxy: FaultProxy, pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(proxy.url_for(pg_dsn), table=table, connect_timeout=0.3)
    proxy.stall()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await adapter.save("k", {"x": 1})
        assert time.monotonic() - started < 2
        assert info.value.outcome == "not_applied"
    finally:
        proxy.forward()
        await adapter.close()


async def test_a_lost_reply_is_an_unknown_outcome_although_the_write_landed(
        proxy: FaultProxy, pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(proxy.url_for(pg_dsn), table=table, command_timeout=0.5)
    direct = PostgresAdapter(pg_dsn, table=table)
    try:
        await adapter.save_versioned("k", {"x": 1}, 0)
        await adapter.save_versioned("k", {"x": 2}, 1)  # the UPDATE is prepared: next time it is sent at once
        proxy.drop_replies()
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"did not finish within command_timeout=0\.5 s") as info:
            await adapter.save_versioned("k", {"x": 3}, 2)
        assert time.monotonic() - started < 1.5, "the statement's bound, not the operation's (5 s)"
        assert info.value.outcome == "unknown"
        assert await direct.load_versioned("k") == ({"x": 3}, 3)
    finally:
        proxy.forward()
        await adapter.close()
        await direct.close()


async def test_operation_timeout_caps_the_whole_operation(proxy: FaultProxy, pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(proxy.url_for(pg_dsn), table=table, command_timeout=None, operation_timeout=0.4)
    try:
        await adapter.save("k", {"x": 1})
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"operation_timeout=0\.4") as info:
            await adapter.save("k", {"x": 2})
        assert time.monotonic() - started < 1.5
        assert info.value.outcome == "unknown"
    finally:
        proxy.forward()
        await adapter.close()


@MODES
async def test_a_refused_connection_is_not_applied(mode: str) -> None:
    runtime = runtime_on(f"postgresql://postgres@127.0.0.1:{free_port()}/test", mode)
    try:
        with pytest.raises(StorageError) as info:
            async with runtime:
                pass
        assert info.value.outcome == "not_applied"
        assert info.value.backend.startswith("postgresql")
    finally:
        await close(runtime)
