"""What a store keeps about recent commits, atomically with the state: the entries of
commits with an idempotency key, the ids of the last intents committed (with the
transition each took), so that a retried commit is answered instead of applied twice, and
the messages emitted but not yet delivered (the transactional outbox)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

from ..ids import compact_id, expand_id
from ..log import LogEntry, entry_from_dict, entry_to_dict
from ..messages import Message
from ..snapshots import committed_intents

_ABSENT = object()


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
        # intent id -> transition. The stored form (compact ids, runs of transitions) is built
        # when first stored, then kept up to date as ids come and go, so a write does not
        # rebuild it and a runtime that never writes never makes it.
        self._intents: collections.OrderedDict[str, str | None] = collections.OrderedDict(intents)
        self._ids_text: str | None = None
        self._runs: collections.deque[list[Any]] | None = None
        self._trim()
        self._pending: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict(
            (m["id"], dict(m)) for m in outbox)
        self.acked: set[str] = set()  # delivered, still in the stored outbox until the next write
        self.failures_unwritten = False

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
        transition = self._intents.get(intent_id, _ABSENT)
        if transition is _ABSENT:
            return False, None
        return True, transition  # type: ignore[return-value]

    def reloaded(self, stored: Records) -> Records:
        """``stored`` (just read) with this instance's deliveries not yet written applied."""
        stored.ack(self.acked)
        return stored

    def add(self, entry: LogEntry, messages: Iterable[Message] = ()) -> None:
        for message in messages:
            self._pending[message.id] = message.to_dict()
        if entry.idempotency_key is not None:
            self._items[entry.idempotency_key] = entry_to_dict(entry)
            if len(self._items) > self.limit:
                self._items.popitem(last=False)
        intent_id = entry.intent_id
        if intent_id is not None and self.window:
            intents = self._intents
            if intent_id in intents:  # not expected (ids are unique), but keep the stored form exact
                del intents[intent_id]
                self._ids_text = self._runs = None
            transition = intents[intent_id] = entry.transition_result.name
            if self._ids_text is not None or self._runs is not None:
                self._store_intent(intent_id, transition)
            if len(intents) > self.window:
                intents.popitem(last=False)
                if self._ids_text is not None or self._runs is not None:
                    self._unstore_oldest()

    def discard(self, entry: LogEntry, messages: Iterable[Message] = ()) -> None:
        for message in messages:
            self._pending.pop(message.id, None)
        if entry.idempotency_key is not None:
            self._items.pop(entry.idempotency_key, None)
        if entry.intent_id is not None and entry.intent_id in self._intents:
            del self._intents[entry.intent_id]
            self._ids_text = self._runs = None

    def _trim(self) -> None:
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        while len(self._intents) > self.window:
            self._intents.popitem(last=False)
            self._unstore_oldest()

    def _unstore_oldest(self) -> None:
        """Drop the oldest intent from the stored form, once built."""
        if self._ids_text is not None:  # compact ids hold no space
            cut = self._ids_text.find(" ")
            self._ids_text = "" if cut < 0 else self._ids_text[cut + 1:]
        if self._runs is not None:
            self._runs[0][1] -= 1
            if not self._runs[0][1]:
                self._runs.popleft()

    def _store_intent(self, intent_id: str, transition: str | None) -> None:
        """Add an intent to the stored form, once built."""
        if self._ids_text is not None:
            short = compact_id(intent_id)
            self._ids_text = f"{self._ids_text} {short}" if self._ids_text else short
        if self._runs is not None:
            _count_run(self._runs, transition)

    def to_list(self) -> list[list[Any]]:
        """As stored: a list of ``[key, entry]`` keeps their age order through stores that sort keys (jsonb)."""
        return [[k, v] for k, v in self._items.items()]

    def to_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def intents(self) -> tuple[tuple[str, str | None], ...]:
        return tuple(self._intents.items())

    def intents_stored(self) -> dict[str, Any]:
        """The window as a document stores it, compact (a commit writes it whole):
        ``{"ids": "<compact id> ...", "runs": [[transition, how many], ...]}``, oldest first."""
        if self._ids_text is None:
            self._ids_text = " ".join(compact_id(i) for i in self._intents)
        if self._runs is None:
            self._runs = collections.deque()
            for transition in self._intents.values():
                _count_run(self._runs, transition)
        return {"ids": self._ids_text, "runs": [list(r) for r in self._runs]}

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
            self.failures_unwritten = True

    def unwritten(self) -> bool:
        """Whether deliveries or failed deliveries wait to be written."""
        return bool(self.acked) or self.failures_unwritten

    def written(self, acked: Iterable[str]) -> None:
        """The outbox was saved without ``acked``: they need not be written again."""
        self.acked.difference_update(acked)
        self.failures_unwritten = False


def _count_run(runs: collections.deque[list[Any]], transition: str | None) -> None:
    """One more intent through ``transition`` at the end of ``runs`` (``[transition, how many]``)."""
    if runs and runs[-1][0] == transition:
        runs[-1][1] += 1
    else:
        runs.append([transition, 1])


def stored_intents(stored: Any) -> tuple[tuple[str, str | None], ...]:
    """The window of :meth:`Records.intents_stored` (or, as written before, a list of
    ``[id, transition]``). Raises ``ValueError`` if malformed."""
    if not isinstance(stored, dict):
        return committed_intents(stored)
    ids, runs = stored.get("ids"), stored.get("runs")
    if not (isinstance(ids, str) and isinstance(runs, list)
            and all(isinstance(r, list) and len(r) == 2 and (r[0] is None or isinstance(r[0], str))
                    and type(r[1]) is int and r[1] > 0 for r in runs)):
        raise ValueError("malformed intent ids")
    shorts = ids.split(" ") if ids else []
    if sum(r[1] for r in runs) != len(shorts):
        raise ValueError("malformed intent ids")
    try:
        return tuple(zip((expand_id(i) for i in shorts), (t for t, n in runs for _ in range(n)), strict=True))
    except ValueError:
        raise ValueError("malformed intent ids") from None
