"""Event-sourced persistence: each commit appends one diff-sized event to the aggregate's
stream; snapshots every ``snapshot_every`` events bound the replay on load.

Messages emitted by a commit travel in its event; their deliveries are recorded in the
stream ``outbox:<key>`` (events of kind ``delivered``), so the aggregate's sequence numbers
keep counting commits only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..errors import ConflictError, HistoryError
from ..events import Event, EventStore, Snapshot, apply_events, entry_from_event, event_from_entry, replay
from ..log import LogEntry, now
from ..messages import Message
from ..state import State, plain
from .base import Report, storage_errors
from .records import Records

logger = logging.getLogger("clp")


class EventPersistence:
    """Keeps the aggregate ``key`` as an event stream in ``store`` (the source of truth)."""

    def __init__(
        self,
        store: EventStore,
        key: str,
        initial_state: Mapping[str, Any],
        *,
        snapshot_every: int,
        records: Records,
        report: Report,
    ) -> None:
        self.store, self.key, self.snapshot_every = store, key, snapshot_every
        self.name = store.name
        self.records = records
        self.seq = 0  # the last sequence number of the stream as this runtime knows it
        self.acks_stream = f"outbox:{key}"
        self._acks_seq = 0
        self.lineage: tuple[tuple[str, int], ...] = ()  # a fork's ancestry, carried in every snapshot
        self._based = False  # the stream has a snapshot (a fork's base, or a later one)
        self._initial = initial_state
        self._report = report

    async def load(self) -> State:
        with storage_errors("replay of", self.key, self.name):
            replayed = await replay(self.store, self.key, base=self._initial, events=True)  # the records need them
        stored = Records(self.records.limit, replayed.idempotency, window=self.records.window,
                         intents=replayed.intents, outbox=replayed.outbox)
        for event in replayed.tail:
            if event.kind == "commit":
                stored.add(entry_from_event(event), [Message.from_dict(m) for m in event.messages])
        with storage_errors("replay of", self.acks_stream, self.name):
            acks = await self.store.get_events(self.acks_stream)
        for ack in acks:
            stored.ack(ack.data.get("ids") or ())
        stored.written(stored.acked)
        self._acks_seq = acks[-1].seq if acks else 0
        self.records = self.records.reloaded(stored)
        self.seq = replayed.seq
        self.lineage = replayed.lineage
        self._based = self._based or replayed.seq > 0 or bool(replayed.lineage)
        return replayed.state

    async def refresh(self, state: State) -> State:
        """Catch up by the tail: the events after the last one this runtime knows."""
        with storage_errors("read of", self.key, self.name):
            events = await self.store.get_events(self.key, after=self.seq)
        if not events or events[0].seq != self.seq + 1:
            # nothing after our last seq although a writer got there first (the stream was
            # deleted, pruned or lost): start again from what the store holds
            return await self.load()
        apply_events(state, events, owned=True)
        for event in events:
            if event.kind == "commit":
                self.records.add(entry_from_event(event), [Message.from_dict(m) for m in event.messages])
        self.seq = events[-1].seq if events else self.seq
        return state

    async def save(self, state: State, entry: LogEntry, messages: tuple[Message, ...] = ()) -> None:
        if self.seq == 0 and self._initial and not self._based:
            # the stream's base, so that replays outside this runtime (clp state, the
            # inspector) start from the same initial state
            await self._snapshot(Snapshot(0, plain(self._initial), {}))
        with storage_errors("append to", self.key, self.name):
            event = event_from_entry(self.key, self.seq + 1, entry, tuple(m.to_dict() for m in messages))
            await self.store.append(event, self.seq)
        self.seq += 1
        self.records.add(entry, messages)
        if len(self.records.acked) >= 100:
            await self.settle(state)
        if self.seq % self.snapshot_every == 0:
            await self._snapshot(Snapshot(self.seq, plain(state), self.records.to_dict(), self.records.intents(),
                                          self.lineage, tuple(self.records.outbox_list())))

    async def settle(self, state: State, tries: int = 100) -> State:
        """Record the deliveries made since the last record in the ``outbox:<key>`` stream."""
        for _ in range(tries):
            acked = sorted(self.records.acked)
            if not acked:
                break
            event = Event(self.acks_stream, self._acks_seq + 1, "delivered", timestamp=now(), data={"ids": acked})
            try:
                with storage_errors("append to", self.acks_stream, self.name):
                    await self.store.append(event, self._acks_seq)
            except ConflictError:
                self._acks_seq = await self.store.last_seq(self.acks_stream)
                continue
            self._acks_seq += 1
            self.records.written(acked)
        return state

    async def _snapshot(self, snapshot: Snapshot) -> None:
        """A failed snapshot only costs replay time: it is reported, not raised."""
        try:
            await self.store.save_snapshot(self.key, snapshot)
        except Exception as exc:
            logger.warning("clp snapshot of %s at %d failed: %s", self.key, snapshot.seq, exc)
            self._report(exc, "storage")

    async def state_at(self, seq: int) -> State:
        last = await self.store.last_seq(self.key)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= last:
            raise HistoryError(f"no event {seq!r} in {self.key!r} (it has events 1 to {last})")
        replayed = await replay(self.store, self.key, until=seq, base=self._initial)
        if replayed.seq != seq or (seq < last and not await self.store.get_events(self.key, seq, seq + 1)):
            raise HistoryError(f"the state of {self.key!r} at {seq} was pruned (replay starts at a later snapshot)")
        return replayed.state

    async def history(self, after: int = 0, page: int = 1000) -> AsyncIterator[Event]:
        while True:
            events = await self.store.get_events(self.key, after=after, until=after + page)
            for event in events:
                yield event
            if len(events) < page:
                return
            after = events[-1].seq
