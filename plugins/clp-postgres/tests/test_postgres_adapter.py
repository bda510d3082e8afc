"""PostgresAdapter against the real server: the conformance suite, jsonb storage, identifiers,
SQL-safe keys, pools, versions shared by several adapters."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
from typing import Any

import asyncpg
import pytest
from clp_postgres import InvalidIdentifierError, PostgresAdapter, check_identifier
from clp_postgres._common import _alive
from clp_postgres.testing import fetch, free_port

from clp_core.errors import ConfigError, ConflictError, CorruptStateError, StorageError
from clp_core.testing.storage import NASTY_KEYS, StorageAdapterSuite


class TestPostgresAdapter(StorageAdapterSuite):
    dsn: str
    table: str

    @pytest.fixture(autouse=True)
    def _pg_table(self, pg_dsn: str, table: str) -> None:
        self.dsn, self.table = pg_dsn, table

    async def make_adapter(self) -> PostgresAdapter:
        return PostgresAdapter(self.dsn, table=self.table)

    async def write_raw(self, adapter: PostgresAdapter, key: str, raw: bytes) -> None:
        """Store ``raw`` as the row's jsonb. A jsonb column can only hold JSON: raw bytes that
        are JSON are stored as that JSON, others as a jsonb string of their text (what a
        corrupted text-form row would hold)."""
        await adapter.create()
        text = raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        try:
            json.loads(text)
            values = [text, json.dumps(text)]
        except (ValueError, RecursionError):
            values = [json.dumps(text)]
        connection = await asyncpg.connect(self.dsn)
        try:
            for value in values:  # JSON that jsonb refuses (NaN, too deep) is stored as text form
                try:
                    await connection.execute(
                        f'INSERT INTO "{self.table}" (key, version, data) VALUES ($1, 1, $2::text::jsonb) '
                        "ON CONFLICT (key) DO UPDATE SET data = excluded.data", key, value)
                    return
                except asyncpg.PostgresError:
                    if value is values[-1]:
                        raise
        finally:
            await connection.close()


# -- jsonb ------------------------------------------------------------------------------


async def test_documents_are_queryable_jsonb(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    await adapter.save("order:1", {"state": {"status": "paid", "total": 12.5, "born": dt.date(2020, 1, 2)}})
    rows = await fetch(
        pg_dsn,
        f"SELECT data->>'format' AS format, data->'data'->'state'->>'status' AS status, "
        f"(data->'data'->'state'->>'total')::numeric AS total, jsonb_typeof(data) AS kind, version, updated_at "
        f'FROM "{table}" WHERE key = $1', "order:1")
    assert rows[0]["format"] == "clp/1" and rows[0]["status"] == "paid" and float(rows[0]["total"]) == 12.5
    assert rows[0]["kind"] == "object" and rows[0]["version"] == 1 and rows[0]["updated_at"] is not None
    await adapter.close()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("nul \x00 inside", id="nul-char"),
        pytest.param({"nul\x00key": 1}, id="nul-in-key"),
        pytest.param(1e16, id="float-with-exponent"),
        pytest.param(1.7976931348623157e308, id="max-float"),
        pytest.param(-0.0, id="negative-zero"),
        pytest.param([1.0, 2.5e-7, 10**30, 0.1], id="numbers"),
        pytest.param("literal \\u0000 and 1e+5 in text", id="lookalike-text"),
    ],
)
async def test_values_jsonb_would_change_round_trip_exactly(pg_dsn: str, table: str, value: Any) -> None:
    """jsonb refuses \\u0000 and turns 1e+16 into an int and -0.0 into 0.0: such documents
    are kept as the exact envelope text (a jsonb string) and come back as saved."""
    adapter = PostgresAdapter(pg_dsn, table=table)
    await adapter.save("k", {"v": value})
    loaded = await adapter.load("k")
    assert loaded == {"v": value}
    assert repr(loaded) == repr({"v": value})  # same types, same sign of zero
    await adapter.close()


async def test_dates_and_datetimes_come_back_typed(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    await adapter.save("k", {"d": dt.date(2000, 2, 29), "t": when, "list": [dt.date(1999, 12, 31)]})
    loaded = await adapter.load("k")
    assert loaded == {"d": dt.date(2000, 2, 29), "t": when, "list": [dt.date(1999, 12, 31)]}
    assert loaded["t"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    await adapter.close()


# -- identifiers and SQL safety -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["x; DROP TABLE y", 'x"; DROP TABLE y; --', "1abc", "", "a-b", "a.b", "a b", "ü", "a" * 64, None, 7],
)
def test_bad_identifiers_are_refused(name: Any) -> None:
    with pytest.raises(InvalidIdentifierError):
        check_identifier(name)
    with pytest.raises(ConfigError):
        PostgresAdapter(table=name)
    with pytest.raises(ValueError):
        PostgresAdapter(schema=name)


def test_good_identifiers_are_accepted() -> None:
    for name in ("clp_state", "_x", "Orders2", "a" * 63):
        assert check_identifier(name) == name


async def test_drop_table_identifier_runs_no_sql(pg_dsn: str, names: Any) -> None:
    victim = names.table("y")
    await fetch(pg_dsn, f'CREATE TABLE "{victim}" (id int)')
    with pytest.raises(InvalidIdentifierError):
        PostgresAdapter(pg_dsn, table=f"x; DROP TABLE {victim}")
    with pytest.raises(InvalidIdentifierError):
        PostgresAdapter(pg_dsn, schema=f"public; DROP TABLE {victim}")
    assert (await fetch(pg_dsn, "SELECT to_regclass($1) IS NOT NULL AS present", victim))[0]["present"]


async def test_injection_keys_are_data(pg_dsn: str, names: Any) -> None:
    victim, table = names.table("x"), names.table()
    await fetch(pg_dsn, f'CREATE TABLE "{victim}" (id int)')
    adapter = PostgresAdapter(pg_dsn, table=table)
    keys = [f"'; DROP TABLE {victim}; --", f'"; DROP TABLE {table}; --', "k' OR '1'='1", "$1", "\\'; --"]
    await adapter.save("victim", {"alive": True})
    for key in keys:
        await adapter.save(key, {"key": key})
        assert await adapter.load(key) == {"key": key}
        await adapter.delete(key)
    assert await adapter.load("k' OR '1'='1") is None
    assert await adapter.load("victim") == {"alive": True}
    await adapter.close()
    assert (await fetch(pg_dsn, "SELECT to_regclass($1) IS NOT NULL AS present", victim))[0]["present"]


async def test_keys_are_stored_verbatim(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    for key in NASTY_KEYS:
        await adapter.save(key, {"k": 1})
    await adapter.close()
    stored = {row["key"] for row in await fetch(pg_dsn, f'SELECT key FROM "{table}"')}
    assert stored == set(NASTY_KEYS)


async def test_own_schema_is_created(pg_dsn: str, names: Any) -> None:
    schema, table = names.schema(), names.table()
    adapter = PostgresAdapter(pg_dsn, table=table, schema=schema)
    await adapter.save("k", {"x": 1})
    assert await adapter.load("k") == {"x": 1}
    await adapter.close()
    rows = await fetch(pg_dsn, "SELECT count(*) AS n FROM information_schema.tables "
                                "WHERE table_schema = $1 AND table_name = $2", schema, table)
    assert rows[0]["n"] == 1


# -- corruption -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    ['{"format": "clp/2", "data": {"state": {}}}', '"not json inside a string"', '{"data": 1}', "42", '{"a": "b"}'],
)
async def test_corrupt_rows_are_corrupt_state(pg_dsn: str, table: str, stored: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    await adapter.save("k", {"ok": True})
    await fetch(pg_dsn, f'UPDATE "{table}" SET data = $1::text::jsonb WHERE key = $2', stored, "k")
    with pytest.raises(CorruptStateError, match="'k'") as info:
        await adapter.load("k")
    assert info.value.backend == "postgresql"
    with pytest.raises(CorruptStateError):
        await adapter.load_versioned("k")
    await adapter.close()


# -- versions -----------------------------------------------------------------------------


async def test_two_adapters_on_one_table_never_lose_an_increment(pg_dsn: str, table: str) -> None:
    first, second = PostgresAdapter(pg_dsn, table=table), PostgresAdapter(pg_dsn, table=table, max_size=3)
    version = await first.save_versioned("n", {"n": 0}, 0)
    assert await second.load_versioned("n") == ({"n": 0}, version)
    with pytest.raises(ConflictError):
        await second.save_versioned("n", {"n": "stale"}, 0)

    async def add(adapter: PostgresAdapter, times: int) -> None:
        for _ in range(times):
            while True:
                document, version = await adapter.load_versioned("n")
                try:
                    await adapter.save_versioned("n", {"n": document["n"] + 1}, version)
                    break
                except ConflictError:
                    await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(add(first, 40), add(second, 40), add(first, 40), add(second, 40)), 60)
    assert await second.load("n") == {"n": 160}
    assert (await first.load_versioned("n"))[1] == 161
    await first.close()
    await second.close()


async def test_versioned_save_after_delete_does_not_resurrect(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    v1 = await adapter.save_versioned("k", {"n": 1}, 0)
    await adapter.delete("k")
    with pytest.raises(ConflictError):
        await adapter.save_versioned("k", {"n": 2}, v1)
    assert await adapter.load_versioned("k") == (None, 0)
    await adapter.close()


# -- pools -------------------------------------------------------------------------------


async def test_pool_is_created_lazily_and_closed(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table, min_size=2, max_size=4)
    assert adapter.pool is None
    await adapter.save("k", {"x": 1})
    pool = adapter.pool
    assert pool is not None and pool.get_min_size() == 2 and pool.get_max_size() == 4
    await adapter.close()
    assert adapter.pool is None and pool.is_closing()
    assert await adapter.load("k") == {"x": 1}  # used again: a new pool
    await adapter.close()


async def test_a_given_pool_is_used_and_left_open(pg_dsn: str, table: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        adapter = PostgresAdapter(table=table, pool=pool)  # its dsn is not used
        await adapter.save("k", {"x": 1})
        assert adapter.pool is pool
        await adapter.close()
        assert not pool.is_closing()
        assert await PostgresAdapter(table=table, pool=pool).load("k") == {"x": 1}
    finally:
        await pool.close()


async def test_one_connection_is_held_between_calls_and_given_back_on_close(pg_dsn: str, table: str) -> None:
    """Sequential calls reuse one held connection (no pool acquire and release each); a
    concurrent call takes another from the pool; close() gives the held one back first."""
    adapter = PostgresAdapter(pg_dsn, table=table, min_size=1, max_size=3)
    await adapter.save("k", {"x": 1})
    pool = adapter.pool
    held = adapter._client._held
    assert held is not None and pool.get_idle_size() == 0
    version = (await adapter.load_versioned("k"))[1]
    await adapter.save_versioned("k", {"x": 2}, version)
    assert adapter._client._held is held
    assert await asyncio.gather(*(adapter.load(f"k{n}") for n in range(3))) == [None, None, None]
    assert adapter._client._held is not None and pool.get_idle_size() >= 1  # the others went back
    await asyncio.wait_for(adapter.close(), 5)
    assert adapter._client._held is None and pool.is_closing()


async def test_a_held_connection_the_server_dropped_is_replaced(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table)
    await adapter.save("k", {"x": 1})
    held = adapter._client._held
    pid = held.get_server_pid()
    killer = await asyncpg.connect(pg_dsn)
    try:
        await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    for _ in range(100):  # until the client has seen the connection close
        if not _alive(held):
            break
        await asyncio.sleep(0.01)
    assert not _alive(held)
    assert await adapter.load("k") == {"x": 1}
    assert adapter._client._held.get_server_pid() != pid
    await adapter.close()


async def test_no_connection_is_held_while_calls_wait_for_one(pg_dsn: str, table: str) -> None:
    """A pool of one connection: concurrent calls each get it in turn (none waits out its
    time limit for a connection held idle)."""
    adapter = PostgresAdapter(pg_dsn, table=table, min_size=1, max_size=1, operation_timeout=2)
    await adapter.save("k", {"x": 1})
    assert adapter._client._held is None  # no other connection for a concurrent call
    loads = await asyncio.wait_for(asyncio.gather(*(adapter.load("k") for _ in range(5))), 1.5)
    assert loads == [{"x": 1}] * 5
    adapter2 = PostgresAdapter(pg_dsn, table=table, min_size=1, max_size=2, operation_timeout=2)
    loads = await asyncio.wait_for(asyncio.gather(*(adapter2.load("k") for _ in range(8))), 1.5)
    assert loads == [{"x": 1}] * 8
    await adapter.close()
    await adapter2.close()


async def test_a_given_pool_has_no_connection_held(pg_dsn: str, table: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        adapter = PostgresAdapter(table=table, pool=pool)
        await adapter.save("k", {"x": 1})
        assert adapter._client._held is None and pool.get_idle_size() == 1
    finally:
        await asyncio.wait_for(pool.close(), 5)


async def test_pools_with_custom_jsonb_codecs_still_round_trip(pg_dsn: str, table: str) -> None:
    """A pool whose connections decode jsonb to Python objects (a common setup) is fine:
    values go in and out as text."""

    async def init(connection: Any) -> None:
        await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, init=init)
    try:
        adapter = PostgresAdapter(table=table, pool=pool)
        await adapter.save("k", {"d": dt.date(2020, 1, 1), "s": "x"})
        assert await adapter.load("k") == {"d": dt.date(2020, 1, 1), "s": "x"}
    finally:
        await pool.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the first loop's sockets
def test_adapter_survives_a_new_event_loop(pg_dsn: str, table: str) -> None:
    """``asyncio.run`` twice with one adapter, not closed in between (scripts, tests): the
    second loop gets a new pool instead of failing on one bound to a closed loop."""
    adapter = PostgresAdapter(pg_dsn, table=table)

    async def first() -> None:
        await adapter.save("k", {"n": 1})

    async def second() -> Any:
        try:
            return await adapter.load("k")
        finally:
            await adapter.close()

    asyncio.run(first())
    assert asyncio.run(second()) == {"n": 1}
    gc.collect()  # the first loop's unclosed sockets warn here, not in the next test


@pytest.mark.parametrize("sizes", [{"min_size": 5, "max_size": 2}, {"min_size": -1}, {"max_size": 0}])
def test_bad_pool_sizes_are_refused(sizes: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        PostgresAdapter(**sizes)


async def test_unreachable_server_is_a_storage_error_naming_postgresql() -> None:
    port = free_port()  # nothing listens there
    adapter = PostgresAdapter(f"postgresql://postgres:secret@127.0.0.1:{port}/test", connect_timeout=5)
    for call in (adapter.load("k"), adapter.save("k", {"x": 1}), adapter.save_versioned("k", {}, 0)):
        with pytest.raises(StorageError) as info:
            await call
        assert type(info.value) is StorageError and info.value.backend == "postgresql"
        assert f"127.0.0.1:{port}/test" in str(info.value) and "secret" not in str(info.value)
    await adapter.close()


async def test_missing_table_without_create_is_a_storage_error(pg_dsn: str, table: str) -> None:
    adapter = PostgresAdapter(pg_dsn, table=table, create_table=False)
    with pytest.raises(StorageError, match=table) as info:
        await adapter.load("k")
    assert info.value.backend == "postgresql"
    await adapter.create()
    assert await adapter.load("k") is None
    await adapter.close()


async def test_concurrent_first_use_creates_the_table_once(pg_dsn: str, table: str) -> None:
    adapters = [PostgresAdapter(pg_dsn, table=table) for _ in range(6)]
    await asyncio.gather(*(a.save(f"k{i}", {"i": i}) for i, a in enumerate(adapters)))
    assert [await adapters[0].load(f"k{i}") for i in range(6)] == [{"i": i} for i in range(6)]
    await asyncio.gather(*(a.close() for a in adapters))


async def test_a_connection_lost_mid_statement_is_given_back_and_reported(pg_dsn: str, table: str) -> None:
    """The server ends the session under a statement: the error names what happened (not the
    detached connection's InterfaceError), the pool gets it back, and holding resumes."""
    adapter = PostgresAdapter(pg_dsn, table=table)
    client = adapter._client
    try:
        version = await adapter.save_versioned("k", {"x": 1}, 0)
        for _ in range(3):
            with pytest.raises(StorageError) as info:
                await client.run("a killed session",
                                 lambda c: c.fetchval("SELECT pg_terminate_backend(pg_backend_pid())"))
            assert "InterfaceError" not in str(info.value), info.value
        assert client._out == 0
        version = await adapter.save_versioned("k", {"x": 2}, version)
        assert client._held is not None and client._out == 1
        assert await adapter.load_versioned("k") == ({"x": 2}, version)
    finally:
        await adapter.close()
