"""MongoEventStore: the event store conformance suite, its indexes and documents, a runtime on it.

Tests taking ``mongo_backend`` run on the stand-in and on the CLP_MONGO_URL server (conftest.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from clp_mongo import MongoAdapter, MongoEventStore

import clp_core as clp
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.events import EventStore, Snapshot, event_to_json, replay
from clp_core.testing.events import EventStoreSuite, make_event


class TestMongoEventStoreConformance(EventStoreSuite):
    @pytest.fixture(autouse=True)
    def _mongo(self, mongo_backend: Any) -> None:
        self.backend = mongo_backend

    async def make_store(self) -> MongoEventStore:
        return self.backend.event_store()


async def test_it_is_an_event_store_with_unique_indexes_made_on_first_write(mongo_backend: Any) -> None:
    store = mongo_backend.event_store()
    assert isinstance(store, EventStore)
    assert await store.get_events("a") == []  # reads do not create anything
    await store.append(make_event("a", 1), 0)
    await store.save_snapshot("a", Snapshot(1, {"count": 1}))
    for collection in ("clp_events", "clp_snapshots"):
        indexes = await mongo_backend.raw(collection).index_information()
        keyed = [spec for spec in indexes.values() if spec["key"] == [("aggregate_id", 1), ("seq", 1)]]
        assert keyed and keyed[0].get("unique") is True, f"{collection}: {indexes}"
    await store.close()


async def test_event_documents(mongo_backend: Any) -> None:
    store = mongo_backend.event_store()
    aggregate = "order:42:'; DROP"
    await store.append(make_event(aggregate, 1), 0)
    raw = await mongo_backend.raw("clp_events").find_one({"aggregate_id": aggregate})
    assert set(raw) == {"_id", "aggregate_id", "seq", "kind", "data"}
    assert (raw["_id"], raw["seq"], raw["kind"]) == (f"{aggregate}:1", 1, "commit")
    assert json.loads(raw["data"])["format"] == "clp/1"
    await store.close()


async def test_the_unique_index_refuses_a_second_event_in_a_slot(mongo_backend: Any) -> None:
    """Even written behind the store's back under another _id, a slot holds one event."""
    store = mongo_backend.event_store()
    await store.append(make_event("a", 1), 0)
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):
        await mongo_backend.raw("clp_events").insert_one(
            {"_id": "other", "aggregate_id": "a", "seq": 1, "data": event_to_json(make_event("a", 1))})
    await store.close()


async def test_a_writer_that_read_a_stale_last_seq_conflicts(mongo_backend: Any) -> None:
    """The check-then-insert race: both writers saw seq 1 as free; the insert decides."""
    first, second = mongo_backend.event_store(), mongo_backend.event_store()
    await first.append(make_event("a", 1), 0)
    original = second.last_seq

    async def stale_last_seq(aggregate_id: str) -> int:  # as if read before first's append
        await original(aggregate_id)
        return 0

    second.last_seq = stale_last_seq  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="moved past 0"):
        await second.append(make_event("a", 1, amount=9), 0)
    assert [e.payload["amount"] for e in await first.get_events("a")] == [1]
    await first.close()
    await second.close()


async def test_two_stores_appending_concurrently_keep_one_gapless_stream(mongo_backend: Any) -> None:
    stores = [mongo_backend.event_store() for _ in range(3)]

    async def writer(store: MongoEventStore, n: int) -> int:
        won = 0
        for _ in range(15):
            seq = await store.last_seq("shared")
            try:
                await store.append(make_event("shared", seq + 1, amount=n), seq)
                won += 1
            except ConflictError:
                await asyncio.sleep(0)
        return won

    wins = await asyncio.gather(*(writer(store, n) for n, store in enumerate(stores, 1)))
    events = await stores[0].get_events("shared")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(wins) == len(events) >= 15
    for store in stores:
        await store.close()


async def test_snapshot_saved_twice_at_one_seq_is_replaced(mongo_backend: Any) -> None:
    store = mongo_backend.event_store()
    await store.save_snapshot("a", Snapshot(3, {"count": 1}))
    await store.save_snapshot("a", Snapshot(3, {"count": 3}))
    assert (await store.load_snapshot("a")).state == {"count": 3}
    assert await mongo_backend.raw("clp_snapshots").count_documents({"aggregate_id": "a"}) == 1
    await store.close()


@pytest.mark.parametrize("document, problem", [
    pytest.param({"data": 7}, "no string 'data'", id="data-not-a-string"),
    pytest.param({"data": "{{{"}, "not valid JSON", id="garbage"),
    pytest.param({"data": '{"format": "clp/9", "data": {}}'}, "unknown format", id="unknown-format"),
    pytest.param({"data": event_to_json(make_event("elsewhere", 1))}, "holds event 1 of 'elsewhere'", id="misfiled"),
])
async def test_a_corrupt_event_is_corrupt_state(mongo_backend: Any, document: dict[str, Any], problem: str) -> None:
    store = mongo_backend.event_store()
    await mongo_backend.raw("clp_events").insert_one({"_id": "a:1", "aggregate_id": "a", "seq": 1, **document})
    with pytest.raises(CorruptStateError, match=problem) as info:
        await store.get_events("a")
    assert info.value.backend == "mongodb-events"
    with pytest.raises(CorruptStateError, match=problem):  # replay's fast path reads the rows
        await replay(store, "a")
    await store.close()


async def test_a_corrupt_snapshot_is_corrupt_state(mongo_backend: Any) -> None:
    store = mongo_backend.event_store()
    await mongo_backend.raw("clp_snapshots").insert_one({"_id": "a:2", "aggregate_id": "a", "seq": 2, "data": "nope"})
    with pytest.raises(CorruptStateError):
        await store.load_snapshot("a")
    await store.close()


async def test_runtime_with_mongo_event_store(mongo_backend: Any) -> None:
    contract = clp.create_contract(
        intents={"add": {"inputs": {"amount": "number"}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                       + ctx.intent.payload["amount"]}}},
    )
    store = mongo_backend.event_store()
    async with clp.create_runtime(contract, storage_key="order:7", event_store=store, snapshot_every=2) as runtime:
        for amount in (1, 2, 3):
            await runtime.execute("add", {"amount": amount})
        assert await runtime.state_at(2) == {"count": 3}
        assert [e.seq async for e in runtime.history()] == [1, 2, 3]
    assert await mongo_backend.raw("clp_snapshots").count_documents({"aggregate_id": "order:7"}) == 1
    again_store = mongo_backend.event_store()
    async with clp.create_runtime(contract, storage_key="order:7", event_store=again_store) as again:
        assert again.get_state("count") == 6
    assert "order:7" in await again_store.aggregates()
    await store.close()
    await again_store.close()


async def test_adapter_and_event_store_can_share_one_client(mongo_backend: Any) -> None:
    if not mongo_backend.is_standin:
        pytest.skip("shown on the stand-in; on a server the same objects take the same client")
    adapter = MongoAdapter(database=mongo_backend.database, client=mongo_backend.client)
    store = MongoEventStore(database=mongo_backend.database, client=mongo_backend.client)
    await adapter.save("k", {"x": 1})
    await store.append(make_event("k", 1), 0)
    assert sorted(await mongo_backend.client[mongo_backend.database].list_collection_names()) == [
        "clp_events", "clp_snapshots", "clp_state"]


async def test_unreachable_server_is_a_storage_error_naming_mongodb() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = MongoEventStore(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=200)
    with pytest.raises(StorageError, match="ServerSelectionTimeoutError") as info:
        await store.append(make_event("a", 1), 0)
    assert info.value.backend == "mongodb-events"
    with pytest.raises(StorageError):
        await store.get_events("a")
    await store.close()
