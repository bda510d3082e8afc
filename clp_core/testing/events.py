"""A conformance suite for event stores; subclass :class:`EventStoreSuite` and implement
``make_store``::

    class TestMyStore(EventStoreSuite):
        async def make_store(self):
            return MyEventStore(...)

``self.tmp_path`` is a fresh folder; ``self.aggregate`` a unique aggregate id per test.
The retention tests (``delete``, ``prune``) are skipped for a store without those optional
methods (:class:`clp_core.events.RetainingEventStore`), the rows test for a store without
``get_event_rows`` (:class:`clp_core.events.RowEventStore`).
"""

from __future__ import annotations

import abc
import asyncio
import datetime as _dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import ConflictError, HistoryError
from ..events import Event, RetainingEventStore, RowEventStore, Snapshot, lineage, replay
from ..log import GuardOutcome
from ..state import Change


def make_event(aggregate: str, seq: int, amount: int = 1, **extra: Any) -> Event:
    fields: dict[str, Any] = {
        "intent_name": "add", "payload": {"amount": amount}, "proposal_source": "user",
        "guard_outcomes": (GuardOutcome("positive", False),), "transition": "add",
        "diff": (Change("set", "count", seq * amount), Change("push", "log", [f"é{seq}"])),
        "timestamp": _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC).isoformat(), **extra,
    }
    return Event(aggregate_id=aggregate, seq=seq, kind="commit", **fields)


class EventStoreSuite(abc.ABC):
    """Conformance tests every event store passes."""

    tmp_path: Path
    aggregate: str

    @abc.abstractmethod
    async def make_store(self) -> Any:
        """A fresh event store for one test."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Any]:
        self.tmp_path = tmp_path
        self.aggregate = f"agg:{uuid.uuid4().hex}:/'; DROP TABLE x; --"
        store = await self.make_store()
        try:
            yield store
        finally:
            await store.close()

    async def test_append_and_read_in_order(self, store: Any) -> None:
        for seq in range(1, 6):
            await store.append(make_event(self.aggregate, seq), seq - 1)
        events = await store.get_events(self.aggregate)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[0] == make_event(self.aggregate, 1)
        assert [e.seq for e in await store.get_events(self.aggregate, after=2)] == [3, 4, 5]
        assert [e.seq for e in await store.get_events(self.aggregate, after=1, until=3)] == [2, 3]
        assert await store.last_seq(self.aggregate) == 5

    async def test_empty_stream(self, store: Any) -> None:
        assert await store.get_events(self.aggregate) == []
        assert await store.last_seq(self.aggregate) == 0
        assert await store.load_snapshot(self.aggregate) is None

    async def test_conflicting_appends(self, store: Any) -> None:
        await store.append(make_event(self.aggregate, 1), 0)
        with pytest.raises(ConflictError):
            await store.append(make_event(self.aggregate, 1, amount=2), 0)
        with pytest.raises(ConflictError):
            await store.append(make_event(self.aggregate, 3), 2)
        assert [e.payload["amount"] for e in await store.get_events(self.aggregate)] == [1]

    async def test_concurrent_appenders_one_wins_each_slot(self, store: Any) -> None:
        async def writer(n: int) -> int:
            won = 0
            for _ in range(20):
                seq = await store.last_seq(self.aggregate)
                try:
                    await store.append(make_event(self.aggregate, seq + 1, amount=n), seq)
                    won += 1
                except ConflictError:
                    await asyncio.sleep(0)
            return won

        wins = await asyncio.gather(*(writer(n) for n in range(1, 5)))
        events = await store.get_events(self.aggregate)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert sum(wins) == len(events)

    async def test_streams_are_separate(self, store: Any) -> None:
        other = self.aggregate + ":other"
        await store.append(make_event(self.aggregate, 1), 0)
        await store.append(make_event(other, 1, amount=7), 0)
        assert [e.payload["amount"] for e in await store.get_events(other)] == [7]
        assert {self.aggregate, other} <= set(await store.aggregates())

    async def test_snapshots_latest_and_as_of(self, store: Any) -> None:
        for seq in range(1, 7):
            await store.append(make_event(self.aggregate, seq), seq - 1)
        await store.save_snapshot(self.aggregate, Snapshot(2, {"count": 2, "log": ["é1", "é2"]}, {"k": {"x": 1}}))
        await store.save_snapshot(self.aggregate, Snapshot(4, {"count": 4, "log": ["é1", "é2", "é3", "é4"]}))
        latest = await store.load_snapshot(self.aggregate)
        assert latest is not None and latest.seq == 4
        older = await store.load_snapshot(self.aggregate, 3)
        assert older is not None and older.seq == 2 and older.idempotency == {"k": {"x": 1}}
        assert await store.load_snapshot(self.aggregate, 1) is None
        replayed = await replay(store, self.aggregate)
        assert replayed.seq == 6 and replayed.state == {"count": 6, "log": [f"é{i}" for i in range(1, 7)]}
        as_of = await replay(store, self.aggregate, until=3)
        assert as_of.state == {"count": 3, "log": ["é1", "é2", "é3"]}

    async def test_loaded_snapshots_belong_to_the_caller(self, store: Any) -> None:
        await store.append(make_event(self.aggregate, 1), 0)
        await store.save_snapshot(self.aggregate, Snapshot(1, {"count": 1, "log": ["é1"]}))
        first = await store.load_snapshot(self.aggregate)
        assert first is not None
        first.state["log"].append("changed by the caller")  # replay applies diffs in place
        again = await store.load_snapshot(self.aggregate)
        assert again is not None and again.state == {"count": 1, "log": ["é1"]}

    async def test_large_and_nested_events(self, store: Any) -> None:
        big = make_event(self.aggregate, 1, data={"blob": "x" * 1_000_000, "nested": {"a": [1, {"b": None}]}})
        await store.append(big, 0)
        (read,) = await store.get_events(self.aggregate)
        assert read.data == big.data

    # -- rows: replay's fast path (optional capability) -------------------------------------
    async def test_rows_replay_as_the_events_do(self, store: Any) -> None:
        """``get_event_rows`` lists what ``get_events`` decodes, and replay from the rows (no
        events built) rebuilds what replay from the events does: sets, deep paths, pushes,
        splices, unsets, dates."""
        if not isinstance(store, RowEventStore):
            pytest.skip(f"{type(store).__name__} has no get_event_rows (optional)")
        day = _dt.date(2026, 5, 1)
        diffs = [
            (Change("set", "count", 1), Change("set", "orders.A-1", {"qty": 2, "on": day, "tags": ["x"]})),
            (Change("push", "orders.A-1.tags", ["y", "z"]), Change("set", "orders.A-2.qty", 1.5)),
            (Change("splice", "orders.A-1.tags", ["w"], 0, 2), Change("unset", "orders.A-2")),
            (Change("set", "orders.A-1.tags.1", None), Change("set", "count", 4)),
        ]
        for seq, diff in enumerate(diffs, 1):
            await store.append(make_event(self.aggregate, seq, diff=diff), seq - 1)
        rows = await store.get_event_rows(self.aggregate)
        assert [seq for seq, _ in rows] == [1, 2, 3, 4]
        assert [seq for seq, _ in await store.get_event_rows(self.aggregate, after=1, until=3)] == [2, 3]
        assert await store.get_event_rows(self.aggregate + ":none") == []
        expected = {"count": 4, "orders": {"A-1": {"qty": 2, "on": day, "tags": ["w", None]}}}
        fast = await replay(store, self.aggregate)
        assert fast.state == expected and fast.seq == 4
        assert list(fast.tail) == await store.get_events(self.aggregate)
        built = (await replay(store, self.aggregate, events=True)).tail  # their values are the state's now
        assert [e.seq for e in built] == [1, 2, 3, 4] and built[-1] == (await store.get_events(self.aggregate))[-1]
        as_of = await replay(store, self.aggregate, until=2)
        assert as_of.state == {"count": 1, "orders": {"A-1": {"qty": 2, "on": day, "tags": ["x", "y", "z"]},
                                                      "A-2": {"qty": 1.5}}}

    # -- retention (optional capability) ---------------------------------------------------
    @staticmethod
    def _require_retention(store: Any) -> None:
        if not isinstance(store, RetainingEventStore):
            pytest.skip(f"{type(store).__name__} has no delete/prune (optional)")

    async def _stream_with_snapshots(self, store: Any, events: int, *snapshots: int) -> None:
        for seq in range(1, events + 1):
            await store.append(make_event(self.aggregate, seq), seq - 1)
        for seq in snapshots:
            await store.save_snapshot(self.aggregate, Snapshot(
                seq, {"count": seq, "log": [f"é{i}" for i in range(1, seq + 1)]}, lineage=(("parent", 3),)))

    async def test_delete_removes_events_and_snapshots_of_one_aggregate(self, store: Any) -> None:
        self._require_retention(store)
        other = self.aggregate + ":kept"
        await self._stream_with_snapshots(store, 3, 2)
        await store.append(make_event(other, 1), 0)
        await store.delete(self.aggregate)
        assert await store.get_events(self.aggregate) == []
        assert await store.last_seq(self.aggregate) == 0
        assert await store.load_snapshot(self.aggregate) is None
        assert self.aggregate not in await store.aggregates()
        assert [e.seq for e in await store.get_events(other)] == [1]
        await store.delete(self.aggregate)  # a missing aggregate is fine
        await store.append(make_event(self.aggregate, 1), 0)  # and the key can start again
        assert await store.last_seq(self.aggregate) == 1

    async def test_prune_keeps_replay_from_the_latest_snapshot_at_or_before(self, store: Any) -> None:
        self._require_retention(store)
        await self._stream_with_snapshots(store, 8, 2, 5, 7)
        assert await store.prune(self.aggregate, before=6) == 5
        assert [e.seq for e in await store.get_events(self.aggregate)] == [5, 6, 7, 8]
        assert await store.last_seq(self.aggregate) == 8
        assert await store.load_snapshot(self.aggregate, 4) is None
        kept = await store.load_snapshot(self.aggregate, 6)
        assert kept is not None and kept.seq == 5 and kept.lineage == (("parent", 3),)
        assert await lineage(store, self.aggregate) == [("parent", 3)]
        full = [f"é{i}" for i in range(1, 9)]
        assert (await replay(store, self.aggregate)).state == {"count": 8, "log": full}
        assert (await replay(store, self.aggregate, until=6)).state == {"count": 6, "log": full[:6]}
        await store.append(make_event(self.aggregate, 9), 8)  # appends go on after a prune
        assert await store.last_seq(self.aggregate) == 9
        with pytest.raises(ConflictError):
            await store.append(make_event(self.aggregate, 9), 8)

    async def test_prune_up_to_the_last_event_keeps_it(self, store: Any) -> None:
        self._require_retention(store)
        await self._stream_with_snapshots(store, 4, 4)
        assert await store.prune(self.aggregate, before=4) == 4
        assert [e.seq for e in await store.get_events(self.aggregate)] == [4]
        assert await store.last_seq(self.aggregate) == 4
        await store.append(make_event(self.aggregate, 5), 4)
        assert (await replay(store, self.aggregate)).seq == 5

    async def test_prune_without_a_snapshot_is_refused_and_deletes_nothing(self, store: Any) -> None:
        self._require_retention(store)
        await self._stream_with_snapshots(store, 6, 4)
        with pytest.raises(HistoryError, match="replay would be impossible"):
            await store.prune(self.aggregate, before=3)
        with pytest.raises(HistoryError):
            await store.prune(self.aggregate, before=7)  # past the last event
        assert [e.seq for e in await store.get_events(self.aggregate)] == [1, 2, 3, 4, 5, 6]

    async def test_replay_across_a_pruned_gap_is_an_error(self, store: Any) -> None:
        self._require_retention(store)
        await self._stream_with_snapshots(store, 6, 4)
        await store.prune(self.aggregate, before=4)
        with pytest.raises(HistoryError, match="pruned"):
            await replay(store, self.aggregate, until=3)  # no snapshot at or before 3: events 1..3 are gone

    # -- forks and retention through a runtime (any store: only the protocol is used) ----------
    async def test_fork_a_runtime_then_prune_and_delete(self, store: Any) -> None:
        import clp_core as clp
        from clp_core import retention

        contract = clp.create_contract(
            intents={"add": {"inputs": {"amount": "number"}}},
            transitions={"add": {"when": lambda ctx: True, "effects": lambda ctx: {
                "count": (ctx.state.get("count") or 0) + ctx.intent.payload["amount"]}}})
        root = clp.create_runtime(contract, event_store=store, storage_key=self.aggregate, snapshot_every=2)
        for amount in (1, 2, 3, 4, 5):
            await root.execute("add", {"amount": amount})
        child = await root.fork(at=3, key=self.aggregate + ":fork")
        assert child.get_state() == {"count": 6} and child.last_seq == 0
        await child.execute("add", {"amount": 100})
        grandchild = await child.fork(at=1, key=self.aggregate + ":fork2")
        assert grandchild.get_state() == {"count": 106}
        assert await grandchild.lineage() == [(self.aggregate + ":fork", 1), (self.aggregate, 3)]
        assert await root.lineage() == []
        with pytest.raises(HistoryError):  # an existing key: nothing written
            await root.fork(at=1, key=self.aggregate + ":fork")
        assert (await store.load_snapshot(self.aggregate + ":fork", 0)).state == {"count": 6}
        if not isinstance(store, RetainingEventStore):
            return
        removal = await retention.prune(store, self.aggregate, before=5, dry_run=True)
        assert (removal.events, removal.kept_from) == (3, 4) and await store.last_seq(self.aggregate) == 5
        await retention.prune(store, self.aggregate, before=5)
        assert [e.seq for e in await store.get_events(self.aggregate)] == [4, 5]
        assert await root.state_at(4) == {"count": 10}
        with pytest.raises(HistoryError, match="pruned"):
            await root.state_at(2)
        again = clp.create_runtime(contract, event_store=store, storage_key=self.aggregate)
        await again.hydrate()
        assert again.get_state() == {"count": 15}
        await again.execute("add", {"amount": 1})
        assert (await retention.delete(store, self.aggregate + ":fork2")).events == 0
        assert (await retention.delete(store, self.aggregate + ":fork")).events == 1
        assert await store.load_snapshot(self.aggregate + ":fork") is None

    async def test_a_parallel_saga_resumes_mid_group(self, store: Any) -> None:
        import clp_core as clp
        from clp_core import saga as saga_module
        from clp_core.log import entry_to_dict

        contract = clp.create_contract(
            intents={"book": {"inputs": {"what": "string"}}},
            transitions={"book": {"when": lambda ctx: True, "effects": lambda ctx: {
                f"booked.{ctx.intent.payload['what']}": (ctx.state.path(f"booked.{ctx.intent.payload['what']}")
                                                         or 0) + 1}}})
        saga = clp.Saga(name="trip", steps={"first": clp.Step(intent="book", payload={"what": "flight"}),
                                            "stay": clp.Parallel({
                                                "hotel": clp.Step(intent="book", payload={"what": "hotel"}),
                                                "car": clp.Step(intent="book", payload={"what": "car"})})})
        runtime = clp.create_runtime(contract, event_store=store, storage_key=self.aggregate)
        assert (await runtime.run_saga(saga)).status == "completed"
        # a process that died with both members started; hotel committed, unrecorded
        progress = saga_module._Progress(runtime, saga, "crashed")
        await progress.record("saga_started", steps=["first", "stay"])
        first = await runtime.execute("book", {"what": "flight"})
        await progress.record("step_completed", step="first", entry=entry_to_dict(first))
        for member in ("hotel", "car"):
            await progress.record("step_started", step=member, group="stay", payload={"what": member},
                                  after_seq=runtime.last_seq, intent_id=f"{self.aggregate}:{member}")
        await runtime.execute("book", {"what": "hotel"}, intent_id=f"{self.aggregate}:hotel")
        results = await runtime.resume_sagas({"trip": saga})
        assert [(r.saga_id, r.status) for r in results] == [("crashed", "completed")]
        assert runtime.get_state("booked") == {"flight": 2, "hotel": 2, "car": 2}
