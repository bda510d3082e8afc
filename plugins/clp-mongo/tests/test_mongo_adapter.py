"""MongoAdapter: the storage conformance suite and the adapter's own promises.

Tests taking ``mongo_backend`` run on the stand-in (``[stand-in:mongomock-motor]``) and on the
server named by CLP_MONGO_URL (``[server:CLP_MONGO_URL]``); see conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import bson
import pytest
from clp_mongo import MongoAdapter
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, DuplicateKeyError

import clp_core as clp
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.storage import VersionedStorage
from clp_core.testing.storage import StorageAdapterSuite, bounded_default_executor


class TestMongoAdapterConformance(StorageAdapterSuite):
    @pytest.fixture(autouse=True)
    def _mongo(self, mongo_backend: Any) -> None:
        self.backend = mongo_backend

    async def make_adapter(self) -> MongoAdapter:
        return self.backend.adapter()

    async def write_raw(self, adapter: MongoAdapter, key: str, raw: bytes) -> None:
        try:
            value: Any = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = bson.Binary(raw)
        await self.backend.raw(adapter.collection_name).replace_one(
            {"_id": key}, {"version": 1, "data": value}, upsert=True)


# -- what is stored ----------------------------------------------------------------------------


async def test_stored_document_is_id_version_and_envelope(mongo_backend: Any) -> None:
    adapter = mongo_backend.adapter()
    assert isinstance(adapter, VersionedStorage)
    await adapter.save("clp:counter", {"state": {"count": 1, "a.b": {"$x": None}}})
    await adapter.save("clp:counter", {"state": {"count": 2, "a.b": {"$x": None}}})
    raw = await mongo_backend.raw("clp_state").find_one({"_id": "clp:counter"})
    assert set(raw) == {"_id", "version", "data"}
    assert raw["version"] == 2
    assert json.loads(raw["data"]) == {"format": "clp/1", "data": {"state": {"count": 2, "a.b": {"$x": None}}}}
    await adapter.close()


async def test_collection_and_database_are_configurable(mongo_backend: Any) -> None:
    adapter = mongo_backend.adapter(collection="orders_state")
    await adapter.save("k", {"x": 1})
    assert await mongo_backend.raw("orders_state").count_documents({}) == 1
    assert await mongo_backend.raw("clp_state").count_documents({}) == 0
    await adapter.close()


@pytest.mark.parametrize("stored, problem", [
    pytest.param({"version": 1}, "no string 'data'", id="no-data"),
    pytest.param({"version": 1, "data": 42}, "no string 'data'", id="data-not-a-string"),
    pytest.param({"version": 1, "data": {"format": "clp/1", "data": {}}}, "no string 'data'", id="data-an-object"),
    pytest.param({"version": "1", "data": '{"format":"clp/1","data":{}}'}, "malformed version", id="version-string"),
    pytest.param({"version": 0, "data": '{"format":"clp/1","data":{}}'}, "malformed version", id="version-zero"),
    pytest.param({"version": True, "data": '{"format":"clp/1","data":{}}'}, "malformed version", id="version-bool"),
    pytest.param({"data": '{"format":"clp/1","data":{}}'}, "malformed version", id="no-version"),
])
async def test_malformed_document_is_corrupt_state(mongo_backend: Any, stored: dict[str, Any], problem: str) -> None:
    adapter = mongo_backend.adapter()
    await mongo_backend.raw("clp_state").insert_one({"_id": "bad", **stored})
    with pytest.raises(CorruptStateError, match=problem) as info:
        await adapter.load_versioned("bad")
    assert "'bad'" in str(info.value) and info.value.backend == "mongodb"
    await adapter.close()


async def test_a_version_written_as_a_double_is_read(mongo_backend: Any) -> None:
    """The mongo shell writes ``version: 3`` as a double; it still reads and compares as 3."""
    adapter = mongo_backend.adapter()
    empty = '{"format":"clp/1","data":{}}'
    await mongo_backend.raw("clp_state").insert_one({"_id": "k", "version": 3.0, "data": empty})
    assert await adapter.load_versioned("k") == ({}, 3)
    assert await adapter.save_versioned("k", {"n": 1}, 3) == 4
    await adapter.close()


# -- concurrency across adapters ---------------------------------------------------------------


async def test_two_adapters_never_lose_an_increment(mongo_backend: Any) -> None:
    """Two adapter objects (on the server: two clients, as two processes would have)."""
    first, second = mongo_backend.adapter(), mongo_backend.adapter()
    version = await first.save_versioned("n", {"n": 0}, 0)
    assert await second.load_versioned("n") == ({"n": 0}, version)
    with pytest.raises(ConflictError):
        await second.save_versioned("n", {"n": "stale"}, 0)

    async def add(adapter: MongoAdapter, times: int) -> None:
        for _ in range(times):
            while True:
                document, version = await adapter.load_versioned("n")
                await asyncio.sleep(0)
                try:
                    await adapter.save_versioned("n", {"n": document["n"] + 1}, version)
                    break
                except ConflictError:
                    await asyncio.sleep(0)

    with bounded_default_executor(16):
        await asyncio.wait_for(asyncio.gather(add(first, 40), add(second, 40), add(first, 40)), 60)
    assert await second.load_versioned("n") == ({"n": 120}, 121)
    await first.close()
    await second.close()


async def test_runtime_on_mongo_storage_persists_and_hydrates(mongo_backend: Any) -> None:
    contract = clp.create_contract(
        intents={"add": {"inputs": {"amount": "number"}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                       + ctx.intent.payload["amount"]}}},
    )
    async with clp.create_runtime(contract, storage=mongo_backend.adapter(), storage_key="order:42") as runtime:
        await runtime.execute("add", {"amount": 2})
        await runtime.execute("add", {"amount": 3})
    async with clp.create_runtime(contract, storage=mongo_backend.adapter(), storage_key="order:42") as again:
        assert again.get_state("count") == 5
    raw = await mongo_backend.raw("clp_state").find_one({"_id": "order:42"})
    assert raw["version"] == 2


async def test_the_16mb_document_limit_is_a_storage_error(mongo_backend: Any) -> None:
    if mongo_backend.is_standin:
        pytest.skip("the stand-in (mongomock) does not enforce MongoDB's 16 MB document limit")
    adapter = mongo_backend.adapter()
    with pytest.raises(StorageError) as info:
        await adapter.save("huge", {"blob": "x" * 17_000_000})
    assert info.value.backend == "mongodb"
    assert await adapter.load("huge") is None
    await adapter.close()


# -- the writes it makes: one conditional write per versioned save ------------------------------


class Recorder:
    """A client with the async collection API that records each call and forwards it."""

    def __init__(self, target: Any, fail: dict[str, list[BaseException]] | None = None) -> None:
        self.target = target
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}

    def __getitem__(self, name: str) -> Any:
        return _RecordingLevel(self, self.target[name])


class _RecordingLevel:
    def __init__(self, recorder: Recorder, target: Any) -> None:
        self.recorder, self.target = recorder, target

    def __getitem__(self, name: str) -> Any:
        return _RecordingLevel(self.recorder, self.target[name])

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.recorder.calls.append((method, args, kwargs))
            failures = self.recorder.fail.get(method)
            if failures:
                raise failures.pop(0)
            return await getattr(self.target, method)(*args, **kwargs)

        return call


@pytest.fixture
def standin_client() -> Any:
    from mongomock_motor import AsyncMongoMockClient

    return AsyncMongoMockClient()


async def test_versioned_save_is_one_filtered_update_or_one_insert(standin_client: Any) -> None:
    recorder = Recorder(standin_client)
    adapter = MongoAdapter(database="app", client=recorder)
    assert await adapter.save_versioned("k", {"n": 1}, 0) == 1
    assert await adapter.save_versioned("k", {"n": 2}, 1) == 2
    with pytest.raises(ConflictError):
        await adapter.save_versioned("k", {"n": "stale"}, 1)
    with pytest.raises(ConflictError):
        await adapter.save_versioned("k", {"n": "again"}, 0)
    writes = [(method, args) for method, args, _ in recorder.calls]
    envelope = '{"format":"clp/1","data":{"n":2}}'
    assert writes[0] == ("insert_one", ({"_id": "k", "version": 1, "data": '{"format":"clp/1","data":{"n":1}}'},))
    assert writes[1] == ("update_one", ({"_id": "k", "version": 1},
                                        {"$set": {"data": envelope}, "$inc": {"version": 1}}))
    assert [method for method, _ in writes[2:]] == ["update_one", "insert_one"]
    assert len(writes) == 4, "each versioned save is exactly one write, with no read before it"


async def test_plain_save_retries_an_upsert_that_lost_a_race(standin_client: Any) -> None:
    recorder = Recorder(standin_client, fail={"update_one": [DuplicateKeyError("E11000 duplicate key", 11000)]})
    adapter = MongoAdapter(client=recorder)
    await adapter.save("k", {"n": 1})
    assert [method for method, _, _ in recorder.calls] == ["update_one", "update_one"]
    assert await adapter.load("k") == {"n": 1}


async def test_driver_errors_are_storage_errors_naming_mongodb(standin_client: Any) -> None:
    recorder = Recorder(standin_client, fail={"find_one": [AutoReconnect("connection reset")],
                                              "insert_one": [AutoReconnect("primary stepped down")]})
    adapter = MongoAdapter(client=recorder)
    with pytest.raises(StorageError, match=r"\[mongodb\] loading key 'k'.*connection reset") as info:
        await adapter.load("k")
    assert info.value.backend == "mongodb" and not isinstance(info.value, ConflictError)
    with pytest.raises(StorageError, match="primary stepped down") as info:
        await adapter.save_versioned("k", {"n": 1}, 0)
    assert not isinstance(info.value, ConflictError)


# -- the real driver, with no server: lazy client, failures, closing ---------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_a_storage_error_naming_mongodb() -> None:
    """PyMongo's real AsyncMongoClient against a closed local port: no server is needed."""
    adapter = MongoAdapter(f"mongodb://user:hunter2@127.0.0.1:{_closed_port()}/app", serverSelectionTimeoutMS=200)
    for operation in (adapter.load("k"), adapter.save("k", {"n": 1}), adapter.save_versioned("k", {}, 0),
                      adapter.delete("k")):
        with pytest.raises(StorageError) as info:
            await operation
        assert info.value.backend == "mongodb"
        assert "ServerSelectionTimeoutError" in str(info.value)
        assert "hunter2" not in str(info.value)
    await adapter.close()


async def test_a_runtime_reports_an_unreachable_server_as_a_storage_failure() -> None:
    contract = clp.create_contract(intents={"noop": {"inputs": {}}}, state={},
                                   transitions={"apply": {"effects": lambda ctx: {}}})
    adapter = MongoAdapter(f"mongodb://127.0.0.1:{_closed_port()}", serverSelectionTimeoutMS=200)
    runtime = clp.create_runtime(contract, storage=adapter)
    with pytest.raises(StorageError, match=r"\[mongodb\]"):
        await runtime.hydrate()
    await runtime.close()


async def test_client_is_made_on_first_use_and_closed_by_close() -> None:
    adapter = MongoAdapter(f"mongodb://127.0.0.1:{_closed_port()}", serverSelectionTimeoutMS=200)
    assert adapter._client is None, "constructing must not connect"
    client = adapter.client
    assert isinstance(client, AsyncMongoClient)
    assert adapter.client is client
    await adapter.close()
    assert adapter._client is None
    await adapter.close()
    assert isinstance(adapter.client, AsyncMongoClient) and adapter.client is not client  # reconnects
    await adapter.close()


async def test_a_given_client_is_not_closed(standin_client: Any) -> None:
    closed: list[bool] = []
    standin_client.close = lambda: closed.append(True)
    adapter = MongoAdapter(client=standin_client)
    await adapter.save("k", {"n": 1})
    await adapter.close()
    assert closed == []
    assert await adapter.load("k") == {"n": 1}  # still usable: its owner closes it


async def test_a_motor_client_is_accepted() -> None:
    """A real Motor client object (never connected here): the adapter only needs its API."""
    from motor.motor_asyncio import AsyncIOMotorClient

    client = AsyncIOMotorClient(f"mongodb://127.0.0.1:{_closed_port()}", serverSelectionTimeoutMS=200)
    adapter = MongoAdapter(database="app", client=client)
    assert adapter.get_collection().full_name == "app.clp_state"
    with pytest.raises(StorageError, match="ServerSelectionTimeoutError"):
        await adapter.load("k")
    await adapter.close()
    client.close()


def test_database_comes_from_the_argument_then_the_url_then_clp() -> None:
    assert MongoAdapter().database == "clp"
    assert MongoAdapter("mongodb://h1:1,h2:2/app?replicaSet=rs0").database == "app"
    assert MongoAdapter("mongodb://h/app", database="other").database == "other"
    assert MongoAdapter("mongodb://h/my%20db").database == "my db"
    assert MongoAdapter("mongodb://h/?tls=true").database == "clp"


def test_a_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(StorageError, match="not a MongoDB URL") as info:
        MongoAdapter("redis://u:secret@localhost/0")
    assert "secret" not in str(info.value)


def test_repr_hides_the_password() -> None:
    assert repr(MongoAdapter("mongodb://ada:s3cret@db:27017/app")) == (
        "MongoAdapter('mongodb://ada:***@db:27017/app', database='app')")
