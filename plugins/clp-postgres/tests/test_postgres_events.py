"""PostgresEventStore against the real server: the conformance suite, guarded appends from
several stores, jsonb rows, corruption, unreachable servers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from clp_postgres import InvalidIdentifierError, PostgresEventStore
from clp_postgres.testing import free_port

from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.events import Snapshot, replay
from clp_core.testing.events import EventStoreSuite, make_event


class TestPostgresEventStore(EventStoreSuite):
    dsn: str
    table: str

    @pytest.fixture(autouse=True)
    def _pg_table(self, pg_dsn: str, table: str) -> None:
        self.dsn, self.table = pg_dsn, table

    async def make_store(self) -> PostgresEventStore:
        return PostgresEventStore(self.dsn, table=self.table)


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def _aggregate() -> str:
    return f"agg:{uuid.uuid4().hex}"


async def test_events_are_queryable_rows(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    aggregate = _aggregate()
    for seq in (1, 2):
        await store.append(make_event(aggregate, seq), seq - 1)
    rows = await _fetch(pg_dsn, f"SELECT seq, data->'data'->>'intent_name' AS intent, recorded_at FROM \"{table}\" "
                                "WHERE aggregate_id = $1 ORDER BY seq", aggregate)
    assert [(r["seq"], r["intent"]) for r in rows] == [(1, "add"), (2, "add")]
    assert all(r["recorded_at"] is not None for r in rows)
    await store.close()


async def test_stores_sharing_a_table_conflict_cleanly(pg_dsn: str, table: str) -> None:
    """Writers in different pools (processes, in effect) race for each slot: every slot is won
    by exactly one, losers get ConflictError, the stream has no gap."""
    stores = [PostgresEventStore(pg_dsn, table=table, max_size=2) for _ in range(4)]
    aggregate = _aggregate()

    async def writer(store: PostgresEventStore, n: int) -> int:
        won = 0
        for _ in range(25):
            seq = await store.last_seq(aggregate)
            try:
                await store.append(make_event(aggregate, seq + 1, amount=n), seq)
                won += 1
            except ConflictError:
                await asyncio.sleep(0)
        return won

    wins = await asyncio.gather(*(writer(s, n) for n, s in enumerate(stores, 1)))
    events = await stores[0].get_events(aggregate)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(wins) == len(events) >= 25
    await asyncio.gather(*(s.close() for s in stores))


async def test_append_with_a_wrong_seq_is_a_conflict(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    aggregate = _aggregate()
    with pytest.raises(ConflictError):
        await store.append(make_event(aggregate, 2), 0)  # seq must be expected + 1
    with pytest.raises(ConflictError):
        await store.append(make_event(aggregate, 1), 1)
    assert await store.last_seq(aggregate) == 0
    await store.close()


async def test_snapshot_can_be_rewritten(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    aggregate = _aggregate()
    await store.save_snapshot(aggregate, Snapshot(3, {"count": 1}))
    await store.save_snapshot(aggregate, Snapshot(3, {"count": 2, "nul": "\x00"}))
    snapshot = await store.load_snapshot(aggregate)
    assert snapshot is not None and snapshot.state == {"count": 2, "nul": "\x00"}
    await store.close()


async def test_events_with_values_jsonb_would_change_round_trip(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    aggregate = _aggregate()
    event = make_event(aggregate, 1, data={"nul": "a\x00b", "big": 1e300, "zero": -0.0})
    await store.append(event, 0)
    (read,) = await store.get_events(aggregate)
    assert read == event and repr(read.data) == repr(event.data)
    await store.close()


async def test_corrupt_event_row_is_corrupt_state(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    aggregate = _aggregate()
    await store.append(make_event(aggregate, 1), 0)
    await _fetch(pg_dsn, f'UPDATE "{table}" SET data = \'{{"format": "clp/1", "data": [1]}}\'::jsonb '
                         "WHERE aggregate_id = $1", aggregate)
    with pytest.raises(CorruptStateError, match="event 1 of"):
        await store.get_events(aggregate)
    with pytest.raises(CorruptStateError, match="event 1 of"):  # replay's fast path reads the rows
        await replay(store, aggregate)
    await store.close()


async def test_aggregates_are_listed_once_each(pg_dsn: str, table: str) -> None:
    store = PostgresEventStore(pg_dsn, table=table)
    ids = sorted(f"a{i}:{uuid.uuid4().hex[:6]}" for i in range(5))
    for aggregate in ids:
        for seq in range(1, 4):
            await store.append(make_event(aggregate, seq), seq - 1)
    assert await store.aggregates() == ids
    await store.close()


def test_bad_identifiers_are_refused() -> None:
    with pytest.raises(InvalidIdentifierError):
        PostgresEventStore(table="x; DROP TABLE y")
    with pytest.raises(InvalidIdentifierError):
        PostgresEventStore(schema="x; DROP TABLE y")
    with pytest.raises(InvalidIdentifierError):
        PostgresEventStore(table="e" * 60)  # e..._snapshots would pass 63 characters


async def test_unreachable_server_is_a_storage_error() -> None:
    store = PostgresEventStore(f"postgresql://postgres@127.0.0.1:{free_port()}/test", connect_timeout=5)
    with pytest.raises(StorageError) as info:
        await store.append(make_event("a", 1), 0)
    assert type(info.value) is StorageError and "postgresql" in info.value.backend
    await store.close()
