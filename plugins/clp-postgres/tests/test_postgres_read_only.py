"""A read-only open (``read_only=True`` or ``?mode=ro``) creates no table: a missing one is a
clear error; writes are refused before anything is sent."""

from __future__ import annotations

import asyncpg
import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore

from clp_core.errors import StorageError
from clp_core.resolve import resolve_event_store, resolve_storage

from .conftest import Names


async def _exists(dsn: str, table: str) -> bool:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await connection.fetchval("SELECT to_regclass($1)", f"public.{table}") is not None
    finally:
        await connection.close()


async def test_a_read_only_open_of_a_missing_table_creates_nothing(pg_dsn: str, names: Names) -> None:
    table, events = names.table(), names.table()
    adapter = resolve_storage(f"{pg_dsn}?table={table}", read_only=True)
    store = resolve_event_store(f"{pg_dsn}?table={events}", read_only=True)
    assert isinstance(adapter, PostgresAdapter) and isinstance(store, PostgresEventStore)
    try:
        with pytest.raises(StorageError, match=f"no such database table public.{table}"):
            await adapter.load("k")
        with pytest.raises(StorageError, match=f"no such database table public.{events}"):
            await store.last_seq("k")
    finally:
        await adapter.close()
        await store.close()
    assert not await _exists(pg_dsn, table)
    assert not await _exists(pg_dsn, events) and not await _exists(pg_dsn, f"{events}_snapshots")


async def test_read_only_reads_an_existing_table_and_refuses_writes(pg_dsn: str, names: Names) -> None:
    table = names.table()
    writer = PostgresAdapter(pg_dsn, table=table)
    await writer.save("k", {"state": {"n": 1}})
    await writer.close()
    reader = resolve_storage(f"{pg_dsn}?table={table}&mode=ro")
    assert reader.read_only
    try:
        assert await reader.load("k") == {"state": {"n": 1}}
        for write in (lambda: reader.save("k", {}), lambda: reader.save_versioned("k", {}, 1),
                      lambda: reader.delete("k")):
            with pytest.raises(StorageError, match="read-only"):
                await write()
        assert await reader.load("k") == {"state": {"n": 1}}
    finally:
        await reader.close()
