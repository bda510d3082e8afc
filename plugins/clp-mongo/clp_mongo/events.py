"""``MongoEventStore``: CLP event streams and snapshots in two MongoDB collections."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from clp_core.plugin_api import (
    ConflictError,
    CorruptStateError,
    Event,
    EventRow,
    Snapshot,
    event_to_json,
    events_from_rows,
    prune_point,
    snapshot_from_json,
    snapshot_to_json,
)

from ._common import DEFAULT_URL, MongoBase, is_duplicate_key

_KEYS = [("aggregate_id", ASCENDING), ("seq", ASCENDING)]


def _document_id(aggregate_id: str, seq: int) -> str:
    # unambiguous: seq is the decimal digits after the last ":" whatever the aggregate id holds
    return f"{aggregate_id}:{seq}"


class MongoEventStore(MongoBase):
    """Event store on MongoDB (PyMongo's async API).

    Each event is a document ``{_id: "<aggregate>:<seq>", aggregate_id, seq, kind, data}`` in
    ``database.collection``, where ``data`` is :func:`clp_core.events.event_to_json`; snapshots
    are ``{_id, aggregate_id, seq, data}`` in ``snapshots_collection``. Both collections get a
    unique index on ``(aggregate_id, seq)``, created on the first write through this object.

    ``append`` reads the stream's last sequence number and refuses (``ConflictError``) unless
    it is ``expected_seq``; then it inserts the event, and a duplicate key (another writer
    took that slot in between) is a ``ConflictError`` too. Events are never updated, and only
    ``prune`` (which keeps the last event) or ``delete`` (not while writers append) removes
    them, so that check-then-insert cannot leave a gap or a second event in a slot.

    ``database``, ``client`` and extra keyword arguments work as for
    :class:`clp_mongo.MongoAdapter`.
    """

    name = "mongodb-events"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        database: str | None = None,
        collection: str = "clp_events",
        *,
        snapshots_collection: str = "clp_snapshots",
        client: Any = None,
        read_only: bool = False,
        **client_options: Any,
    ) -> None:
        super().__init__(url, database, client, client_options, read_only)
        self.collection_name = collection
        self.snapshots_collection_name = snapshots_collection
        self._indexed = False

    def get_collection(self) -> Any:
        """The driver's collection of events."""
        return self._collection(self.collection_name)

    def get_snapshots_collection(self) -> Any:
        """The driver's collection of snapshots."""
        return self._collection(self.snapshots_collection_name)

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        with self._errors("creating the unique (aggregate_id, seq) indexes"):
            await self.get_collection().create_index(_KEYS, unique=True)
            await self.get_snapshots_collection().create_index(_KEYS, unique=True)
        self._indexed = True

    # -- events --------------------------------------------------------------------------
    async def append(self, event: Event, expected_seq: int) -> None:
        aggregate = event.aggregate_id
        if event.seq != expected_seq + 1:
            raise ConflictError(f"event seq {event.seq} does not follow {expected_seq}", backend=self.name)
        raw = event_to_json(event)
        await self._ensure_indexes()
        last = await self.last_seq(aggregate)
        if last != expected_seq:
            raise ConflictError(f"stream {aggregate!r} is at {last}, not {expected_seq}", backend=self.name)
        with self._errors(f"appending event {event.seq} of {aggregate!r}"):
            try:
                await self.get_collection().insert_one({
                    "_id": _document_id(aggregate, event.seq), "aggregate_id": aggregate, "seq": event.seq,
                    "kind": event.kind, "data": raw})
            except Exception as exc:
                if not is_duplicate_key(exc):
                    raise
                raise ConflictError(f"stream {aggregate!r} moved past {expected_seq}", backend=self.name) from None

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        return events_from_rows(await self.get_event_rows(aggregate_id, after, until), aggregate_id, backend=self.name)

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[EventRow]:
        """``(seq, data)`` of the events with ``after < seq <= until``, in one query (only those
        two fields fetched)."""
        seq: dict[str, int] = {"$gt": after}
        if until is not None:
            seq["$lte"] = until
        with self._errors(f"reading events of {aggregate_id!r}"):
            cursor = self.get_collection().find({"aggregate_id": aggregate_id, "seq": seq},
                                                projection={"seq": 1, "data": 1}).sort("seq", ASCENDING)
            found = [document async for document in cursor]
        return [self._row(document) for document in found]

    def _row(self, document: dict[str, Any]) -> EventRow:
        data = document.get("data")
        if not isinstance(data, str | bytes):
            raise CorruptStateError(f"stored event {document.get('_id')!r} has no string 'data' field",
                                    backend=self.name)
        return document.get("seq"), data  # type: ignore[return-value]  # checked against the event's own seq

    async def last_seq(self, aggregate_id: str) -> int:
        with self._errors(f"reading the last sequence number of {aggregate_id!r}"):
            found = await self.get_collection().find_one(
                {"aggregate_id": aggregate_id}, projection={"seq": 1, "_id": 0}, sort=[("seq", DESCENDING)])
        if found is None:
            return 0
        seq = found.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise CorruptStateError(f"stream {aggregate_id!r} has an event with seq {seq!r}", backend=self.name)
        return seq

    async def aggregates(self) -> list[str]:
        with self._errors("listing aggregates"):
            found = await self.get_collection().distinct("aggregate_id")
        return sorted(found)

    async def delete(self, aggregate_id: str) -> None:
        with self._errors(f"deleting {aggregate_id!r}"):
            await self.get_collection().delete_many({"aggregate_id": aggregate_id})
            await self.get_snapshots_collection().delete_many({"aggregate_id": aggregate_id})

    async def prune(self, aggregate_id: str, before: int) -> int:
        point = await prune_point(self, aggregate_id, before)
        older = {"aggregate_id": aggregate_id, "seq": {"$lt": point}}
        with self._errors(f"pruning {aggregate_id!r} before {point}"):
            await self.get_collection().delete_many(older)
            await self.get_snapshots_collection().delete_many(older)
        return point

    # -- snapshots -----------------------------------------------------------------------
    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        raw = snapshot_to_json(snapshot)
        await self._ensure_indexes()
        snapshots = self.get_snapshots_collection()
        with self._errors(f"saving snapshot {snapshot.seq} of {aggregate_id!r}"):
            for attempt in range(2):
                try:
                    await snapshots.replace_one(
                        {"_id": _document_id(aggregate_id, snapshot.seq)},
                        {"aggregate_id": aggregate_id, "seq": snapshot.seq, "data": raw},
                        upsert=True)
                    return
                except Exception as exc:
                    if attempt or not is_duplicate_key(exc):  # two upserts raced: the retry replaces
                        raise

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        query: dict[str, Any] = {"aggregate_id": aggregate_id}
        if at_or_before is not None:
            query["seq"] = {"$lte": at_or_before}
        with self._errors(f"loading a snapshot of {aggregate_id!r}"):
            found = await self.get_snapshots_collection().find_one(query, sort=[("seq", DESCENDING)])
        if found is None:
            return None
        data = found.get("data")
        if not isinstance(data, str | bytes):
            raise CorruptStateError(f"stored snapshot {found.get('_id')!r} has no string 'data' field",
                                    backend=self.name)
        snapshot = snapshot_from_json(data, backend=self.name)
        if snapshot.seq != found.get("seq"):
            raise CorruptStateError(f"stored snapshot {found.get('_id')!r} holds seq {snapshot.seq}",
                                    backend=self.name)
        return snapshot
