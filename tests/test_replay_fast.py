"""Replay's fast path: a store's rows applied as decoded (``clp_core.event_codec.replay_rows``),
no Event, Change or undo record built.

Held to the slow path, events built by ``get_events`` and applied by the Writer (what
``replay`` does for a store without ``get_event_rows``): the same state for any mix of
commits, and a ``CorruptStateError`` naming the aggregate and the event for any stored event
the slow path refuses.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as _dt
import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clp_core as clp
from clp_core import SQLiteEventStore, codec, events, ops
from clp_core.errors import ClpError, CorruptStateError, PathError
from clp_core.event_codec import check_event, replay_rows
from clp_core.events import (
    MemoryEventStore,
    RowEventStore,
    event_to_dict,
    register_upcaster,
    replay,
)
from clp_core.state import Change, Writer
from clp_core.state.stored import apply_stored
from clp_core.testing.events import make_event

KEY = "acct:'7"


class SlowStore:
    """An event store's reading methods without its rows: ``replay`` takes the slow path."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> Any:
        return await self.inner.get_events(aggregate_id, after, until)

    async def last_seq(self, aggregate_id: str) -> int:
        return await self.inner.last_seq(aggregate_id)  # type: ignore[no-any-return]

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Any:
        return await self.inner.load_snapshot(aggregate_id, at_or_before)


def typed(value: Any, ordered: bool = True) -> Any:
    """``value`` with every scalar's type (``1 == 1.0 == True`` otherwise) and, if
    ``ordered``, every object's key order made part of equality."""
    if isinstance(value, dict):
        items = [(k, typed(v, ordered)) for k, v in value.items()]
        return ("dict", items if ordered else sorted(items, key=lambda item: item[0]))
    if isinstance(value, list):
        return ("list", [typed(v, ordered) for v in value])
    return (type(value).__name__, value)


def make_store(kind: str, folder: str) -> Any:
    return MemoryEventStore() if kind == "memory" else SQLiteEventStore(f"{folder}/events.db")


# -- the same state, for any mix of commits ---------------------------------------------------
segments = st.sampled_from(["a", "b", "c", "0", "1"])
paths = st.lists(segments, min_size=1, max_size=3).map(".".join)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-10, 10, allow_nan=False),
                 st.text(max_size=4), st.dates(min_value=_dt.date(2000, 1, 1), max_value=_dt.date(2030, 1, 1)))
value = st.recursive(leaf, lambda children: st.one_of(st.lists(children, max_size=3),
                                                      st.dictionaries(segments, children, max_size=3)),
                     max_leaves=6)
write = st.one_of(
    value,  # a set, or a deep merge when both are objects
    st.dictionaries(segments, value, min_size=1, max_size=3),  # a deep merge more often
    st.lists(leaf, max_size=3).map(lambda items: ops.push(*items)),
    st.builds(lambda s, d, items: ops.splice(s, d, *items), st.integers(-3, 3), st.integers(0, 2),
              st.lists(leaf, max_size=2)),
    st.just(ops.unset()),
    value.map(ops.replace),
    st.just(ops.filter(lambda item: not isinstance(item, int))),
)
plans = st.lists(st.dictionaries(paths, write, min_size=1, max_size=3), min_size=1, max_size=30)


def planned_contract(plan: list[dict[str, Any]]) -> clp.Contract:
    """``write(i)`` commits the effects ``plan[i]``."""
    return clp.create_contract(
        intents={"write": {"inputs": {"i": "number"}}},
        transitions={"write": {"effects": lambda ctx: plan[int(ctx.intent.payload["i"])]}},
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["memory", "sqlite"]), plan=plans, snapshot_every=st.integers(2, 40),
       initial=st.dictionaries(segments, value, max_size=3), data=st.data())
def test_fast_and_slow_replay_rebuild_the_same_state(kind: str, plan: list[dict[str, Any]], snapshot_every: int,
                                                     initial: dict[str, Any], data: st.DataObject) -> None:
    async def run(folder: str) -> None:
        store = make_store(kind, folder)
        assert isinstance(store, RowEventStore)
        rt = clp.create_runtime(planned_contract(plan), storage_key=KEY, event_store=store,
                                snapshot_every=snapshot_every, initial_state=initial)
        for i in range(len(plan)):
            try:
                await rt.execute("write", {"i": i})
            except ClpError:  # a write the state refuses (a push onto a number...): no event
                pass
        last = await store.last_seq(KEY)
        fast, slow = await replay(store, KEY, base=initial), await replay(SlowStore(store), KEY, base=initial)
        assert typed(fast.state) == typed(slow.state)
        # a commit rolled back puts back what it unset at the end of its object: the live
        # state may list its keys in another order
        assert typed(fast.state, ordered=False) == typed(rt.get_state(), ordered=False)
        assert fast.seq == slow.seq == last
        until = data.draw(st.integers(0, last), label="until")
        fast = await replay(store, KEY, until=until, base=initial)
        slow = await replay(SlowStore(store), KEY, until=until, base=initial)
        assert typed(fast.state) == typed(slow.state) and fast.seq == slow.seq == until
        assert (await replay(store, KEY, until=until, base=initial, events=True)).tail == slow.tail
        # the lazy tail decodes again: the stored events, not the objects the state took over
        assert list(fast.tail) == await store.get_events(KEY, after=until - len(slow.tail), until=until)
        await rt.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(folder))


# -- a stored change applies as the Writer applies it -----------------------------------------
any_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3)),
                        lambda children: st.one_of(st.lists(children, max_size=3),
                                                   st.dictionaries(segments, children, max_size=3)),
                        max_leaves=5)
stored_change = st.fixed_dictionaries(
    {"op": st.sampled_from(["set", "unset", "push", "splice", "frob", None]),
     "path": st.one_of(paths, st.sampled_from(["", "a..b", "__x__", "a.__y__", ".".join(["a"] * 101)]),
                       st.none(), st.integers(), st.lists(segments, max_size=2))},
    optional={"value": any_json,
              "start": st.one_of(st.none(), st.integers(-4, 4), st.booleans(), st.floats(-2, 2), st.text(max_size=1)),
              "delete_count": st.one_of(st.none(), st.integers(-2, 3), st.booleans(), st.text(max_size=1))},
)


def outcome(apply: Callable[[dict[str, Any]], None], state: dict[str, Any]) -> tuple[Any, Any]:
    try:
        apply(state)
    except Exception as exc:
        return type(exc).__name__, typed(state)
    return None, typed(state)


@settings(max_examples=600, deadline=None)
@given(start=st.dictionaries(segments, any_json, max_size=4), changes=st.lists(stored_change, max_size=6))
def test_stored_changes_apply_as_the_writer_applies_them(start: dict[str, Any], changes: list[dict[str, Any]]) -> None:
    """State, and the error when there is one (a bad path, an index out of range, a push onto
    a number, a splice with a bad start...): the same, change after change."""
    def writer(state: dict[str, Any]) -> None:
        w = Writer(state, journal=False)
        for c in copy.deepcopy(changes):
            w.apply_change(Change(c["op"], c["path"], c.get("value"), c.get("start"), c.get("delete_count")),
                           owned=True)

    def stored(state: dict[str, Any]) -> None:
        apply_stored(state, copy.deepcopy(changes), {})

    assert outcome(stored, copy.deepcopy(start)) == outcome(writer, copy.deepcopy(start))


def test_a_cached_path_is_parsed_once_and_still_walked_each_time() -> None:
    state: dict[str, Any] = {}
    cache: dict[Any, Any] = {}
    apply_stored(state, [{"op": "set", "path": "a.b", "value": 1}, {"op": "unset", "path": "a"},
                         {"op": "set", "path": "a.b", "value": 2}], cache)
    assert state == {"a": {"b": 2}} and list(cache) == ["a.b", "a"]
    with pytest.raises(PathError, match="crosses 'a'"):
        apply_stored({"a": 5}, [{"op": "set", "path": "a.b", "value": 1}], cache)


# -- checking an event refuses what building it refuses --------------------------------------
MISSING = object()
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-1, 1), st.text(max_size=2))
loose = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=2), st.dictionaries(st.text(max_size=4), c,
                                                                                        max_size=2)), max_leaves=4)
some = st.one_of(loose, st.just(MISSING))
edits = st.fixed_dictionaries({}, optional={
    **{name: some for name in ("seq", "kind", "aggregate_id", "payload", "data", "intent_name", "proposal_source",
                               "transition", "timestamp", "idempotency_key", "intent_id", "format_version")},
    "guard_outcomes": st.one_of(some, st.lists(st.one_of(loose, st.fixed_dictionaries(
        {}, optional={"name": loose, "denied": loose})), max_size=2)),
    "diff": st.one_of(some, st.lists(st.one_of(loose, st.fixed_dictionaries(
        {}, optional={"op": st.one_of(st.sampled_from(["set", "push"]), loose), "path": st.one_of(paths, loose),
                      "value": loose, "start": loose, "delete_count": loose})), max_size=2)),
    "messages": st.one_of(some, st.lists(st.one_of(loose, st.lists(st.text(max_size=2), max_size=2)), max_size=2)),
})


@settings(max_examples=1500, deadline=None)
@given(edit=edits)
def test_checking_an_event_refuses_what_building_it_refuses(edit: dict[str, Any]) -> None:
    """``check_event`` (the fast path's check) and ``event_from_dict`` (which checks as it
    builds) accept and refuse the same decoded events, whatever field holds whatever."""
    raw = good(1)
    for name, new in edit.items():
        if new is MISSING:
            raw.pop(name, None)
        else:
            raw[name] = new

    def refused(check: Callable[[dict[str, Any]], Any]) -> bool:
        try:
            check(copy.deepcopy(raw))
        except (KeyError, TypeError, ValueError):
            return True
        return False

    assert refused(check_event) == refused(events.event_from_dict)


# -- what the slow path refuses, the fast path refuses ----------------------------------------
def good(seq: int) -> dict[str, Any]:
    return event_to_dict(make_event(KEY, seq))


def envelope(data: Any) -> str:
    return json.dumps({"format": "clp/1", "data": data}, default=str)


def edited(**changes: Any) -> Callable[[], str]:
    """Event 2 with fields replaced (``None``: removed)."""
    def text() -> str:
        data = good(2)
        for name, new in changes.items():
            if new is None:
                data.pop(name)
            else:
                data[name] = new
        return envelope(data)
    return text


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


CORRUPT: dict[str, Callable[[], str]] = {
    "not JSON": lambda: "{not json",
    "trailing data": lambda: envelope(good(2)) + "}",
    "empty": lambda: "",
    "not an envelope": lambda: json.dumps(good(2)),
    "unknown format": lambda: json.dumps({"format": "clp/9", "data": good(2)}),
    "data not an object": lambda: envelope([1]),
    "NaN": lambda: envelope(good(2)).replace('"amount": 1', '"amount": NaN'),
    "number too big for a float": lambda: envelope(good(2)).replace('"amount": 1', '"amount": 1e400'),
    "nesting too deep": edited(payload={"deep": deep(130)}),
    "no seq": edited(seq=None),
    "seq a string": edited(seq="2"),
    "seq true": edited(seq=True),
    "kind a number": edited(kind=5),
    "no aggregate id": edited(aggregate_id=None),
    "payload a list": edited(payload=[1]),
    "data a string": edited(data="x"),
    "intent name a number": edited(intent_name=3),
    "timestamp a list": edited(timestamp=["t"]),
    "intent id an object": edited(intent_id={"a": 1}),
    "guard outcome without denied": edited(guard_outcomes=[{"name": "g"}]),
    "guard outcomes a string": edited(guard_outcomes="abc"),
    "diff of numbers": edited(diff=[1]),
    "diff an object": edited(diff={"op": "set"}),
    "change without a path": edited(diff=[{"op": "set", "value": 1}]),
    "change without an op": edited(diff=[{"path": "count", "value": 1}]),
    "change op a number": edited(diff=[{"op": 5, "path": "count"}]),
    "change op unknown": edited(diff=[{"op": "frob", "path": "count"}]),
    "change path a list": edited(diff=[{"op": "set", "path": ["count"], "value": 1}]),
    "change path with an empty segment": edited(diff=[{"op": "set", "path": "a..b", "value": 1}]),
    "change path reserved": edited(diff=[{"op": "set", "path": "__proto__", "value": 1}]),
    "push onto a number": edited(diff=[{"op": "push", "path": "count", "value": [1]}]),
    "push of a number": edited(diff=[{"op": "push", "path": "log", "value": 5}]),
    "set across a number": edited(diff=[{"op": "set", "path": "count.x", "value": 1}]),
    "set past an array's end": edited(diff=[{"op": "set", "path": "log.5", "value": 1}]),
    "splice with a text start": edited(diff=[{"op": "splice", "path": "log", "value": [], "start": "0"}]),
    "messages of numbers": edited(messages=[5]),
    "filed under another seq": edited(seq=7),
    "another aggregate's event": edited(aggregate_id="other"),
    "a newer format": edited(format_version=99),
    "a format without an upcaster": edited(format_version=-1),
    "a format version that is text": edited(format_version="1"),
    "sealed, no transform installed": lambda: json.dumps({"format": "clp/1+enc", "kid": "k1", "ct": "x"}),
}

UNAPPLIABLE = {"change op unknown", "change path with an empty segment", "change path reserved", "push onto a number",
               "push of a number", "set across a number", "set past an array's end", "splice with a text start"}


async def stream_with(kind: str, folder: str, text: str) -> Any:
    """Events 1 to 3 of ``KEY``, event 2 stored as ``text``."""
    store = make_store(kind, folder)
    for seq in (1, 2, 3):
        await store.append(make_event(KEY, seq), seq - 1)
    if kind == "memory":
        store._streams[KEY][1] = text
    else:
        with sqlite3.connect(f"{folder}/events.db") as db:
            db.execute("UPDATE clp_events SET data = ? WHERE aggregate_id = ? AND seq = 2", (text, KEY))
    return store


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("case", list(CORRUPT))
async def test_a_corrupt_stored_event_is_corrupt_state_on_both_paths(kind: str, case: str, tmp_path: Path) -> None:
    store = await stream_with(kind, str(tmp_path), CORRUPT[case]())
    with pytest.raises(CorruptStateError) as fast:
        await replay(store, KEY)
    assert f"2 of {KEY!r}" in str(fast.value) and fast.value.backend == store.name
    with pytest.raises(CorruptStateError):
        await replay(SlowStore(store), KEY)
    if case in UNAPPLIABLE:  # readable: replaying is what fails
        assert [e.seq for e in await store.get_events(KEY)] == [1, 2, 3]
        assert "cannot be applied" in str(fast.value)
    else:
        with pytest.raises(CorruptStateError) as read:
            await store.get_events(KEY)
        assert f"2 of {KEY!r}" in str(read.value)
    assert (await replay(store, KEY, until=1)).state == {"count": 1, "log": ["é1"]}  # before it: readable
    await store.close()


def test_every_corruption_case_is_readable_when_repaired() -> None:
    """The cases break one thing each: the unedited event they start from replays."""
    state: dict[str, Any] = {}
    replay_rows(state, [(1, envelope(good(1))), (2, edited()())], KEY, "test")
    assert state == {"count": 2, "log": ["é1", "é2"]}


BENIGN: dict[str, Callable[[], str]] = {
    "spaces around": lambda: " \n" + envelope(good(2)) + "\n ",
    "keys in another order, indented": lambda: json.dumps({"data": dict(reversed(good(2).items())),
                                                           "format": "clp/1"}, indent=2),
    "dates in values": edited(diff=[{"op": "set", "path": "when", "value": {"__date__": "2026-01-02"}},
                                    {"op": "set", "path": "at",
                                     "value": {"__datetime__": "2026-01-02T03:04:05+00:00"}}]),
    "an older format, upcast": edited(format_version=0, diff=None, old_diff=[
        {"op": "set", "path": "count", "value": 2}]),
}


@pytest.fixture
def old_diffs_upcast() -> Any:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        data["diff"] = data.pop("old_diff", data.get("diff"))
        return data

    register_upcaster(0, upcast)
    yield
    events._upcasters.pop(0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("case", list(BENIGN))
async def test_unusual_but_sound_stored_events_replay_the_same_both_ways(
        kind: str, case: str, tmp_path: Path, old_diffs_upcast: Any) -> None:
    store = await stream_with(kind, str(tmp_path), BENIGN[case]())
    fast, slow = await replay(store, KEY), await replay(SlowStore(store), KEY)
    assert typed(fast.state) == typed(slow.state) and fast.state["count"] == 3
    assert list(fast.tail) == slow.tail == await store.get_events(KEY)
    await store.close()


async def test_a_sealed_event_replays_through_the_installed_transform(tmp_path: Path) -> None:
    class Wrap:  # a transform that seals text in a JSON string (no encryption: the path is what is tested)
        def seal(self, text: str) -> str:
            return json.dumps({"format": codec.SEALED_FORMAT, "kid": "w", "text": text})

        def open(self, envelope: Any, *, backend: str, key: str) -> str:
            return str(envelope["text"])

    with codec.using(Wrap()):
        store = await stream_with("sqlite", str(tmp_path), Wrap().seal(envelope(good(2))))
        fast, slow = await replay(store, KEY), await replay(SlowStore(store), KEY)
    assert fast.state == slow.state == {"count": 3, "log": ["é1", "é2", "é3"]}
    await store.close()


# -- no events built, unless asked --------------------------------------------------------------
async def test_replay_from_rows_builds_no_event_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryEventStore()
    for seq in (1, 2, 3):
        await store.append(make_event(KEY, seq), seq - 1)
    built = await store.get_events(KEY)
    real = events.event_from_dict
    calls: list[int] = []

    def counted(raw: dict[str, Any], **options: Any) -> Any:
        calls.append(raw["seq"])
        return real(raw, **options)

    monkeypatch.setattr(events, "event_from_dict", counted)
    replayed = await replay(store, KEY)
    assert replayed.state == {"count": 3, "log": ["é1", "é2", "é3"]} and calls == []
    assert len(replayed.tail) == 3 and calls == []  # counting needs no event
    assert list(replayed.tail) == built and calls == [1, 2, 3]  # built when first read, once
    assert replayed.tail[0] == built[0] and calls == [1, 2, 3]
    calls.clear()
    assert (await replay(store, KEY, events=True)).tail == built and calls == [1, 2, 3]


async def test_a_runtime_hydrates_through_the_rows(tmp_path: Path) -> None:
    """Hydration replays the rows too, building the tail's events for the idempotency records."""
    def add(ctx: Any) -> dict[str, Any]:
        return {"count": (ctx.state.get("count") or 0) + ctx.intent.payload["amount"]}

    contract = clp.create_contract(
        intents={"add": {"inputs": {"amount": "number", "key": "string?"}}},
        transitions={"add": {"effects": add, "idempotency_key": lambda ctx: ctx.intent.payload.get("key")}},
    )
    store = SQLiteEventStore(str(tmp_path / "events.db"))
    async with clp.create_runtime(contract, storage_key=KEY, event_store=store, snapshot_every=1000) as rt:
        for amount in (1, 2, 3):
            await rt.execute("add", {"amount": amount, "key": f"k{amount}"})
    again = clp.create_runtime(contract, storage_key=KEY, event_store=SQLiteEventStore(str(tmp_path / "events.db")))
    entry = await again.execute("add", {"amount": 2, "key": "k2"})
    assert entry.replay and again.get_state("count") == 6 and again.last_seq == 3
    await again.close()
