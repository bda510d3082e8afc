"""Event streams in SQLite (tables ``clp_events`` and ``clp_snapshots``), on the connection
handling of :class:`SQLiteAdapter`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConflictError, StorageError
from ..event_codec import Row
from ..events import (
    Event,
    Snapshot,
    event_to_json,
    events_from_rows,
    prune_point,
    snapshot_from_json,
    snapshot_to_json,
)
from .base import refuse_writes
from .sqlite import SQLiteAdapter, in_transaction


class SQLiteEventStore:
    """Event streams in SQLite (tables ``clp_events`` and ``clp_snapshots``); appends are a
    primary-key-checked INSERT, so concurrent writers of one aggregate conflict cleanly.

    ``read_only=True`` (URL option ``?mode=ro``): as for :class:`SQLiteAdapter`, no file or
    table is created, a missing one is a :class:`StorageError`, and every write is refused."""

    name = "sqlite-events"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self._db = SQLiteAdapter(path, read_only=read_only)  # shares its connection handling and thread hop
        self._db.required_tables = ("clp_events", "clp_snapshots")
        self.path = path
        self.read_only = read_only
        self._ready = read_only
        if read_only:
            refuse_writes(self, path)

    async def _run(self, fn: Callable[[Any], Any]) -> Any:
        if not self._ready:
            await self._db.run(lambda c: c.executescript(_EVENT_SCHEMA))
            self._ready = True
        return await self._db.run(fn)

    async def append(self, event: Event, expected_seq: int) -> None:
        if event.seq != expected_seq + 1:
            raise ConflictError(f"event seq {event.seq} does not follow {expected_seq}", backend=self.name)
        raw = event_to_json(event)

        def insert(c: Any) -> bool:
            last = c.execute("SELECT COALESCE(MAX(seq), 0) FROM clp_events WHERE aggregate_id = ?",
                             (event.aggregate_id,)).fetchone()[0]
            if last != expected_seq:
                return False
            c.execute("INSERT INTO clp_events (aggregate_id, seq, data) VALUES (?, ?, ?)",
                      (event.aggregate_id, event.seq, raw))
            return True

        try:
            ok = await self._run(lambda c: in_transaction(c, insert))
        except StorageError as exc:
            if "UNIQUE" in str(exc):
                ok = False
            else:
                raise
        if not ok:
            raise ConflictError(f"stream {event.aggregate_id!r} moved past {expected_seq}", backend=self.name)

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        return events_from_rows(await self.get_event_rows(aggregate_id, after, until), aggregate_id, backend=self.name)

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Row]:
        """``(seq, data)`` of the events with ``after < seq <= until``, fetched in one go."""
        return await self._run(lambda c: c.execute(  # type: ignore[no-any-return]
            "SELECT seq, data FROM clp_events WHERE aggregate_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (aggregate_id, after, until if until is not None else 2**62)).fetchall())

    async def last_seq(self, aggregate_id: str) -> int:
        row = await self._run(lambda c: c.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM clp_events WHERE aggregate_id = ?", (aggregate_id,)).fetchone())
        return int(row[0])

    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        raw = snapshot_to_json(snapshot)
        await self._run(lambda c: c.execute(
            "INSERT OR REPLACE INTO clp_snapshots (aggregate_id, seq, data) VALUES (?, ?, ?)",
            (aggregate_id, snapshot.seq, raw)))

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        row = await self._run(lambda c: c.execute(
            "SELECT data FROM clp_snapshots WHERE aggregate_id = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (aggregate_id, at_or_before if at_or_before is not None else 2**62)).fetchone())
        return None if row is None else snapshot_from_json(row[0], backend=self.name)

    async def aggregates(self) -> list[str]:
        rows = await self._run(lambda c: c.execute(
            "SELECT DISTINCT aggregate_id FROM clp_events ORDER BY aggregate_id").fetchall())
        return [r[0] for r in rows]

    async def delete(self, aggregate_id: str) -> None:
        def remove(c: Any) -> bool:
            c.execute("DELETE FROM clp_events WHERE aggregate_id = ?", (aggregate_id,))
            c.execute("DELETE FROM clp_snapshots WHERE aggregate_id = ?", (aggregate_id,))
            return True

        await self._run(lambda c: in_transaction(c, remove))

    async def prune(self, aggregate_id: str, before: int) -> int:
        point = await prune_point(self, aggregate_id, before)

        def remove(c: Any) -> bool:
            c.execute("DELETE FROM clp_events WHERE aggregate_id = ? AND seq < ?", (aggregate_id, point))
            c.execute("DELETE FROM clp_snapshots WHERE aggregate_id = ? AND seq < ?", (aggregate_id, point))
            return True

        await self._run(lambda c: in_transaction(c, remove))
        return point

    async def close(self) -> None:
        await self._db.close()


_EVENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS clp_events (
    aggregate_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, seq)
);
CREATE TABLE IF NOT EXISTS clp_snapshots (
    aggregate_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, seq)
);
"""
