"""``toast_compression``: the compression the plugin gives the big ``data`` columns of the
tables it creates or migrates (lz4 by default where the server has it, pglz, or the server's
default), read from the catalog and from stored values (``pg_column_compression``)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore, migrate
from clp_postgres.testing import fetch_value

import clp_core as clp
from clp_core.errors import ConfigError
from clp_core.plugin_api import PatchLog
from clp_core.resolve import resolve_storage
from clp_core.testing.contracts import counter_contract
from clp_core.testing.patching import big_document

CODES = {"lz4": "l", "pglz": "p", "default": ""}


async def _server_has(dsn: str, method: str) -> bool:
    return bool(await fetch_value(
        dsn, "SELECT $1 = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'", method))


async def _column(dsn: str, table: str) -> str:
    return str(await fetch_value(dsn, "SELECT attcompression::text FROM pg_attribute "
                                    "WHERE attrelid = $1::regclass AND attname = 'data'", table))


async def _stored(dsn: str, table: str, key: str) -> str | None:
    return await fetch_value(dsn, f"SELECT pg_column_compression(data) FROM {table} WHERE key = $1", key)


@pytest.fixture
async def lz4(pg_dsn: str) -> None:
    if not await _server_has(pg_dsn, "lz4"):
        pytest.skip("this PostgreSQL has no lz4 (before 14, or built without it): the column keeps its own")


@pytest.mark.parametrize("setting", [None, "lz4", "pglz", "default"])
async def test_the_state_tables_data_column_and_big_values_get_the_compression(
        pg_dsn: str, table: str, setting: str | None, lz4: None) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table, **({} if setting is None else {"toast_compression": setting}))
    try:
        document = big_document()
        await adapter.save_logged("big", PatchLog().prepare(lambda: document, None), 0)
        method = setting or "lz4"
        assert await _column(pg_dsn, table) == CODES[method]
        server = await fetch_value(pg_dsn, "SHOW default_toast_compression")
        assert await _stored(pg_dsn, table, "big") == (server if method == "default" else method)
        assert await adapter.load_versioned("big") == (document, 1)
    finally:
        await adapter.close()


async def test_first_use_never_alters_a_table_that_exists_and_migrate_does(
        pg_dsn: str, table: str, lz4: None) -> None:
    """An application start takes no lock on a busy table (ALTER would wait behind every
    open transaction, and queue every query behind it); ``clp migrate`` changes the column."""
    first = PostgresAdapter(pg_dsn, table=table, toast_compression="pglz")
    await first.create()
    await first.close()
    assert await _column(pg_dsn, table) == "p"
    reader = await asyncpg.connect(pg_dsn)
    try:
        async with reader.transaction():  # a transaction holding a lock on the table
            await reader.fetch(f"SELECT * FROM {table}")
            second = PostgresAdapter(pg_dsn, table=table, command_timeout=1)  # asks for lz4
            try:
                await second.save("k", {"state": {}})  # no ALTER: it would wait, then time out
            finally:
                await second.close()
    finally:
        await reader.close()
    assert await _column(pg_dsn, table) == "p"
    await migrate(pg_dsn, table=table, events_table=None)  # lz4 by default
    assert await _column(pg_dsn, table) == "l"


async def test_migrate_and_the_event_stores_snapshots(pg_dsn: str, names: Any, lz4: None) -> None:
    table, events = names.table(), names.table("clp_ev")
    await migrate(pg_dsn, table=table, events_table=events, toast_compression="pglz")
    assert await _column(pg_dsn, table) == "p"
    assert await _column(pg_dsn, f"{events}_snapshots") == "p"
    store = PostgresEventStore(pg_dsn, table=events)
    try:
        runtime = clp.create_runtime(counter_contract(), event_store=store, storage_key="c")
        await runtime.execute("increment")
        assert await _column(pg_dsn, f"{events}_snapshots") == "p"  # made by migrate: left as it is
    finally:
        await store.close()
    fresh = PostgresEventStore(pg_dsn, table=names.table("clp_ev"))
    try:
        await fresh.create()
        assert await _column(pg_dsn, f"{fresh.table}_snapshots") == "l"  # made on first use: lz4
    finally:
        await fresh.close()


def test_the_url_option_reaches_the_adapter() -> None:
    adapter = resolve_storage("postgresql://postgres@127.0.0.1:5432/test?toast_compression=pglz")
    assert isinstance(adapter, PostgresAdapter)
    assert adapter.toast_compression == "pglz"
    assert "toast_compression" not in adapter.dsn, "asyncpg would send it to the server as a setting"


@pytest.mark.parametrize("value", ["zstd", "", "LZ4", "lz4; DROP TABLE x"])
def test_an_unknown_compression_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="toast_compression"):
        resolve_storage(f"postgresql://postgres@127.0.0.1:5432/test?toast_compression={value}")
    with pytest.raises(ConfigError, match="toast_compression"):
        PostgresEventStore(toast_compression=value)
