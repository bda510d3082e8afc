"""Event sourcing: one event per commit, an append-only store per aggregate, replay, snapshots.

An aggregate is a storage key. Its events are numbered from 1 (``seq``); appending checks the
expected last sequence number, so two writers of one aggregate never both succeed. Events
are attrs classes serialised with cattrs to JSON (``FORMAT_VERSION``); older formats are
upgraded on read by registered upcasters.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
import cattrs

from . import codec
from .errors import ConflictError, CorruptStateError, HistoryError
from .log import GuardOutcome, LogEntry, TransitionResult
from .state import Change, State, Writer, plain

FORMAT_VERSION = 1


@attrs.frozen
class Event:
    """One committed change of an aggregate, as recorded."""

    aggregate_id: str
    seq: int
    kind: str  # "commit"; sagas use their own kinds in their own streams
    intent_name: str | None = None
    payload: Mapping[str, Any] = attrs.field(factory=dict)
    proposal_source: str | None = None
    guard_outcomes: tuple[GuardOutcome, ...] = ()
    transition: str | None = None
    diff: tuple[Change, ...] = ()
    timestamp: str = ""
    idempotency_key: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)  # kind-specific extras (sagas)
    intent_id: str | None = None
    messages: tuple[Mapping[str, Any], ...] = ()  # emitted with the commit (the transactional outbox)
    format_version: int = FORMAT_VERSION


def event_from_entry(aggregate_id: str, seq: int, entry: LogEntry,
                     messages: tuple[Mapping[str, Any], ...] = ()) -> Event:
    return Event(
        aggregate_id=aggregate_id,
        seq=seq,
        kind="commit",
        intent_name=entry.intent_name,
        payload=plain(entry.intent_payload or {}),
        proposal_source=entry.proposal_source,
        guard_outcomes=entry.guard_outcomes,
        transition=entry.transition_result.name,
        diff=entry.state_diff,
        timestamp=entry.timestamp,
        idempotency_key=entry.idempotency_key,
        intent_id=entry.intent_id,
        messages=messages,
    )


def entry_from_event(event: Event) -> LogEntry:
    """The commit's log entry as the event recorded it (idempotent replays after a restart)."""
    return LogEntry(
        intent_name=event.intent_name,
        intent_payload=event.payload,
        phase="commit",
        timestamp=event.timestamp,
        guard_outcomes=event.guard_outcomes,
        transition_attempted=event.transition,
        transition_result=TransitionResult(event.transition, True),
        state_diff=event.diff,
        proposal_source=event.proposal_source,
        idempotency_key=event.idempotency_key,
        intent_id=event.intent_id,
    )


_converter = cattrs.Converter()  # writing events; reading builds them directly (_event_from_raw)
_converter.register_unstructure_hook(Change, lambda c: {
    "op": c.op, "path": c.path, "value": plain(c.value), "start": c.start, "delete_count": c.delete_count})
_converter.register_unstructure_hook(Mapping, lambda m: {k: plain(v) for k, v in m.items()})

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_upcasters: dict[int, Upcaster] = {}


def register_upcaster(from_version: int, upcaster: Upcaster) -> None:
    """Register ``upcaster(raw_event_dict) -> raw_event_dict`` upgrading events of format
    ``from_version`` to ``from_version + 1``; chains run until the current format."""
    _upcasters[from_version] = upcaster


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event (cattrs); dates stay date objects."""
    return _converter.unstructure(event)  # type: ignore[no-any-return]


def event_to_json(event: Event) -> str:
    return codec.encode(_converter.unstructure(event))


def event_from_json(text: str | bytes, *, backend: str) -> Event:
    raw = codec.decode(text, backend=backend, key="event")
    if not isinstance(raw, dict):
        raise CorruptStateError("stored event is not an object", backend=backend)
    version = raw.get("format_version", 1)
    while version < FORMAT_VERSION:
        upcaster = _upcasters.get(version)
        if upcaster is None:
            raise CorruptStateError(f"no upcaster registered for event format {version}", backend=backend)
        raw = upcaster(dict(raw))
        version = raw["format_version"] = version + 1
    if version > FORMAT_VERSION:
        raise CorruptStateError(f"event format {version} is newer than this clp-core reads", backend=backend)
    try:
        return _event_from_raw(raw)
    except Exception as exc:  # a missing key, a wrong type
        raise CorruptStateError(f"stored event is malformed: {type(exc).__name__}: {exc}", backend=backend) from exc


def _text(value: Any, name: str) -> Any:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is {type(value).__name__}, not a string")
    return value


def _event_from_raw(raw: dict[str, Any]) -> Event:
    """An event from its decoded JSON, built directly (replay reads many: this is its hot path)."""
    seq, kind, aggregate = raw["seq"], raw["kind"], raw["aggregate_id"]
    if type(seq) is not int or not isinstance(kind, str) or not isinstance(aggregate, str):
        raise TypeError("aggregate_id, seq and kind must be a string, an integer and a string")
    payload, data = raw.get("payload") or {}, raw.get("data") or {}
    if not isinstance(payload, dict) or not isinstance(data, dict):
        raise TypeError("payload and data must be objects")
    return Event(
        aggregate, seq, kind,
        intent_name=_text(raw.get("intent_name"), "intent_name"),
        payload=payload,
        proposal_source=_text(raw.get("proposal_source"), "proposal_source"),
        guard_outcomes=tuple(GuardOutcome(str(g["name"]), bool(g["denied"])) for g in raw.get("guard_outcomes") or ()),
        transition=_text(raw.get("transition"), "transition"),
        diff=tuple(Change(_text(c["op"], "op"), _text(c["path"], "path"), c.get("value"), c.get("start"),
                          c.get("delete_count")) for c in raw.get("diff") or ()),
        timestamp=_text(raw.get("timestamp"), "timestamp") or "",
        idempotency_key=_text(raw.get("idempotency_key"), "idempotency_key"),
        data=data,
        intent_id=_text(raw.get("intent_id"), "intent_id"),
        messages=tuple(dict(m) for m in raw.get("messages") or ()),
        format_version=raw.get("format_version", FORMAT_VERSION),
    )


def apply_events(state: State, events: Iterable[Event], *, owned: bool = False) -> State:
    """Apply the diffs of ``events`` to ``state`` in place and return it. ``owned``: the
    events were decoded for this call, so their values may go into the state uncopied."""
    writer = Writer(state, journal=False)
    for event in events:
        for change in event.diff:
            writer.apply_change(change, owned=owned)
    return state


@attrs.frozen
class Snapshot:
    seq: int
    state: Mapping[str, Any]
    idempotency: Mapping[str, Any] = attrs.field(factory=dict)
    intents: tuple[tuple[str, str | None], ...] = ()  # (intent id, transition) of the last commits
    #: a fork's ancestry, nearest first: ((parent key, seq forked at), (grandparent key, seq), ...)
    lineage: tuple[tuple[str, int], ...] = ()
    outbox: tuple[Mapping[str, Any], ...] = ()  # messages not yet delivered


@runtime_checkable
class EventStore(Protocol):
    """Append-only event streams with optimistic concurrency, plus snapshots."""

    name: str

    async def append(self, event: Event, expected_seq: int) -> None:
        """Append ``event`` (whose ``seq`` is ``expected_seq + 1``) if the stream's last
        sequence number is ``expected_seq``; otherwise raise :class:`ConflictError`."""

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        """Events with ``after < seq <= until`` in order, decoded for this call: the caller owns
        them (replay puts their values into a state without copying)."""

    async def last_seq(self, aggregate_id: str) -> int:
        """The stream's last sequence number (0 when empty)."""

    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        """Keep a snapshot of the state as of ``snapshot.seq``."""

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        """The latest snapshot with ``seq <= at_or_before`` (or the latest of all), decoded for
        this call: the caller owns its state and may change it."""

    async def aggregates(self) -> list[str]:
        """Every aggregate id with events."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class RetainingEventStore(EventStore, Protocol):
    """An event store that can also forget (an optional capability; every built-in store has it).

    ``prune`` never breaks replay: it needs a snapshot at or before ``before`` and keeps
    everything from the latest such snapshot on (see :func:`prune_point`).
    """

    async def delete(self, aggregate_id: str) -> None:
        """Remove the aggregate's events and snapshots (a missing aggregate is not an error).
        Not for a stream that writers are still appending to."""

    async def prune(self, aggregate_id: str, before: int) -> int:
        """Delete the events older than the latest snapshot at or before ``before``, and the
        snapshots older than it; return that snapshot's seq (replay starts there now). Raise
        :class:`HistoryError` if there is no such snapshot."""


async def prune_point(store: EventStore, aggregate_id: str, before: int) -> int:
    """The seq of the latest snapshot at or before ``before``: a prune deletes events and
    snapshots older than it. Raises :class:`HistoryError` when pruning would make replay impossible."""
    last = await store.last_seq(aggregate_id)
    if isinstance(before, bool) or not isinstance(before, int) or not 1 <= before <= last:
        raise HistoryError(f"cannot prune {aggregate_id!r} before {before!r}: it has events 1 to {last}")
    snapshot = await store.load_snapshot(aggregate_id, before)
    if snapshot is None:
        raise HistoryError(f"cannot prune {aggregate_id!r} before {before}: no snapshot at or before {before}, "
                           "so replay would be impossible (lower snapshot_every, or prune later)")
    return snapshot.seq


async def lineage(store: EventStore, aggregate_id: str) -> list[tuple[str, int]]:
    """A fork's ancestry, nearest first: ``[(parent key, seq it was forked at), ..., (root key, seq)]``;
    empty for an aggregate that is not a fork. Every snapshot of a fork carries it."""
    snapshot = await store.load_snapshot(aggregate_id, 0) or await store.load_snapshot(aggregate_id)
    return [(key, seq) for key, seq in snapshot.lineage] if snapshot is not None else []


@attrs.frozen
class Replayed:
    state: State
    seq: int  # the last sequence number applied
    idempotency: dict[str, Any]  # the snapshot's idempotency records
    tail: list[Event]  # the events applied after the snapshot
    intents: tuple[tuple[str, str | None], ...] = ()  # the snapshot's window of committed intent ids
    lineage: tuple[tuple[str, int], ...] = ()  # the snapshot's fork ancestry
    outbox: tuple[Mapping[str, Any], ...] = ()  # the snapshot's undelivered messages


async def replay(
    store: EventStore, aggregate_id: str, until: int | None = None, base: Mapping[str, Any] | None = None
) -> Replayed:
    """Rebuild an aggregate's state from its latest snapshot (at or before ``until``), or from
    ``base``, and the events after it."""
    snapshot = await store.load_snapshot(aggregate_id, until)
    if snapshot is not None and type(snapshot.state) is dict:
        state: State = snapshot.state  # decoded for this call: already ours, no copy needed
    else:
        state = plain(dict(snapshot.state if snapshot is not None else base or {}))
    seq = snapshot.seq if snapshot else 0
    events = await store.get_events(aggregate_id, after=seq, until=until)
    if events and events[0].seq != seq + 1:
        raise HistoryError(f"events {seq + 1} to {events[0].seq - 1} of {aggregate_id!r} were pruned")
    reached = events[-1].seq if events else seq
    if until is not None and reached < until and await store.last_seq(aggregate_id) > reached:
        raise HistoryError(f"the state of {aggregate_id!r} at {until} was pruned (replay starts at a later snapshot)")
    apply_events(state, events, owned=True)  # decoded for this call (the protocol says so)
    return Replayed(state, reached,
                    dict(snapshot.idempotency) if snapshot else {}, events, snapshot.intents if snapshot else (),
                    snapshot.lineage if snapshot else (), snapshot.outbox if snapshot else ())


def snapshot_to_json(snapshot: Snapshot) -> str:
    records = [[k, v] for k, v in snapshot.idempotency.items()]  # a list keeps their age order
    document = {"seq": snapshot.seq, "state": plain(snapshot.state), "idempotency": records,
                "intents": [list(pair) for pair in snapshot.intents], "outbox": [dict(m) for m in snapshot.outbox]}
    if snapshot.lineage:
        document["lineage"] = [list(pair) for pair in snapshot.lineage]
    return codec.encode(document)


def snapshot_from_json(text: str | bytes, *, backend: str) -> Snapshot:
    raw = codec.decode(text, backend=backend, key="snapshot")
    if not isinstance(raw, dict) or not isinstance(raw.get("state"), dict) or not isinstance(raw.get("seq"), int):
        raise CorruptStateError("stored snapshot is malformed", backend=backend)
    try:
        records = idempotency_records(raw.get("idempotency"))
    except ValueError:
        raise CorruptStateError("stored snapshot has malformed idempotency records", backend=backend) from None
    try:
        intents = committed_intents(raw.get("intents"))
    except ValueError:
        raise CorruptStateError("stored snapshot has malformed intent ids", backend=backend) from None
    outbox = raw.get("outbox") or []
    if not isinstance(outbox, list) or not all(isinstance(m, dict) and "id" in m for m in outbox):
        raise CorruptStateError("stored snapshot has a malformed outbox", backend=backend)
    ancestry = raw.get("lineage") or []
    if not isinstance(ancestry, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int for p in ancestry
    ):
        raise CorruptStateError("stored snapshot has a malformed lineage", backend=backend)
    return Snapshot(raw["seq"], raw["state"], records, intents, tuple((k, s) for k, s in ancestry), tuple(outbox))


def idempotency_records(stored: Any) -> collections.OrderedDict[str, Any]:
    """Idempotency records as stored (a list of ``[key, entry]``, oldest first; older
    documents used a dict), in age order. Raises ``ValueError`` if malformed."""
    if stored is None:
        return collections.OrderedDict()
    if isinstance(stored, dict):
        return collections.OrderedDict(stored)
    if isinstance(stored, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in stored
    ):
        return collections.OrderedDict((k, v) for k, v in stored)
    raise ValueError("malformed idempotency records")


def committed_intents(stored: Any) -> tuple[tuple[str, str | None], ...]:
    """The window of committed intent ids as stored (a list of ``[id, transition]``, oldest
    first). Raises ``ValueError`` if malformed."""
    if stored is None:
        return ()
    if isinstance(stored, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
        and (pair[1] is None or isinstance(pair[1], str)) for pair in stored
    ):
        return tuple((i, t) for i, t in stored)
    raise ValueError("malformed intent ids")


class MemoryEventStore:
    """Event streams in this process (tests, and runtimes that only want time travel)."""

    name = "memory-events"

    def __init__(self) -> None:
        self._streams: dict[str, list[str]] = {}
        self._snapshots: dict[str, list[tuple[int, str]]] = {}
        self._pruned: dict[str, int] = {}  # how many leading events of a stream were pruned

    async def append(self, event: Event, expected_seq: int) -> None:
        stream = self._streams.setdefault(event.aggregate_id, [])
        last = self._pruned.get(event.aggregate_id, 0) + len(stream)
        if last != expected_seq or event.seq != expected_seq + 1:
            raise ConflictError(f"stream {event.aggregate_id!r} is at {last}, not {expected_seq}", backend=self.name)
        stream.append(event_to_json(event))

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        stream, offset = self._streams.get(aggregate_id, []), self._pruned.get(aggregate_id, 0)
        end = None if until is None else max(until - offset, 0)
        return [event_from_json(raw, backend=self.name) for raw in stream[max(after - offset, 0):end]]

    async def last_seq(self, aggregate_id: str) -> int:
        return self._pruned.get(aggregate_id, 0) + len(self._streams.get(aggregate_id, []))

    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        kept = [s for s in self._snapshots.get(aggregate_id, []) if s[0] != snapshot.seq]
        self._snapshots[aggregate_id] = sorted([*kept, (snapshot.seq, snapshot_to_json(snapshot))], key=lambda s: s[0])

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        for seq, raw in reversed(self._snapshots.get(aggregate_id, [])):
            if at_or_before is None or seq <= at_or_before:
                return snapshot_from_json(raw, backend=self.name)
        return None

    async def aggregates(self) -> list[str]:
        return sorted(k for k, v in self._streams.items() if v)

    async def delete(self, aggregate_id: str) -> None:
        for kept in (self._streams, self._snapshots, self._pruned):
            kept.pop(aggregate_id, None)

    async def prune(self, aggregate_id: str, before: int) -> int:
        point = await prune_point(self, aggregate_id, before)
        offset = self._pruned.get(aggregate_id, 0)
        if point - 1 > offset:  # events 1 .. point - 1 go
            self._streams[aggregate_id] = self._streams[aggregate_id][point - 1 - offset:]
            self._pruned[aggregate_id] = point - 1
        self._snapshots[aggregate_id] = [s for s in self._snapshots.get(aggregate_id, []) if s[0] >= point]
        return point

    async def close(self) -> None:
        pass
