"""Commit identity: every intent has a unique, sortable id recorded with the state, so a
commit retried after a lost reply (or after a restart) is answered, not applied twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import StorageError, ValidationError
from clp_core.events import Event
from clp_core.ids import compact_id
from clp_core.storage import FileSystemAdapter, MemoryAdapter, SQLiteAdapter

KEY = "clp:wallet"


def wallet() -> clp.Contract:
    return clp.create_contract(
        intents={"pay": {"inputs": {"amount": "number"}}},
        state={"paid": "number"},
        transitions={"charge": {"effects": lambda ctx: {"paid": (ctx.state.get("paid") or 0)
                                                          + ctx.intent.payload["amount"]}}},
    )


class LostReply:
    """Wraps a storage adapter: the next ``save_versioned`` lands, then its reply is lost."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.armed = inner, "lossy", False

    async def load(self, key: str) -> Any:
        return await self.inner.load(key)

    async def load_versioned(self, key: str) -> Any:
        return await self.inner.load_versioned(key)

    async def save(self, key: str, document: Any) -> None:
        await self.inner.save(key, document)

    async def save_versioned(self, key: str, document: Any, expected: int) -> int:
        version: int = await self.inner.save_versioned(key, document, expected)
        if self.armed:
            self.armed = False
            raise TimeoutError("no reply")
        return version

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()


class LostAppend:
    """Wraps an event store: the next ``append`` lands, then its reply is lost."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.armed = inner, "lossy-events", False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, event: Event, expected_seq: int) -> None:
        await self.inner.append(event, expected_seq)
        if self.armed:
            self.armed = False
            raise ConnectionResetError("reply lost")


ADAPTERS = {
    "memory": lambda tmp: MemoryAdapter(),
    "file": lambda tmp: FileSystemAdapter(tmp / "files"),
    "sqlite": lambda tmp: SQLiteAdapter(str(tmp / "state.db")),
}


def test_intent_ids_are_unique_sortable_uuid7_and_on_every_entry() -> None:
    ids = [clp.Intent("pay", {"amount": 1}).id for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)


def test_ids_of_one_millisecond_stay_sorted_past_4096(monkeypatch: pytest.MonkeyPatch) -> None:
    from clp_core import ids as ids_module

    monkeypatch.setattr(ids_module, "_time_ns", lambda: 1_900_000_000_000_000_000)  # a frozen clock
    monkeypatch.setattr(ids_module, "_last", [0, 0, ""])  # (restored after: later ids keep the real clock)
    made = [ids_module.new_id() for _ in range(9000)]  # more than one millisecond's 4096
    assert made == sorted(made) and len(set(made)) == 9000
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made)
    assert {uuid.UUID(i).int >> 80 for i in made} >= {1_900_000_000_000 + k for k in range(1, 3)}


async def test_log_entries_carry_the_intent_id() -> None:
    runtime = clp.create_runtime(wallet())
    intent = await runtime.dispatch("pay", {"amount": 3})
    entry = await runtime.commit()
    assert [e.intent_id for e in runtime.get_log()] == [intent.id, intent.id]
    assert entry.intent_id == intent.id
    again = await runtime.execute("pay", {"amount": 3})
    assert again.intent_id != intent.id


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
async def test_a_commit_retried_after_a_lost_reply_applies_once(kind: str, tmp_path: Path) -> None:
    storage = LostReply(ADAPTERS[kind](tmp_path))
    runtime = clp.create_runtime(wallet(), storage=storage, storage_key=KEY)
    await runtime.dispatch("pay", {"amount": 100})
    storage.armed = True
    with pytest.raises(StorageError) as failed:
        await runtime.commit()
    assert failed.value.outcome == "unknown"
    assert runtime.get_state("paid") is None  # not known to have happened: rolled back in memory
    entry = await runtime.commit()  # the retry docs/exactly-once.md advises
    assert entry.replay and entry.transition_result.name == "charge"
    assert runtime.get_state("paid") == 100
    assert runtime.current_intent is None
    after = clp.create_runtime(wallet(), storage=ADAPTERS[kind](tmp_path) if kind != "memory" else storage.inner,
                               storage_key=KEY)
    await after.hydrate()
    assert after.get_state("paid") == 100


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
async def test_a_retry_with_the_same_intent_id_after_a_restart_applies_once(kind: str, tmp_path: Path) -> None:
    storage = ADAPTERS[kind](tmp_path)
    first = clp.create_runtime(wallet(), storage=storage, storage_key=KEY)
    entry = await first.execute("pay", {"amount": 40}, intent_id="order-17")
    assert not entry.replay and entry.intent_id == "order-17"
    restarted = clp.create_runtime(wallet(), storage=ADAPTERS[kind](tmp_path) if kind != "memory" else storage,
                                   storage_key=KEY)
    again = await restarted.execute("pay", {"amount": 40}, intent_id="order-17")
    assert again.replay and again.intent_id == "order-17"
    assert restarted.get_state("paid") == 40
    other = await restarted.execute("pay", {"amount": 40}, intent_id="order-18")
    assert not other.replay and restarted.get_state("paid") == 80


async def test_event_store_retry_after_a_lost_append_applies_once(tmp_path: Path) -> None:
    store = LostAppend(clp.SQLiteEventStore(str(tmp_path / "events.db")))
    runtime = clp.create_runtime(wallet(), storage_key=KEY, event_store=store)
    await runtime.dispatch("pay", {"amount": 100})
    store.armed = True
    with pytest.raises(StorageError):
        await runtime.commit()
    entry = await runtime.commit()
    assert entry.replay and runtime.get_state("paid") == 100
    assert [e.intent_id for e in await store.get_events(KEY)] == [entry.intent_id]
    fresh = clp.SQLiteEventStore(str(tmp_path / "events.db"))
    restarted = clp.create_runtime(wallet(), storage_key=KEY, event_store=fresh)
    again = await restarted.execute("pay", {"amount": 100}, intent_id=entry.intent_id)
    assert again.replay and restarted.get_state("paid") == 100


async def test_the_window_of_intent_ids_is_bounded_and_survives_snapshots(tmp_path: Path) -> None:
    storage = SQLiteAdapter(str(tmp_path / "state.db"))
    runtime = clp.create_runtime(wallet(), storage=storage, storage_key=KEY, intent_window=3)
    ids = [(await runtime.execute("pay", {"amount": 1})).intent_id for _ in range(5)]
    document = await storage.load(KEY)
    assert document is not None
    assert document["intents"] == {"ids": " ".join(compact_id(i) for i in ids[-3:]), "runs": [["charge", 3]]}
    events = clp.SQLiteEventStore(str(tmp_path / "events.db"))
    runtime = clp.create_runtime(wallet(), storage_key="ev", event_store=events, snapshot_every=2, intent_window=3)
    ids = [(await runtime.execute("pay", {"amount": 1})).intent_id for _ in range(4)]
    restarted = clp.create_runtime(wallet(), storage_key="ev", event_store=events, intent_window=3)
    assert (await restarted.execute("pay", {"amount": 1}, intent_id=ids[1])).replay  # from the snapshot at 4
    assert not (await restarted.execute("pay", {"amount": 1}, intent_id=ids[0])).replay  # out of the window


async def test_a_bad_intent_id_is_refused() -> None:
    runtime = clp.create_runtime(wallet())
    for bad in ("", "x" * 129, 42):
        with pytest.raises(ValidationError, match="intent_id"):
            await runtime.dispatch("pay", {"amount": 1}, intent_id=bad)  # type: ignore[arg-type]
    assert runtime.current_intent is None


async def test_a_runtime_that_keeps_conflicting_says_how_many_tries_it_made() -> None:
    class AlwaysMoved(MemoryAdapter):
        async def save_versioned(self, key: str, document: Any, expected: int) -> int:
            raise clp.errors.ConflictError(f"key {key!r} moved", backend="moving")

    runtime = clp.create_runtime(wallet(), storage=AlwaysMoved(), storage_key=KEY, max_conflict_retries=3)
    with pytest.raises(clp.errors.ConflictError, match=r"gave up after 4 conflicting tries") as gave_up:
        await runtime.execute("pay", {"amount": 5})
    assert gave_up.value.tries == 4 and isinstance(gave_up.value.__cause__, clp.errors.ConflictError)
    assert runtime.get_state("paid") is None
