"""What a store keeps about recent commits, atomically with the state: the entries of
commits with an idempotency key, the ids of the last intents committed (with the
transition each took), so that a retried commit is answered instead of applied twice, and
the messages emitted but not yet delivered (the transactional outbox)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

from ..log import LogEntry, entry_from_dict, entry_to_dict
from ..messages import Message


class Records:
    """At most ``limit`` idempotency records and ``window`` intent ids, the oldest dropped
    first when one is added."""

    def __init__(
        self,
        limit: int,
        items: Mapping[str, Any] | None = None,
        *,
        window: int,
        intents: Iterable[tuple[str, str | None]] = (),
        outbox: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.limit, self.window = limit, window
        self._items: collections.OrderedDict[str, Any] = collections.OrderedDict(items or {})
        # intent id -> [intent id, transition]: the stored pair, built once, not on every write
        self._intents: collections.OrderedDict[str, list[str | None]] = collections.OrderedDict(
            (i, [i, t]) for i, t in intents)
        self._trim()
        self._pending: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict(
            (m["id"], dict(m)) for m in outbox)
        self.acked: set[str] = set()  # delivered, still in the stored outbox until the next write
        self._failures_unwritten = False

    def empty(self) -> Records:
        return Records(self.limit, window=self.window)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> LogEntry | None:
        stored = self._items.get(key)
        return None if stored is None else entry_from_dict(stored)

    def committed(self, intent_id: str) -> tuple[bool, str | None]:
        """Whether intent ``intent_id`` committed (within the window), and its transition."""
        if intent_id in self._intents:
            return True, self._intents[intent_id][1]
        return False, None

    def reloaded(self, stored: Records) -> Records:
        """``stored`` (just read) with this instance's deliveries not yet written applied."""
        stored.ack(self.acked)
        return stored

    def add(self, entry: LogEntry, messages: Iterable[Message] = ()) -> None:
        for message in messages:
            self._pending[message.id] = message.to_dict()
        if entry.idempotency_key is not None:
            self._items[entry.idempotency_key] = entry_to_dict(entry)
        if entry.intent_id is not None and self.window:
            self._intents[entry.intent_id] = [entry.intent_id, entry.transition_result.name]
        self._trim()

    def discard(self, entry: LogEntry, messages: Iterable[Message] = ()) -> None:
        for message in messages:
            self._pending.pop(message.id, None)
        if entry.idempotency_key is not None:
            self._items.pop(entry.idempotency_key, None)
        if entry.intent_id is not None:
            self._intents.pop(entry.intent_id, None)

    def _trim(self) -> None:
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        while len(self._intents) > self.window:
            self._intents.popitem(last=False)

    def to_list(self) -> list[list[Any]]:
        """As stored: a list of ``[key, entry]`` keeps their age order through stores that sort keys (jsonb)."""
        return [[k, v] for k, v in self._items.items()]

    def to_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def intents(self) -> tuple[tuple[str, str | None], ...]:
        return tuple((i, t) for i, t in self._intents.values())  # type: ignore[misc]

    def intents_list(self) -> list[list[str | None]]:
        return list(self._intents.values())

    def pending(self) -> list[Message]:
        """Messages emitted by commits that landed, not yet delivered, oldest first."""
        return [Message.from_dict(m) for m in self._pending.values()]

    def outbox_list(self) -> list[dict[str, Any]]:
        return list(self._pending.values())

    def ack(self, ids: Iterable[str]) -> None:
        for message_id in ids:
            if self._pending.pop(message_id, None) is not None:
                self.acked.add(message_id)

    def failed(self, message_id: str, error: str, attempts: int) -> None:
        if message_id in self._pending:
            self._pending[message_id].update(error=error, attempts=attempts)
            self._failures_unwritten = True

    def unwritten(self) -> bool:
        """Whether deliveries or failed deliveries wait to be written."""
        return bool(self.acked) or self._failures_unwritten

    def written(self, acked: Iterable[str]) -> None:
        """The outbox was saved without ``acked``: they need not be written again."""
        self.acked.difference_update(acked)
        self._failures_unwritten = False
