"""The runtime with storage: hydration, persistence, failures, idempotency across restarts,
and no lost update when several runtimes share one key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.storage import FileSystemAdapter, MemoryAdapter, SQLiteAdapter
from clp_core.storage.filesystem import key_to_filename

KEY = "clp:counter"


def counter_contract() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number", "user": {"profile": {"name": "string"}}},
        transitions={
            "apply": {
                "when": lambda ctx: ctx.intent.complete,
                "effects": lambda ctx: {
                    "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)
                },
            }
        },
    )


def profile_contract() -> clp.Contract:
    return clp.create_contract(
        intents={
            "increment": {"inputs": {"amount": "number?"}},
            "rename": {"inputs": {"name": "string"}},
        },
        state={"count": "number", "user": {"profile": {"name": "string"}}},
        transitions={
            "apply": {
                "when": lambda ctx: ctx.intent.name == "increment",
                "effects": lambda ctx: {
                    "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)
                },
            },
            "rename": {
                "when": lambda ctx: ctx.intent.name == "rename",
                "effects": lambda ctx: {"user.profile.name": ctx.intent.payload["name"]},
            },
        },
    )


def charge_contract(calls: list[str]) -> clp.Contract:
    async def charge(ctx: Any) -> dict[str, Any]:
        calls.append(ctx.intent.payload["order_id"])
        await asyncio.sleep(0.001)
        return {"charged": (ctx.state.get("charged") or 0) + ctx.intent.payload["amount"]}

    return clp.create_contract(
        intents={"charge": {"inputs": {"order_id": "string", "amount": "number"}}},
        state={"charged": "number"},
        transitions={
            "charge": {
                "when": lambda ctx: ctx.intent.complete,
                "effects": charge,
                "idempotency_key": lambda ctx: ctx.intent.payload["order_id"],
            }
        },
    )


AdapterFactory = Callable[[Path], Any]

DURABLE: dict[str, AdapterFactory] = {
    "filesystem": lambda tmp: FileSystemAdapter(tmp / "store"),
    "sqlite": lambda tmp: SQLiteAdapter(tmp / "clp.db"),
}


@pytest.fixture(params=sorted(DURABLE))
def make_durable(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    factory = DURABLE[request.param]
    return lambda: factory(tmp_path)


class GatedAdapter(MemoryAdapter):
    """A memory adapter whose loads wait for ``gate`` and are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.loads = 0
        self.closes = 0

    async def load_versioned(self, key: str) -> tuple[dict[str, Any] | None, int]:
        self.loads += 1
        await self.gate.wait()
        return await super().load_versioned(key)

    async def close(self) -> None:
        self.closes += 1


class FailingAdapter(MemoryAdapter):
    """A versioned memory adapter whose saves raise ``error`` while ``failing`` is set."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.failing = False

    async def save(self, key: str, document: dict[str, Any]) -> None:
        if self.failing:
            raise self.error
        await super().save(key, document)

    async def save_versioned(self, key: str, document: dict[str, Any], expected_version: int) -> int:
        if self.failing:
            raise self.error
        return await super().save_versioned(key, document, expected_version)


class PlainFailingAdapter:
    """Only load/save/delete/close (no versioned saves); saves raise while ``failing``."""

    name = "plain-failing"

    def __init__(self, error: BaseException) -> None:
        self.inner = MemoryAdapter()
        self.error = error
        self.failing = False

    async def load(self, key: str) -> Any:
        return await self.inner.load(key)

    async def save(self, key: str, document: dict[str, Any]) -> None:
        if self.failing:
            raise self.error
        await self.inner.save(key, document)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        pass


async def seeded_memory(count: int, cls: type[MemoryAdapter] = MemoryAdapter) -> Any:
    adapter = cls()
    await MemoryAdapter.save(adapter, KEY, {"state": {"count": count}, "idempotency": {}})
    return adapter


# -- defaults ------------------------------------------------------------------------------


def test_defaults_without_storage() -> None:
    runtime = clp.create_runtime(counter_contract())
    assert runtime.persist_on_commit is False
    assert runtime.hydrate_on_init is False


@pytest.mark.parametrize("storage", [MemoryAdapter(), "memory://"], ids=["instance", "url"])
def test_defaults_with_storage(storage: Any) -> None:
    runtime = clp.create_runtime(counter_contract(), storage=storage)
    assert runtime.persist_on_commit is True
    assert runtime.hydrate_on_init is True


def test_explicit_options_win(tmp_path: Path) -> None:
    runtime = clp.create_runtime(counter_contract(), storage=SQLiteAdapter(tmp_path / "x.db"),
                                 persist_on_commit=False, hydrate_on_init=False)
    assert runtime.persist_on_commit is False
    assert runtime.hydrate_on_init is False
    runtime = clp.create_runtime(counter_contract(), persist_on_commit=True, hydrate_on_init=True)
    assert runtime.persist_on_commit is True
    assert runtime.hydrate_on_init is True


async def test_without_storage_nothing_is_saved() -> None:
    runtime = clp.create_runtime(counter_contract(), storage_key=KEY)
    await runtime.execute("increment", {"amount": 3})
    assert runtime.get_state("count") == 3
    assert await runtime.storage.load(KEY) is None


async def test_with_storage_commits_are_saved_and_state_hydrated() -> None:
    adapter = await seeded_memory(10)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    await runtime.execute("increment", {"amount": 2})
    assert runtime.get_state("count") == 12
    stored = await adapter.load(KEY)
    assert stored is not None and stored["state"] == {"count": 12}


async def test_hydrate_off_ignores_stored_state() -> None:
    adapter = await seeded_memory(10)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY,
                                 hydrate_on_init=False, persist_on_commit=False)
    await runtime.execute("increment", {"amount": 2})
    assert runtime.get_state("count") == 2
    assert (await adapter.load(KEY))["state"] == {"count": 10}


async def test_persist_off_saves_nothing() -> None:
    adapter = await seeded_memory(10)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY, persist_on_commit=False)
    await runtime.execute("increment", {"amount": 2})
    assert runtime.get_state("count") == 12
    assert (await adapter.load(KEY))["state"] == {"count": 10}


# -- state across runtimes -----------------------------------------------------------------


async def test_state_survives_a_restart(make_durable: Callable[[], Any]) -> None:
    first = clp.create_runtime(profile_contract(), storage=make_durable(), storage_key=KEY)
    async with first:
        await first.execute("increment", {"amount": 5})
        await first.execute("increment", {"amount": 2})
        await first.execute("rename", {"name": "Zoë 王 🚀"})
    second = clp.create_runtime(profile_contract(), storage=make_durable(), storage_key=KEY)
    async with second:
        assert second.get_state("count") == 7
        assert second.get_state("user.profile.name") == "Zoë 王 🚀"
        await second.execute("increment")
    third = clp.create_runtime(profile_contract(), storage=make_durable(), storage_key=KEY)
    await third.hydrate()
    assert third.get_state() == {"count": 8, "user": {"profile": {"name": "Zoë 王 🚀"}}}
    await third.close()


async def test_keys_are_separate(make_durable: Callable[[], Any]) -> None:
    adapter = make_durable()
    a = clp.create_runtime(counter_contract(), storage=adapter, storage_key="a")
    b = clp.create_runtime(counter_contract(), storage=adapter, storage_key="b")
    await a.execute("increment", {"amount": 1})
    await b.execute("increment", {"amount": 100})
    a2 = clp.create_runtime(counter_contract(), storage=make_durable(), storage_key="a")
    async with a2:
        assert a2.get_state("count") == 1
    await adapter.close()


async def test_async_with_hydrates_and_closes() -> None:
    adapter = await seeded_memory(41, GatedAdapter)
    adapter.gate.set()
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    assert runtime.get_state("count") is None
    async with runtime as entered:
        assert entered is runtime
        assert adapter.loads == 1
        assert runtime.get_state("count") == 41  # hydrated on enter, before any lifecycle call
        assert adapter.closes == 0
        await runtime.execute("increment")
    assert adapter.closes == 1
    assert adapter.loads == 1, "a runtime hydrates once, not again at each call"


async def test_async_with_closes_on_error() -> None:
    adapter = await seeded_memory(0, GatedAdapter)
    adapter.gate.set()
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    with pytest.raises(RuntimeError):
        async with runtime:
            raise RuntimeError("boom")
    assert adapter.closes == 1


async def test_async_with_closes_sqlite_connection(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "c.db")
    async with clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY) as runtime:
        await runtime.execute("increment")
        assert adapter._conn is not None
    assert adapter._conn is None


# -- hydration before the first call ------------------------------------------------------


@pytest.mark.parametrize("persist", [True, False])
async def test_first_call_waits_for_hydration(persist: bool) -> None:
    adapter = await seeded_memory(10, GatedAdapter)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY, persist_on_commit=persist)
    task = asyncio.ensure_future(runtime.execute("increment", {"amount": 1}))
    await asyncio.sleep(0.05)
    assert not task.done(), "execute went ahead before the stored state was loaded"
    adapter.gate.set()
    await asyncio.wait_for(task, 5)
    assert runtime.get_state("count") == 11
    assert adapter.loads == 1
    assert (await adapter.load(KEY))["state"] == {"count": 11 if persist else 10}


async def test_dispatch_before_hydration_waits_for_it() -> None:
    adapter = await seeded_memory(10, GatedAdapter)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY, persist_on_commit=False)
    dispatched = asyncio.ensure_future(runtime.dispatch("increment", {"amount": 4}))
    await asyncio.sleep(0.05)
    assert not dispatched.done(), "dispatch went ahead before the stored state was loaded"
    adapter.gate.set()
    await asyncio.wait_for(dispatched, 5)
    await runtime.commit()
    assert runtime.get_state("count") == 14


async def test_dispatch_racing_hydrate_keeps_hydrated_state() -> None:
    adapter = await seeded_memory(10, GatedAdapter)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    racing = asyncio.gather(runtime.dispatch("increment", {"amount": 2}), runtime.hydrate(), runtime.hydrate())
    await asyncio.sleep(0.05)
    adapter.gate.set()
    await asyncio.wait_for(racing, 5)
    assert adapter.loads == 1
    assert runtime.current_intent is not None and runtime.current_intent.name == "increment"
    await runtime.commit()
    assert runtime.get_state("count") == 12
    assert (await adapter.load(KEY))["state"] == {"count": 12}


async def test_late_hydrate_does_not_overwrite_committed_state() -> None:
    adapter = await seeded_memory(10, GatedAdapter)
    adapter.gate.set()
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY, persist_on_commit=False)
    await runtime.execute("increment", {"amount": 1})  # hydrates itself first
    assert runtime.get_state("count") == 11
    await runtime.hydrate()
    async with runtime:
        assert runtime.get_state("count") == 11, "a later hydrate() threw away a commit"
    assert adapter.loads == 1


# -- failed saves --------------------------------------------------------------------------


@pytest.mark.parametrize("adapter_cls", [FailingAdapter, PlainFailingAdapter], ids=["versioned", "plain"])
@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), StorageError("disk full", backend="test")],
    ids=["os-error", "storage-error"],
)
async def test_failed_save_changes_nothing(adapter_cls: type, error: BaseException) -> None:
    adapter = adapter_cls(error)
    reported: list[tuple[BaseException, str]] = []

    class Recorder:
        def on_error(self, error: BaseException, phase: str) -> None:
            reported.append((error, phase))

    runtime = clp.create_runtime(profile_contract(), storage=adapter, storage_key=KEY, middleware=[Recorder()])
    notified: list[Any] = []
    runtime.subscribe("count", lambda state: notified.append(state["count"]))
    await runtime.execute("increment", {"amount": 1})
    await runtime.execute("rename", {"name": "before"})
    assert notified == [1]
    before = runtime.get_state()
    stored_before = await adapter.load(KEY)

    adapter.failing = True
    with pytest.raises(StorageError) as info:
        await runtime.execute("increment", {"amount": 5})
    assert "No space left" in str(info.value) or "disk full" in str(info.value)
    with pytest.raises(StorageError):
        await runtime.execute("rename", {"name": "after"})

    assert runtime.get_state() == before
    assert runtime.get_state("count") == 1
    assert runtime.get_state("user.profile.name") == "before"
    assert notified == [1], "a subscriber was told about a commit that was not saved"
    assert await adapter.load(KEY) == stored_before
    last = runtime.get_log()[-1]
    assert last.phase == "commit"
    assert last.error is not None
    assert last.transition_result.permitted is False
    assert len(reported) == 2
    assert all(isinstance(e, StorageError) and phase == "storage" for e, phase in reported), reported

    adapter.failing = False
    await runtime.execute("increment", {"amount": 2})
    assert runtime.get_state("count") == 3
    assert (await adapter.load(KEY))["state"]["count"] == 3
    assert notified == [1, 3]


async def test_failed_save_does_not_record_the_idempotency_key() -> None:
    calls: list[str] = []
    adapter = FailingAdapter(OSError("disk gone"))
    runtime = clp.create_runtime(charge_contract(calls), storage=adapter, storage_key=KEY)
    adapter.failing = True
    with pytest.raises(StorageError):
        await runtime.execute("charge", {"order_id": "o-1", "amount": 5})
    adapter.failing = False
    entry = await runtime.execute("charge", {"order_id": "o-1", "amount": 5})
    assert entry.replay is False, "a commit that was never saved was replayed"
    assert calls == ["o-1", "o-1"]
    assert runtime.get_state("charged") == 5


# -- corrupt storage -----------------------------------------------------------------------


async def test_corrupt_file_fails_hydration_and_is_never_overwritten(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    path = tmp_path / key_to_filename(KEY)
    raw = b'{"format": "clp/1", "data": {"version": 3, "document": {"state": {"count": 5}'  # cut short
    path.write_bytes(raw)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    with pytest.raises(CorruptStateError):
        await runtime.hydrate()
    with pytest.raises(CorruptStateError):
        async with runtime:
            pass
    with pytest.raises(CorruptStateError):
        await runtime.execute("increment")
    with pytest.raises(CorruptStateError):
        await runtime.dispatch("increment")
    assert runtime.get_state("count") is None
    assert path.read_bytes() == raw, "the runtime wrote over data it could not read"


async def test_corrupt_sqlite_row_fails_hydration(tmp_path: Path) -> None:
    import sqlite3

    adapter = SQLiteAdapter(tmp_path / "c.db")
    await adapter.save(KEY, {"state": {"count": 1}})
    conn = sqlite3.connect(tmp_path / "c.db")
    with conn:
        conn.execute("UPDATE clp_state SET data = ? WHERE key = ?", ('{"format": "clp/9", "data": {}}', KEY))
    conn.close()
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    with pytest.raises(CorruptStateError, match="clp/9"):
        await runtime.hydrate()
    with pytest.raises(CorruptStateError):
        await runtime.execute("increment")
    await runtime.close()


@pytest.mark.parametrize(
    "document",
    [
        {"count": 5},
        {"state": [1, 2]},
        {"state": "text"},
        {"state": None},
        {"state": {"count": 1}, "idempotency": [1, 2]},
        {"state": {"count": 1}, "idempotency": "x"},
    ],
    ids=["no-state", "state-list", "state-str", "state-none", "idem-list", "idem-str"],
)
async def test_malformed_document_fails_hydration(document: dict[str, Any]) -> None:
    adapter = MemoryAdapter()
    await adapter.save(KEY, document)
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=KEY)
    with pytest.raises(CorruptStateError):
        await runtime.hydrate()
    with pytest.raises(CorruptStateError):
        await runtime.execute("increment")
    assert await adapter.load(KEY) == document


# -- idempotency across restarts -----------------------------------------------------------


async def test_idempotency_key_survives_a_restart(make_durable: Callable[[], Any]) -> None:
    calls: list[str] = []
    first = clp.create_runtime(charge_contract(calls), storage=make_durable(), storage_key=KEY)
    async with first:
        entry = await first.execute("charge", {"order_id": "o-1", "amount": 5})
        assert entry.replay is False
        assert entry.idempotency_key == "o-1"
    assert calls == ["o-1"]

    adapter = make_durable()
    stored = await adapter.load(KEY)
    assert stored is not None and "o-1" in dict(stored["idempotency"])
    await adapter.close()

    second = clp.create_runtime(charge_contract(calls), storage=make_durable(), storage_key=KEY)
    async with second:
        replayed = await second.execute("charge", {"order_id": "o-1", "amount": 5})
        assert replayed.replay is True
        assert calls == ["o-1"], "the effect ran again after a restart"
        assert second.get_state("charged") == 5
        assert second.current_intent is None
        assert second.get_log()[-1].replay is True
        assert replayed.state_diff == entry.state_diff
        await second.execute("charge", {"order_id": "o-2", "amount": 7})
        assert calls == ["o-1", "o-2"]
        assert second.get_state("charged") == 12

    third = clp.create_runtime(charge_contract(calls), storage=make_durable(), storage_key=KEY)
    async with third:
        assert (await third.execute("charge", {"order_id": "o-2", "amount": 7})).replay is True
        assert (await third.execute("charge", {"order_id": "o-1", "amount": 5})).replay is True
    assert calls == ["o-1", "o-2"]


# -- several runtimes on one key -----------------------------------------------------------

SHARED: dict[str, Callable[[Path, Any], Any]] = {
    "sqlite": lambda tmp, shared: SQLiteAdapter(tmp / "shared.db"),
    "filesystem": lambda tmp, shared: FileSystemAdapter(tmp / "shared"),
    "memory-shared-instance": lambda tmp, shared: shared,
}


@pytest.mark.parametrize("kind", sorted(SHARED))
async def test_two_runtimes_interleaving_never_lose_an_increment(tmp_path: Path, kind: str) -> None:
    shared = MemoryAdapter()
    factory = SHARED[kind]
    conflicts = 0

    class Counting:
        """Passes everything through to the adapter, counting conflicts."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.name = inner.name

        async def load(self, key: str) -> Any:
            return await self.inner.load(key)

        async def load_versioned(self, key: str) -> Any:
            return await self.inner.load_versioned(key)

        async def save(self, key: str, document: Any) -> None:
            await self.inner.save(key, document)

        async def save_versioned(self, key: str, document: Any, expected_version: int) -> int:
            nonlocal conflicts
            try:
                return await self.inner.save_versioned(key, document, expected_version)
            except ConflictError:
                conflicts += 1
                raise

        async def delete(self, key: str) -> None:
            await self.inner.delete(key)

        async def close(self) -> None:
            await self.inner.close()

    runtimes = [
        clp.create_runtime(counter_contract(), storage=Counting(factory(tmp_path, shared)), storage_key=KEY)
        for _ in range(2)
    ]
    for runtime in runtimes:
        await runtime.hydrate()
    calls = [runtime.execute("increment") for _ in range(100) for runtime in runtimes]
    await asyncio.wait_for(asyncio.gather(*calls), 120)

    assert conflicts > 0, "the two runtimes never conflicted: the test did not exercise the retry"
    for runtime in runtimes:
        commits = [e for e in runtime.get_log() if e.phase == "commit"]
        assert len(commits) == 100
        assert all(e.transition_result.permitted and e.error is None for e in commits)
        await runtime.close()
    reader = clp.create_runtime(counter_contract(), storage=factory(tmp_path, shared), storage_key=KEY)
    async with reader:
        assert reader.get_state("count") == 200
