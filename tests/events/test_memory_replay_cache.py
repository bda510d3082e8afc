"""MemoryEventStore keeps each event as read (``event_codec.checked_rows``) from the second
read of a stream on: later replays decode nothing, and what they put into a state is a copy,
never the kept event. One read (a hydration) keeps nothing."""

from __future__ import annotations

from typing import Any

import pytest

import clp_core as clp
from clp_core import codec, event_codec, ops
from clp_core.errors import CorruptStateError
from clp_core.events import MemoryEventStore, replay

KEY = "cart"


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"add": {"inputs": {"item": "string"}}},
        transitions={"add": {"effects": lambda ctx: {
            "items": ops.push({"name": ctx.intent.payload["item"], "tags": ["new"]}),
            "last": {"name": ctx.intent.payload["item"]},
        }}},
    )


async def filled() -> tuple[MemoryEventStore, dict[str, Any]]:
    store = MemoryEventStore()
    runtime = clp.create_runtime(contract(), storage_key=KEY, event_store=store)
    for item in ("a", "b", "c"):
        await runtime.execute("add", {"item": item})
    return store, runtime.get_state()


async def test_the_first_read_keeps_nothing() -> None:
    store, live = await filled()
    fresh = MemoryEventStore()
    fresh._streams[KEY] = store._streams[KEY]
    assert (await replay(fresh, KEY)).state == live and fresh._read[KEY] == {}
    await replay(fresh, KEY)
    assert sorted(fresh._read[KEY]) == [1, 2, 3]


async def test_a_replay_after_the_second_decodes_nothing_and_builds_the_same_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, live = await filled()  # the runtime's hydration read the stream once
    first = await replay(store, KEY)  # the second read keeps the events
    scans: list[Any] = []
    monkeypatch.setattr(codec, "plain_object", lambda text: scans.append(text))
    monkeypatch.setattr(event_codec.codec, "plain_object", lambda text: scans.append(text))
    second = await replay(store, KEY)
    assert first.state == second.state == live and scans == []
    assert [e.seq for e in second.tail] == [1, 2, 3]  # the events, built from what was kept


async def test_the_state_replay_builds_shares_nothing_with_the_kept_events() -> None:
    store, live = await filled()
    state = (await replay(store, KEY)).state
    state["items"][0]["tags"].append("changed")
    state["last"]["name"] = "changed"
    state["items"].append("extra")
    again = (await replay(store, KEY)).state
    assert again == live
    events = await store.get_events(KEY)
    assert events[0].diff[0].value == [{"name": "a", "tags": ["new"]}]


async def test_events_handed_back_share_nothing_with_the_kept_rows() -> None:
    """Events a replay or get_events builds from rows the store keeps get their own payload
    and data: changing them changes no later read."""
    store, _ = await filled()
    await replay(store, KEY)  # the second read on keeps the rows
    for read in range(3):
        replayed = await replay(store, KEY, events=True)
        got = await store.get_events(KEY)
        assert replayed.tail[0].payload == {"item": "a"} and got[0].payload == {"item": "a"}, f"read {read}"
        for event in (replayed.tail[0], got[0]):
            event.payload["item"] = "changed"
            event.data["changed"] = True


async def test_a_replaced_text_is_read_again() -> None:
    store, _ = await filled()
    await replay(store, KEY)
    store._streams[KEY][1] = "not json"
    with pytest.raises(CorruptStateError, match=f"2 of {KEY!r}"):
        await replay(store, KEY)


@pytest.mark.parametrize("drop", ["delete", "prune"])
async def test_delete_and_prune_drop_what_was_kept(drop: str) -> None:
    store, _ = await filled()
    await replay(store, KEY)
    assert store._read[KEY]
    if drop == "delete":
        await store.delete(KEY)
    else:
        runtime = clp.create_runtime(contract(), storage_key=KEY, event_store=store, snapshot_every=1)
        await runtime.execute("add", {"item": "d"})
        await store.prune(KEY, 4)
    assert KEY not in store._read


@pytest.mark.parametrize("read", ["first", "kept", "slow", "sqlite"])
async def test_replayed_events_do_not_share_values_with_the_state(read: str, tmp_path: Any) -> None:
    """An event that writes an object and then a key inside it: the event returned with the
    state still holds the object as written (the state got a copy)."""
    contract = clp.create_contract(
        intents={"write": {"inputs": {}}},
        transitions={"write": {"effects": lambda ctx: {"a": {}, "a.b": 1}}},
    )
    store: Any = clp.SQLiteEventStore(str(tmp_path / "events.db")) if read == "sqlite" else MemoryEventStore()
    runtime = clp.create_runtime(contract, storage_key=KEY, event_store=store)
    await runtime.execute("write")
    if read == "kept":
        await replay(store, KEY)
    source: Any = store
    if read == "slow":
        class Slow:
            name = store.name
            get_events, last_seq, load_snapshot = store.get_events, store.last_seq, store.load_snapshot
        source = Slow()
    replayed = await replay(source, KEY, events=True)
    assert replayed.state == {"a": {"b": 1}}
    assert replayed.tail[0].diff[0].value == {}
    if read == "sqlite":
        await store.close()
