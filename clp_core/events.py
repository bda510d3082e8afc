"""Event sourcing: one event per commit, an append-only store per aggregate, replay, snapshots.

An aggregate is a storage key. Its events are numbered from 1 (``seq``); appending checks the
expected last sequence number, so two writers of one aggregate never both succeed. Events
are attrs classes serialised with cattrs to JSON (``FORMAT_VERSION``); reading one back,
upgrading older formats and checking it is :mod:`clp_core.event_codec`'s job, and so is
replay's fast path (the diffs of a stream's stored rows applied without building events).
Snapshots and their format are in :mod:`clp_core.snapshots`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload, runtime_checkable

import attrs
import cattrs

from . import codec
from .errors import ConflictError, CorruptStateError, HistoryError, PathError
from .event_codec import FORMAT_VERSION as FORMAT_VERSION  # the stored format's names, kept importable here
from .event_codec import Checked, Row, checked_rows, event_dict, malformed, misfiled, replay_rows, row_error, text_field
from .event_codec import Upcaster as Upcaster
from .event_codec import _upcasters as _upcasters
from .event_codec import register_upcaster as register_upcaster
from .log import GuardOutcome, LogEntry, TransitionResult
from .snapshots import Snapshot as Snapshot  # snapshots and their format, kept importable here
from .snapshots import committed_intents as committed_intents
from .snapshots import idempotency_records as idempotency_records
from .snapshots import snapshot_from_json as snapshot_from_json
from .snapshots import snapshot_to_json as snapshot_to_json
from .state import Change, State, Writer, plain


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
        seq=seq, kind="commit",
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


_converter = cattrs.Converter()  # writing events; reading builds them directly (event_from_dict)
_converter.register_unstructure_hook(Change, lambda c: {
    "op": c.op, "path": c.path, "value": plain(c.value), "start": c.start, "delete_count": c.delete_count})
_converter.register_unstructure_hook(Mapping, lambda m: {k: plain(v) for k, v in m.items()})


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event (cattrs); dates stay date objects."""
    return _converter.unstructure(event)  # type: ignore[no-any-return]


def event_to_json(event: Event) -> str:
    return codec.encode(_converter.unstructure(event))


def event_from_json(text: str | bytes, *, backend: str, key: str = "event") -> Event:
    """A stored event (its text as :func:`event_to_json` wrote it, any older format upgraded);
    :class:`CorruptStateError` if it is not one (``key`` names it in the decoding errors)."""
    raw = event_dict(text, backend=backend, key=key)
    try:
        return event_from_dict(raw)
    except Exception as exc:  # a missing key, a wrong type
        raise malformed(exc, backend) from exc


def event_from_dict(raw: dict[str, Any], *, copy: bool = False) -> Event:
    """An event from its decoded JSON (current format), built directly, checked as it is built:
    ``KeyError``, ``TypeError`` or ``ValueError`` where :func:`~clp_core.event_codec.check_event`
    raises (``tests/test_replay_fast.py`` holds the two to it); ``copy``: of a row a store keeps."""
    seq, kind, aggregate = raw["seq"], raw["kind"], raw["aggregate_id"]
    if type(seq) is not int or not isinstance(kind, str) or not isinstance(aggregate, str):
        raise TypeError("aggregate_id, seq and kind must be a string, an integer and a string")
    payload, data = raw.get("payload") or {}, raw.get("data") or {}
    if not isinstance(payload, dict) or not isinstance(data, dict):
        raise TypeError("payload and data must be objects")
    payload, data = (plain(payload), plain(data)) if copy else (payload, data)
    return Event(
        aggregate, seq, kind,
        intent_name=text_field(raw.get("intent_name"), "intent_name"),
        payload=payload,
        proposal_source=text_field(raw.get("proposal_source"), "proposal_source"),
        guard_outcomes=tuple(GuardOutcome(str(g["name"]), bool(g["denied"])) for g in raw.get("guard_outcomes") or ()),
        transition=text_field(raw.get("transition"), "transition"),
        diff=tuple(Change(text_field(c["op"], "op"), text_field(c["path"], "path"), c.get("value"), c.get("start"),
                          c.get("delete_count")) for c in raw.get("diff") or ()),
        timestamp=text_field(raw.get("timestamp"), "timestamp") or "",
        idempotency_key=text_field(raw.get("idempotency_key"), "idempotency_key"),
        data=data,
        intent_id=text_field(raw.get("intent_id"), "intent_id"),
        messages=tuple(plain(m) if copy else dict(m) for m in raw.get("messages") or ()),
        format_version=raw.get("format_version", FORMAT_VERSION),
    )


def events_from_rows(rows: Iterable[Row], aggregate_id: str, *, backend: str) -> list[Event]:
    """The events of a stream's rows, ``(seq, stored text)`` pairs, each checked to be event
    ``seq`` of ``aggregate_id`` (what a store's ``get_events`` returns for its rows)."""
    events = []
    for seq, text in rows:
        if isinstance(text, dict):  # read and checked already, as this row (checked_rows)
            events.append(event_from_dict(text, copy=True))
            continue
        try:
            event = event_from_json(text, backend=backend, key=aggregate_id)
        except CorruptStateError as exc:
            raise row_error(exc, seq, aggregate_id) from exc
        if event.seq != seq or event.aggregate_id != aggregate_id:
            raise misfiled(seq, aggregate_id, event.seq, event.aggregate_id, backend)
        events.append(event)
    return events


def apply_events(state: State, events: Iterable[Event], *, owned: bool = False) -> State:
    """Apply the diffs of ``events`` to ``state`` in place and return it. ``owned``: the
    events were decoded for this call, so their values may go into the state uncopied."""
    writer = Writer(state, journal=False)
    for event in events:
        for change in event.diff:
            writer.apply_change(change, owned=owned)
    return state


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


@runtime_checkable
class RowEventStore(EventStore, Protocol):
    """An event store that also lists a stream's stored rows (an optional capability; every
    built-in and plugin store has it). :func:`replay` then applies the rows' diffs without
    building :class:`Event` objects, several times faster."""

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Row]:
        """``(seq, stored text)`` of the events with ``after < seq <= until``, in order: the seq
        each is filed under, and the text :func:`event_to_json` wrote. ``get_events`` is then
        ``events_from_rows(rows, aggregate_id, backend=self.name)``."""


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


class _Tail(Sequence[Event]):
    """The events replay applied from rows, decoded again when first read (replay builds none)."""

    def __init__(self, rows: list[Row], aggregate_id: str, backend: str) -> None:
        self._rows, self._aggregate, self._backend = rows, aggregate_id, backend
        self._events: list[Event] | None = None

    def _built(self) -> list[Event]:
        if self._events is None:
            self._events = events_from_rows(self._rows, self._aggregate, backend=self._backend)
        return self._events

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self._built()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


@attrs.frozen
class Replayed:
    state: State
    seq: int  # the last sequence number applied
    idempotency: dict[str, Any]  # the snapshot's idempotency records
    tail: Sequence[Event]  # the events applied after the snapshot
    intents: tuple[tuple[str, str | None], ...] = ()  # the snapshot's window of committed intent ids
    lineage: tuple[tuple[str, int], ...] = ()  # the snapshot's fork ancestry
    outbox: tuple[Mapping[str, Any], ...] = ()  # the snapshot's undelivered messages


async def replay(
    store: EventStore, aggregate_id: str, until: int | None = None, base: Mapping[str, Any] | None = None,
    *, events: bool = False,
) -> Replayed:
    """Rebuild an aggregate's state from its latest snapshot (at or before ``until``), or from
    ``base``, and the events after it.

    From a store with rows (:class:`RowEventStore`) the diffs are applied as decoded, no event
    built (:func:`~clp_core.event_codec.replay_rows`); ``Replayed.tail`` then decodes them again
    when first read, unless ``events=True`` builds them during the replay. A stored event that
    cannot be read or applied is a :class:`CorruptStateError` either way."""
    snapshot = await store.load_snapshot(aggregate_id, until)
    if snapshot is not None and type(snapshot.state) is dict:
        state: State = snapshot.state  # decoded for this call: already ours, no copy needed
    else:
        state = plain(dict(snapshot.state if snapshot is not None else base or {}))
    seq, read_rows = snapshot.seq if snapshot else 0, getattr(store, "get_event_rows", None)
    tail: Sequence[Event]
    if read_rows is not None:
        rows: list[Row] = await read_rows(aggregate_id, after=seq, until=until)
        kept: list[dict[str, Any]] | None = [] if events else None
        replay_rows(state, rows, aggregate_id, store.name, kept)
        tail = _Tail(rows, aggregate_id, store.name) if kept is None else [  # copied: rows a store keeps
            event_from_dict(r, copy=type(text) is dict) for (_, text), r in zip(rows, kept, strict=True)]
        first, reached = (rows[0][0], rows[-1][0]) if rows else (None, seq)
    else:
        tail = await store.get_events(aggregate_id, after=seq, until=until)
        _apply_stored_events(state, tail, aggregate_id, store.name)
        first, reached = (tail[0].seq, tail[-1].seq) if tail else (None, seq)
    # checked once every stored event is known to be sound (a corrupt one is the first news)
    if first is not None and first != seq + 1:
        raise HistoryError(f"events {seq + 1} to {first - 1} of {aggregate_id!r} were pruned")
    if until is not None and reached < until and await store.last_seq(aggregate_id) > reached:
        raise HistoryError(f"the state of {aggregate_id!r} at {until} was pruned (replay starts at a later snapshot)")
    return Replayed(state, reached,
                    dict(snapshot.idempotency) if snapshot else {}, tail, snapshot.intents if snapshot else (),
                    snapshot.lineage if snapshot else (), snapshot.outbox if snapshot else ())


def _apply_stored_events(state: State, events: Sequence[Event], aggregate_id: str, backend: str) -> None:
    """:func:`apply_events` of events decoded for this call and returned with the state (so
    their values are copied into it, not shared with it); one that cannot be applied is
    corrupt, as in :func:`~clp_core.event_codec.replay_rows`."""
    writer = Writer(state, journal=False)
    for event in events:
        try:
            for change in event.diff:
                writer.apply_change(change)
        except (PathError, TypeError, ValueError) as exc:
            raise CorruptStateError(f"event {event.seq} of {aggregate_id!r} cannot be applied: {exc}",
                                    backend=backend) from exc


class MemoryEventStore:
    """Event streams in this process (tests, and runtimes that only want time travel)."""

    name = "memory-events"

    def __init__(self) -> None:
        self._streams: dict[str, list[str]] = {}
        self._snapshots: dict[str, list[tuple[int, str]]] = {}
        self._pruned: dict[str, int] = {}  # how many leading events of a stream were pruned
        self._read: dict[str, dict[int, tuple[Any, Checked]]] = {}  # events as read: see checked_rows

    async def append(self, event: Event, expected_seq: int) -> None:
        stream = self._streams.setdefault(event.aggregate_id, [])
        last = self._pruned.get(event.aggregate_id, 0) + len(stream)
        if last != expected_seq or event.seq != expected_seq + 1:
            raise ConflictError(f"stream {event.aggregate_id!r} is at {last}, not {expected_seq}", backend=self.name)
        stream.append(event_to_json(event))

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        return events_from_rows(self._rows(aggregate_id, after, until), aggregate_id, backend=self.name)

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Row]:
        """The rows; from the second read of a stream on, the events as read (kept: a stream
        replayed again and again, time travel, decodes nothing; one hydration keeps nothing)."""
        kept = self._read.get(aggregate_id)
        if kept is None:
            self._read[aggregate_id] = {}
            return list(self._rows(aggregate_id, after, until))
        return checked_rows(self._rows(aggregate_id, after, until), kept, aggregate_id, self.name)

    def _rows(self, aggregate_id: str, after: int, until: int | None) -> Iterator[Row]:
        """The rows, one at a time (a list of them, alive while thousands of events are built,
        costs the garbage collector more than the tuples themselves)."""
        stream, offset = self._streams.get(aggregate_id, []), self._pruned.get(aggregate_id, 0)
        start = max(after - offset, 0)
        end = None if until is None else max(until - offset, 0)
        return enumerate(stream[start:end], offset + start + 1)

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
        for kept in (self._streams, self._snapshots, self._pruned, self._read):
            kept.pop(aggregate_id, None)

    async def prune(self, aggregate_id: str, before: int) -> int:
        point = await prune_point(self, aggregate_id, before)
        offset = self._pruned.get(aggregate_id, 0)
        if point - 1 > offset:  # events 1 .. point - 1 go
            self._streams[aggregate_id] = self._streams[aggregate_id][point - 1 - offset:]
            self._pruned[aggregate_id] = point - 1
            self._read.pop(aggregate_id, None)
        self._snapshots[aggregate_id] = [s for s in self._snapshots.get(aggregate_id, []) if s[0] >= point]
        return point

    async def close(self) -> None:
        pass
