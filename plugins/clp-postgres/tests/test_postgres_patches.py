"""Diff-sized saves on PostgreSQL: a patch is a row of ``<table>_patches`` and leaves the
TOASTed base untouched (WAL bytes show it), a commit on a big state is one round trip, stray
and missing patch rows, and tables made before patches (migrated, refused, or read as they are).
The semantics themselves are the conformance cases (clp_core.testing.patching), run by
test_postgres_adapter.py."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from clp_postgres import PostgresAdapter, migrate
from clp_postgres.testing import PostgresCluster, RoundTripProxy

import clp_core as clp
from clp_core.errors import ConfigError, CorruptStateError, StorageError
from clp_core.plugin_api import Patch, PatchLog, Write
from clp_core.testing.patching import big_document


def _patch(count: int) -> Write:
    return Write(Patch(((("state", "count"), count),)).encode(), compacts=False)


async def _sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        if not args and ";" in query:
            await connection.execute(query)
            return []
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def _record_statements(adapter: PostgresAdapter) -> list[str]:
    """The statements of the adapter's ``fetchval`` calls from now on, in order."""
    sent: list[str] = []
    run = adapter._run

    class Recorder:
        def __init__(self, connection: Any) -> None:
            self.connection = connection

        def __getattr__(self, name: str) -> Any:
            return getattr(self.connection, name)

        async def fetchval(self, query: str, *args: Any) -> Any:
            sent.append(query)
            return await self.connection.fetchval(query, *args)

    async def recording(what: str, fn: Any) -> Any:
        return await run(what, lambda connection: fn(Recorder(connection)))

    adapter._run = recording  # type: ignore[method-assign]
    return sent


async def _based(adapter: PostgresAdapter, key: str, document: dict[str, Any] | None = None) -> int:
    return await adapter.save_logged(key, PatchLog().prepare(lambda: document or big_document(), None), 0)


async def test_a_patch_is_a_row_and_the_base_is_left_as_it_was(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    version = await _based(adapter, "k")
    before = await _sql(pg_dsn, f'SELECT data::text AS data FROM "{table}" WHERE key = $1', "k")
    for count in (1, 2):
        version = await adapter.save_logged("k", _patch(count), version)
    rows = await _sql(pg_dsn, f'SELECT data::text AS data, version, base_version FROM "{table}" WHERE key = $1', "k")
    assert rows[0]["data"] == before[0]["data"] and (rows[0]["version"], rows[0]["base_version"]) == (3, 1)
    patches = await _sql(pg_dsn, f'SELECT version, data->\'data\' AS patch FROM "{table}_patches" WHERE key = $1 '
                                 "ORDER BY version", "k")
    assert [(p["version"], json.loads(p["patch"])) for p in patches] == [
        (2, {"set": [[["state", "count"], 1]], "unset": []}), (3, {"set": [[["state", "count"], 2]], "unset": []})]
    assert await adapter.load_versioned("k") == (big_document(2), 3)
    await adapter.close()


async def test_appending_to_a_big_toasted_document_writes_little_wal(private_cluster: PostgresCluster) -> None:
    """The base (~300 kB of JSON, over 100 kB stored) is not rewritten: an appended patch
    costs WAL of the order of the patch, not of the document (a rewrite costs over 100 kB)."""
    document = {"state": {"count": 0, **{f"k{i}": i for i in range(20_000)}}}
    adapter = PostgresAdapter(private_cluster.dsn)
    version = await _based(adapter, "big", document)
    (stored,) = await _sql(private_cluster.dsn, "SELECT pg_column_size(data) AS n FROM clp_state")
    assert stored["n"] > 100_000
    version = await adapter.save_logged("big", _patch(0), version)  # prepares the statement
    (start,) = await _sql(private_cluster.dsn, "SELECT pg_current_wal_lsn()::text AS lsn")
    for count in range(1, 21):
        version = await adapter.save_logged("big", _patch(count), version)
    (wal,) = await _sql(private_cluster.dsn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn) AS n",
                        start["lsn"])
    per_commit = float(wal["n"]) / 20
    assert per_commit < 16_384, f"{per_commit:.0f} WAL bytes per appended patch"
    loaded, loaded_version = await adapter.load_versioned("big")
    assert loaded_version == version == 22 and loaded["state"]["count"] == 20
    await adapter.close()


async def test_a_commit_on_a_big_state_is_one_round_trip(pg_dsn: str, table: str) -> None:
    proxy = await RoundTripProxy("127.0.0.1", 5432).start()
    contract = clp.create_contract(intents={"set": {"inputs": {"n": "number"}}},
                                   transitions={"set": {"effects": lambda ctx: {
                                       f"k{ctx.intent.payload['n']}": ctx.intent.payload["n"]}}})
    adapter = PostgresAdapter(proxy.dsn(), table=table, max_size=1)
    try:
        async with clp.create_runtime(contract, storage=adapter, storage_key="big",
                                      initial_state={f"k{i}": "x" * 20 for i in range(2_000)}) as runtime:
            for n in range(2):  # pool, table, the insert's and the append's prepared statements
                await runtime.execute("set", {"n": n})
            proxy.reset()
            for n in range(10):
                await runtime.execute("set", {"n": n})
            assert proxy.round_trips == 10, f"{proxy.round_trips} round trips for 10 commits"
        rows = await _sql(pg_dsn, f'SELECT count(*) AS n FROM "{table}_patches"')
        assert rows[0]["n"] == 11  # every commit but the first was a patch
    finally:
        await proxy.close()


async def test_a_runtime_s_compaction_removes_the_patch_rows(pg_dsn: str, table: str) -> None:
    """A compaction after patches drops their rows; a whole write that knows no patch follows
    the base (Write.over_patches false) sends the plain UPDATE."""
    contract = clp.create_contract(intents={"set": {"inputs": {"key": "string", "size": "number"}}},
                                   transitions={"set": {"effects": lambda ctx: {
                                       ctx.intent.payload["key"]: "y" * int(ctx.intent.payload["size"])}}})
    adapter = PostgresAdapter(pg_dsn, table=table)

    async def patch_rows() -> int:
        return int((await _sql(pg_dsn, f'SELECT count(*) AS n FROM "{table}_patches"'))[0]["n"])

    sent = _record_statements(adapter)

    try:
        async with clp.create_runtime(contract, storage=adapter, storage_key="big",
                                      initial_state={f"k{i}": "x" * 20 for i in range(2_000)}) as runtime:
            await runtime.execute("set", {"key": "a", "size": 10})  # the first save: the whole base
            await runtime.execute("set", {"key": "a", "size": 20})  # a patch
            assert await patch_rows() == 1
            await runtime.execute("set", {"key": "b", "size": 200_000})  # bigger than the base: compacts
            assert await patch_rows() == 0 and sent[-1] == adapter._update_if
            await runtime.execute("set", {"key": "b", "size": 300_000})  # compacts again, no patch to drop
            assert await patch_rows() == 0 and sent[-1] == adapter._update_plain
        async with clp.create_runtime(contract, storage=PostgresAdapter(pg_dsn, table=table),
                                      storage_key="big") as reader:
            assert len(reader.get_state("b")) == 300_000 and reader.get_state("a") == "y" * 20
    finally:
        await adapter.close()


async def test_whole_saves_and_delete_remove_the_patch_rows(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)

    async def patch_rows() -> int:
        return int((await _sql(pg_dsn, f'SELECT count(*) AS n FROM "{table}_patches"'))[0]["n"])

    version = await _based(adapter, "k")
    version = await adapter.save_logged("k", _patch(1), version)
    version = await adapter.save_versioned("k", big_document(5), version)
    assert await patch_rows() == 0
    version = await adapter.save_logged("k", _patch(6), version)
    await adapter.save("k", big_document(7))
    assert await patch_rows() == 0
    assert await adapter.load_versioned("k") == (big_document(7), version + 1)
    await adapter.save_logged("k", _patch(8), version + 1)
    await adapter.delete("k")
    assert await patch_rows() == 0
    await adapter.close()


async def test_stray_patch_rows_outside_the_head_are_ignored_then_overwritten(pg_dsn: str, table: str) -> None:
    """Rows no load reads (at or below the base, above the head: what a delete racing an append
    can leave) change nothing, and the append of their version replaces them."""
    adapter = PostgresAdapter(pg_dsn, table=table)
    version = await _based(adapter, "k")
    garbage = json.dumps({"format": "clp/1", "data": {"set": [[["state", "count"], -1]], "unset": []}})
    for stray in (1, 2):
        await _sql(pg_dsn, f'INSERT INTO "{table}_patches" (key, version, data) VALUES ($1, $2, $3::jsonb)',
                   "k", stray, garbage)
    assert await adapter.load_versioned("k") == (big_document(), 1)
    assert await adapter.save_logged("k", _patch(1), version) == 2
    assert await adapter.load_versioned("k") == (big_document(1), 2)
    await adapter.close()


async def test_a_malformed_or_missing_patch_row_is_corrupt_state(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    version = await _based(adapter, "k")
    for count in (1, 2):
        version = await adapter.save_logged("k", _patch(count), version)
    await _sql(pg_dsn, f'UPDATE "{table}_patches" SET data = $1::jsonb WHERE key = $2 AND version = 3',
               json.dumps({"format": "clp/1", "data": {"set": "nonsense"}}), "k")
    with pytest.raises(CorruptStateError, match="'k'") as info:
        await adapter.load_versioned("k")
    assert info.value.backend == "postgresql"
    await _sql(pg_dsn, f'DELETE FROM "{table}_patches" WHERE key = $1 AND version = 2', "k")
    with pytest.raises(CorruptStateError, match=f"{table}_patches"):
        await adapter.load("k")
    await adapter.close()


async def test_a_read_only_open_refuses_to_append(pg_dsn: str, table: str) -> None:
    writer = PostgresAdapter(pg_dsn, table=table)
    version = await _based(writer, "k")
    await writer.close()
    reader = PostgresAdapter(pg_dsn, table=table, read_only=True)
    with pytest.raises(StorageError, match="read-only") as info:
        await reader.save_logged("k", _patch(1), version)
    assert info.value.outcome == "not_applied"
    assert await reader.load_versioned("k") == (big_document(), 1)
    await reader.close()


# -- tables made before patches ------------------------------------------------------------


async def _old_table(dsn: str, table: str) -> None:
    """A state table as clp-postgres made it before patches, holding one document."""
    await _sql(dsn, f'CREATE TABLE "{table}" (key text PRIMARY KEY, version bigint NOT NULL, data jsonb NOT NULL, '
                    "updated_at timestamptz NOT NULL DEFAULT now())")
    await _sql(dsn, f'INSERT INTO "{table}" (key, version, data) VALUES ($1, 3, $2::jsonb)',
               "k", json.dumps({"format": "clp/1", "data": {"state": {"n": 1}}}))


async def _shape(dsn: str, table: str) -> tuple[bool, bool]:
    rows = await _sql(dsn, "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 "
                           "AND column_name = 'base_version') AS col, to_regclass($2) IS NOT NULL AS patches",
                      table, f"public.{table}_patches")
    return rows[0]["col"], rows[0]["patches"]


async def test_an_old_table_is_migrated_on_first_use(pg_dsn: str, table: str) -> None:
    await _old_table(pg_dsn, table)
    adapter = PostgresAdapter(pg_dsn, table=table)
    assert await adapter.load_versioned("k") == ({"state": {"n": 1}}, 3)
    assert await _shape(pg_dsn, table) == (True, True)
    assert await adapter.save_logged("k", Write(Patch(((("state", "n"), 2),)).encode(), False), 3) == 4
    assert await adapter.load_versioned("k") == ({"state": {"n": 2}}, 4)
    await adapter.close()


async def test_an_old_table_without_create_table_asks_for_clp_migrate(pg_dsn: str, table: str) -> None:
    await _old_table(pg_dsn, table)
    adapter = PostgresAdapter(pg_dsn, table=table, create_table=False)
    for call in (lambda: adapter.load("k"), lambda: adapter.save_versioned("k", {"state": {}}, 3)):
        with pytest.raises(StorageError, match=r"older clp-postgres \(no base_version column and no "
                                               rf"{table}_patches table\): run `clp migrate") as info:
            await call()
        assert info.value.backend == "postgresql"
    assert await _shape(pg_dsn, table) == (False, False)
    assert await migrate(pg_dsn, table=table, events_table=None) == [f"public.{table}", f"public.{table}_patches"]
    assert await _shape(pg_dsn, table) == (True, True)
    assert await adapter.load_versioned("k") == ({"state": {"n": 1}}, 3)
    await adapter.close()


async def test_an_old_table_opened_read_only_is_read_as_it_is(pg_dsn: str, table: str) -> None:
    await _old_table(pg_dsn, table)
    reader = PostgresAdapter(pg_dsn, table=table, read_only=True)
    assert await reader.load_versioned("k") == ({"state": {"n": 1}}, 3)
    assert await reader.keys() == ["k"]
    assert await _shape(pg_dsn, table) == (False, False)
    # migrated and patched by a writer while the reader is open: the reader sees the patches
    writer = PostgresAdapter(pg_dsn, table=table)
    await writer.save_logged("k", Write(Patch(((("state", "n"), 2),)).encode(), False), 3)
    assert await reader.load_versioned("k") == ({"state": {"n": 2}}, 4)
    await reader.close()
    await writer.close()


def test_a_table_name_leaves_room_for_its_patches_table() -> None:
    assert PostgresAdapter(table="a" * 55).patches_table == "a" * 55 + "_patches"
    with pytest.raises(ConfigError, match="patches table"):
        PostgresAdapter(table="a" * 56)


async def test_a_role_that_may_not_alter_an_old_table_asks_for_clp_migrate(private_cluster: PostgresCluster) -> None:
    await _old_table(private_cluster.dsn, "clp_state")
    await _sql(private_cluster.dsn, "CREATE ROLE app LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                                    "GRANT SELECT, INSERT, UPDATE, DELETE ON clp_state TO app")
    adapter = PostgresAdapter(private_cluster.dsn.replace("postgres@", "app@"))
    with pytest.raises(StorageError, match="clp migrate"):
        await adapter.load("k")
    await migrate(private_cluster.dsn, events_table=None)
    await _sql(private_cluster.dsn, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app")
    assert await adapter.load_versioned("k") == ({"state": {"n": 1}}, 3)
    assert await adapter.save_logged("k", Write(Patch(((("state", "n"), 2),)).encode(), False), 3) == 4
    await adapter.close()
