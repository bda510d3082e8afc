"""RedisEventStore against the shared Redis: the event store conformance suite, then the
stream layout, one round trip per append, idempotent resends and foreign data."""

from __future__ import annotations

import uuid
from typing import Any

import clp_redis.events
import pytest
import redis.asyncio as aioredis
from clp_redis import RedisEventStore

from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.events import Snapshot, event_from_json, event_to_json, replay
from clp_core.resolve import resolve_event_store
from clp_core.testing.events import EventStoreSuite, make_event

REDIS_URL = "redis://127.0.0.1:6379/0"


class TestRedisEventStore(EventStoreSuite):
    @pytest.fixture(autouse=True)
    def _redis_prefix(self, prefix: str) -> None:
        self.prefix = prefix

    async def make_store(self) -> RedisEventStore:
        return RedisEventStore(REDIS_URL, prefix=self.prefix)


@pytest.fixture
async def store(prefix: str) -> Any:
    store = RedisEventStore(REDIS_URL, prefix=prefix)
    yield store
    await store.close()


AGG = "order:42/'; DROP TABLE x; --"


async def test_one_stream_per_aggregate_with_ids_0_seq(store: RedisEventStore, shared_redis: aioredis.Redis,
                                                       prefix: str) -> None:
    for seq in (1, 2, 3):
        await store.append(make_event(AGG, seq), seq - 1)
    entries = await shared_redis.xrange(f"{prefix}stream:{AGG}".encode())
    assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2", b"0-3"]
    assert event_from_json(entries[0][1][b"e"], backend="test") == make_event(AGG, 1)
    assert await shared_redis.smembers(f"{prefix}aggregates".encode()) == {AGG.encode()}
    assert await store.aggregates() == [AGG]


async def test_an_append_is_one_round_trip(store: RedisEventStore) -> None:
    await store.append(make_event(AGG, 1), 0)  # loads the script
    sent: list[Any] = []
    original = store.client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await original(*args, **options)

    store.client.execute_command = counting  # type: ignore[method-assign]
    await store.append(make_event(AGG, 2), 1)
    with pytest.raises(ConflictError):
        await store.append(make_event(AGG, 2), 1)  # the very same event, appended again
    assert sent == ["EVALSHA", "EVALSHA"]


async def test_a_resent_append_is_not_a_conflict(store: RedisEventStore) -> None:
    """A reply lost after Redis appended: the same command again finds its own entry."""
    event = make_event(AGG, 1)
    keys = [store.stream_key(AGG), store._aggregates_key]
    args = ["", "0-1", event_to_json(event).encode(), AGG.encode(), uuid.uuid4().hex]
    assert await store._append(keys=keys, args=args) == [1, b"0-1"]
    assert await store._append(keys=keys, args=args) == [1, b"0-1"]
    assert await store.get_events(AGG) == [event]
    # the same event from another writer (another call, another token) is a conflict
    other = [*args[:4], uuid.uuid4().hex]
    assert await store._append(keys=keys, args=other) == [0, b"0-1"]
    with pytest.raises(ConflictError):
        await store.append(event, 0)


async def test_non_following_seq_is_refused_without_a_round_trip(store: RedisEventStore) -> None:
    with pytest.raises(ConflictError, match="does not follow"):
        await store.append(make_event(AGG, 3), 0)
    assert await store.last_seq(AGG) == 0


async def test_a_trimmed_stream_conflicts_instead_of_reusing_ids(store: RedisEventStore,
                                                                shared_redis: aioredis.Redis) -> None:
    for seq in (1, 2):
        await store.append(make_event(AGG, seq), seq - 1)
    await shared_redis.xtrim(store.stream_key(AGG), maxlen=0)
    assert await store.last_seq(AGG) == 0
    with pytest.raises(ConflictError):
        await store.append(make_event(AGG, 1), 0)


async def test_long_streams_are_read_in_pages(store: RedisEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clp_redis.events, "PAGE", 3)
    for seq in range(1, 11):
        await store.append(make_event(AGG, seq), seq - 1)
    assert [e.seq for e in await store.get_events(AGG)] == list(range(1, 11))
    assert [e.seq for e in await store.get_events(AGG, after=2, until=9)] == list(range(3, 10))
    assert [e.seq for e in await store.get_events(AGG, after=3, until=6)] == [4, 5, 6]
    assert await store.get_events(AGG, after=5, until=5) == []
    assert await store.get_events(AGG, after=10) == []


async def test_a_snapshot_of_the_same_seq_replaces_the_older(store: RedisEventStore) -> None:
    await store.save_snapshot(AGG, Snapshot(2, {"v": "old"}))
    await store.save_snapshot(AGG, Snapshot(2, {"v": "new"}))
    await store.save_snapshot(AGG, Snapshot(5, {"v": "five"}))
    snapshot = await store.load_snapshot(AGG, 4)
    assert snapshot is not None and snapshot.state == {"v": "new"}
    assert (await store.load_snapshot(AGG)).state == {"v": "five"}  # type: ignore[union-attr]
    assert await store.client.zcard(store.snapshots_key(AGG)) == 2


async def test_prefixes_keep_stores_apart(prefix: str) -> None:
    first = RedisEventStore(REDIS_URL, prefix=prefix + "a:")
    second = RedisEventStore(REDIS_URL, prefix=prefix + "b:")
    try:
        await first.append(make_event(AGG, 1), 0)
        assert await second.last_seq(AGG) == 0 and await second.aggregates() == []
        await second.append(make_event(AGG, 1, amount=5), 0)
        assert [e.payload["amount"] for e in await first.get_events(AGG)] == [1]
    finally:
        await first.close()
        await second.close()


# -- foreign data --------------------------------------------------------------------------------
async def test_a_stream_key_of_another_type_is_corrupt(store: RedisEventStore,
                                                       shared_redis: aioredis.Redis) -> None:
    await shared_redis.set(store.stream_key(AGG), "not a stream")
    for call in (store.append(make_event(AGG, 1), 0), store.get_events(AGG), store.last_seq(AGG)):
        with pytest.raises(CorruptStateError, match="not a CLP value"):
            await call
    assert await shared_redis.get(store.stream_key(AGG)) == b"not a stream"


@pytest.mark.parametrize(
    ("entry_id", "fields", "problem"),
    [
        pytest.param("5-1", {"e": event_to_json(make_event(AGG, 1))}, "entry id", id="foreign-id"),
        pytest.param("0-1", {"other": "x"}, "no data", id="no-data"),
        pytest.param("0-1", {"e": "{{{"}, "not valid JSON", id="garbage"),
        pytest.param("0-2", {"e": event_to_json(make_event(AGG, 1))}, "says it is 1", id="wrong-seq"),
    ],
)
async def test_foreign_entries_are_corrupt(store: RedisEventStore, shared_redis: aioredis.Redis,
                                           entry_id: str, fields: dict[str, str], problem: str) -> None:
    await shared_redis.xadd(store.stream_key(AGG), fields, id=entry_id)  # type: ignore[arg-type]
    with pytest.raises(CorruptStateError, match=problem):
        await store.get_events(AGG)
    with pytest.raises(CorruptStateError, match=problem):  # replay's fast path reads the rows
        await replay(store, AGG)


async def test_unreachable_server_is_a_storage_error(unused_port: int) -> None:
    store = RedisEventStore(f"redis://127.0.0.1:{unused_port}/0")
    try:
        for call in (store.append(make_event(AGG, 1), 0), store.get_events(AGG), store.last_seq(AGG),
                     store.save_snapshot(AGG, Snapshot(1, {})), store.load_snapshot(AGG), store.aggregates()):
            with pytest.raises(StorageError) as info:
                await call
            assert info.value.backend == "redis-events" and not isinstance(info.value, ConflictError)
    finally:
        await store.close()


# -- discovery ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://example.invalid:6380/1"])
async def test_urls_resolve_to_the_event_store(url: str) -> None:
    store = resolve_event_store(url)
    assert isinstance(store, RedisEventStore) and store.prefix == "clp:events:"
    await store.close()


async def test_prefix_from_the_url(prefix: str) -> None:
    store = resolve_event_store(f"redis://127.0.0.1:6379/0?prefix={prefix}")
    try:
        assert isinstance(store, RedisEventStore) and store.prefix == prefix
        agg = f"agg-{uuid.uuid4().hex}"
        await store.append(make_event(agg, 1), 0)
        assert await store.aggregates() == [agg]
    finally:
        await store.close()
