"""Server failures, on a private cluster each test starts, stops and restarts (the shared
server on 5432 is never touched): a commit while the server is down is a StorageError naming
postgresql and changes nothing; once the server is back, commits work again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore
from clp_postgres.testing import PostgresCluster

import clp_core as clp
from clp_core.errors import StorageError


def _runtime(kind: str, cluster: PostgresCluster, contract: Any) -> Any:
    if kind == "storage":
        return clp.create_runtime(contract, storage=PostgresAdapter(cluster.dsn, connect_timeout=5),
                                  storage_key="counter")
    return clp.create_runtime(contract, event_store=PostgresEventStore(cluster.dsn, connect_timeout=5),
                              storage_key="counter")


@pytest.mark.parametrize("kind", ["storage", "event_store"])
async def test_server_stops_then_restarts(private_cluster: PostgresCluster, counter_contract: Any, kind: str) -> None:
    runtime = _runtime(kind, private_cluster, counter_contract())
    async with runtime:
        await runtime.execute("increment", {"amount": 1})
        await runtime.execute("increment", {"amount": 1})
        log_size = len(runtime.get_log())

        await asyncio.to_thread(private_cluster.stop)
        for _ in range(2):
            with pytest.raises(StorageError) as info:
                await runtime.execute("increment", {"amount": 10})
            assert type(info.value) is StorageError, "a plain StorageError, not a conflict"
            assert "postgresql" in info.value.backend and "[postgresql" in str(info.value)
            assert runtime.get_state("count") == 2, "a failed commit changed the state"
        assert all(e.error for e in runtime.get_log()[log_size:] if e.phase == "commit")

        await asyncio.to_thread(private_cluster.start)  # same port, same data
        await runtime.execute("increment", {"amount": 100})
        assert runtime.get_state("count") == 102

    async with _runtime(kind, private_cluster, counter_contract()) as again:
        assert again.get_state("count") == 102


async def test_hydration_with_the_server_down_is_a_storage_error(
        private_cluster: PostgresCluster, counter_contract: Any) -> None:
    await asyncio.to_thread(private_cluster.stop)
    runtime = _runtime("storage", private_cluster, counter_contract())
    with pytest.raises(StorageError) as info:
        async with runtime:
            pass
    assert info.value.backend == "postgresql"
    await asyncio.to_thread(private_cluster.start)
    async with runtime:
        await runtime.execute("increment", {})
        assert runtime.get_state("count") == 1


async def test_server_stop_during_concurrent_commits(private_cluster: PostgresCluster, counter_contract: Any) -> None:
    """Commits in flight while the server shuts down: each either commits or raises
    StorageError; what the runtime reports is what the database holds."""
    adapter = PostgresAdapter(private_cluster.dsn, connect_timeout=5, max_size=4)
    runtimes = [clp.create_runtime(counter_contract(), storage=adapter, storage_key="busy") for _ in range(4)]
    for runtime in runtimes:
        await runtime.hydrate()
    committed = 0
    failed = 0

    async def work(runtime: Any) -> None:
        nonlocal committed, failed
        for _ in range(200):
            try:
                await runtime.execute("increment", {"amount": 1})
                committed += 1
            except StorageError as exc:
                assert exc.backend == "postgresql"
                failed += 1
                return

    workers = [asyncio.ensure_future(work(r)) for r in runtimes]
    await asyncio.sleep(0.1)
    await asyncio.to_thread(private_cluster.stop)
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    assert failed >= 1
    await asyncio.to_thread(private_cluster.start)
    check = PostgresAdapter(private_cluster.dsn)
    try:
        stored = await check.load("busy")
        # a commit whose reply was lost may have been applied: never fewer than reported
        assert stored is not None and committed <= stored["state"]["count"] <= committed + failed
    finally:
        await check.close()
        await adapter.close()


async def test_a_role_that_may_not_create_tables_uses_migrated_ones(private_cluster: PostgresCluster) -> None:
    """Production setup: tables made by `clp migrate` as the owner, the application runs as a
    role without CREATE; first use must not fail on CREATE TABLE IF NOT EXISTS."""
    import asyncpg
    from clp_postgres import migrate

    owner = await asyncpg.connect(private_cluster.dsn)
    try:
        await owner.execute("CREATE ROLE app LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await owner.close()
    app_dsn = private_cluster.dsn.replace("postgres@", "app@")

    adapter = PostgresAdapter(app_dsn)
    with pytest.raises(StorageError, match="clp migrate") as info:
        await adapter.save("k", {"x": 1})
    assert info.value.backend == "postgresql"
    await adapter.close()

    tables = await migrate(private_cluster.dsn)
    assert tables == ["public.clp_state", "public.clp_state_patches", "public.clp_events",
                      "public.clp_events_snapshots"]
    owner = await asyncpg.connect(private_cluster.dsn)
    try:
        await owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app")
    finally:
        await owner.close()
    adapter = PostgresAdapter(app_dsn)
    store = PostgresEventStore(app_dsn)
    try:
        await adapter.save("k", {"x": 1})
        assert await adapter.load("k") == {"x": 1}
        assert await store.last_seq("a") == 0
    finally:
        await adapter.close()
        await store.close()
