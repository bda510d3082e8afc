"""PostgresEventStore: event streams and snapshots in jsonb, appends guarded in one round trip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from clp_core.plugin_api import (
    ConflictError,
    Event,
    EventRow,
    Snapshot,
    event_to_json,
    events_from_rows,
    prune_point,
    snapshot_from_json,
    snapshot_to_json,
)

from ._common import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DSN,
    DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_TOAST_COMPRESSION,
    TableClient,
    from_jsonb,
    qualified,
    to_jsonb,
)
from .schema import create_tables, event_tables_ddl, snapshots_table_name

_NO_LIMIT = 2**62


class PostgresEventStore(TableClient):
    """An :class:`clp_core.events.EventStore` on PostgreSQL.

    Events are rows of ``schema.table`` (``aggregate_id, seq, data jsonb``, primary key
    ``(aggregate_id, seq)``); snapshots rows of ``schema.<table>_snapshots``. An append is
    one ``INSERT ... SELECT ... WHERE <last seq> = expected``: a stream that moved on, or a
    concurrent writer of the same slot (unique violation), is a :class:`ConflictError`.
    """

    name = "postgresql-events"

    def __init__(
        self,
        dsn: str = DEFAULT_DSN,
        *,
        table: str = "clp_events",
        schema: str = "public",
        pool: Any = None,
        min_size: int = 1,
        max_size: int = 10,
        create_table: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        pool_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
        toast_compression: str = DEFAULT_TOAST_COMPRESSION,
    ) -> None:
        super().__init__(dsn, table=table, schema=schema, pool=pool, min_size=min_size, max_size=max_size,
                         create_table=create_table, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, pool_options=pool_options,
                         operation_timeout=operation_timeout, read_only=read_only,
                         toast_compression=toast_compression)
        self.snapshots_table = snapshots_table_name(self.table)
        events, snapshots = qualified(self.schema, self.table), qualified(self.schema, self.snapshots_table)
        self._append = (
            f"INSERT INTO {events} (aggregate_id, seq, data) SELECT $1, $2, $3::text::jsonb "
            f"WHERE (SELECT coalesce(max(seq), 0) FROM {events} WHERE aggregate_id = $1) = $4 RETURNING seq"
        )
        self._events = (
            f"SELECT seq, data::text FROM {events} WHERE aggregate_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
        )
        self._last = f"SELECT coalesce(max(seq), 0) FROM {events} WHERE aggregate_id = $1"
        self._save_snapshot = (
            f"INSERT INTO {snapshots} AS s (aggregate_id, seq, data) VALUES ($1, $2, $3::text::jsonb) "
            "ON CONFLICT (aggregate_id, seq) DO UPDATE SET data = excluded.data, created_at = now()"
        )
        self._load_snapshot = (
            f"SELECT data::text FROM {snapshots} WHERE aggregate_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1"
        )
        self._delete_events = f"DELETE FROM {events} WHERE aggregate_id = $1 AND seq < $2"
        self._delete_snapshots = f"DELETE FROM {snapshots} WHERE aggregate_id = $1 AND seq < $2"
        # distinct aggregate ids by walking the primary key index (a loose index scan),
        # not by reading every event
        self._aggregates = (
            f"WITH RECURSIVE ids AS ("
            f" (SELECT aggregate_id FROM {events} ORDER BY aggregate_id LIMIT 1)"
            f" UNION ALL"
            f" SELECT (SELECT e.aggregate_id FROM {events} e WHERE e.aggregate_id > ids.aggregate_id"
            f" ORDER BY e.aggregate_id LIMIT 1) FROM ids WHERE ids.aggregate_id IS NOT NULL"
            f") SELECT aggregate_id FROM ids WHERE aggregate_id IS NOT NULL"
        )

    async def _create(self, connection: Any) -> None:
        await create_tables(connection, self.schema, [self.table, self.snapshots_table],
                            event_tables_ddl(self.schema, self.table, self.snapshots_table,
                                             self.toast_compression))

    async def append(self, event: Event, expected_seq: int) -> None:
        if event.seq != expected_seq + 1:
            raise ConflictError(f"event seq {event.seq} does not follow {expected_seq}", backend=self.name)
        data = to_jsonb(event_to_json(event))
        moved = f"stream {event.aggregate_id!r} moved past {expected_seq}"

        async def insert(connection: Any) -> Any:
            try:
                return await connection.fetchval(self._append, event.aggregate_id, event.seq, data, expected_seq)
            except asyncpg.UniqueViolationError:
                raise ConflictError(moved, backend=self.name) from None

        if await self._run(f"append to {event.aggregate_id!r}", insert) is None:
            raise ConflictError(moved, backend=self.name)

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        records = await self._fetch_events(aggregate_id, after, until)
        return events_from_rows(((r[0], from_jsonb(r[1])) for r in records), aggregate_id, backend=self.name)

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[EventRow]:
        """``(seq, envelope text)`` of the events with ``after < seq <= until``, in one query."""
        return [(r[0], from_jsonb(r[1])) for r in await self._fetch_events(aggregate_id, after, until)]

    async def _fetch_events(self, aggregate_id: str, after: int, until: int | None) -> Any:
        return await self._run(f"read of {aggregate_id!r}", lambda c: c.fetch(
            self._events, aggregate_id, after, _NO_LIMIT if until is None else until))

    async def last_seq(self, aggregate_id: str) -> int:
        return int(await self._run(f"read of {aggregate_id!r}", lambda c: c.fetchval(self._last, aggregate_id)))

    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        data = to_jsonb(snapshot_to_json(snapshot))
        await self._run(f"snapshot of {aggregate_id!r}", lambda c: c.execute(
            self._save_snapshot, aggregate_id, snapshot.seq, data))

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        raw = await self._run(f"snapshot read of {aggregate_id!r}", lambda c: c.fetchval(
            self._load_snapshot, aggregate_id, _NO_LIMIT if at_or_before is None else at_or_before))
        return None if raw is None else snapshot_from_json(from_jsonb(raw), backend=self.name)

    async def aggregates(self) -> list[str]:
        rows = await self._run("list of aggregates", lambda c: c.fetch(self._aggregates))
        return sorted(row[0] for row in rows)

    async def delete(self, aggregate_id: str) -> None:
        await self._forget(aggregate_id, _NO_LIMIT, "delete")

    async def prune(self, aggregate_id: str, before: int) -> int:
        point = await prune_point(self, aggregate_id, before)
        await self._forget(aggregate_id, point, "prune")
        return point

    async def _forget(self, aggregate_id: str, below: int, what: str) -> None:
        """Delete the events and snapshots with ``seq < below``, in one transaction."""

        async def remove(connection: Any) -> None:
            async with connection.transaction():
                await connection.execute(self._delete_events, aggregate_id, below)
                await connection.execute(self._delete_snapshots, aggregate_id, below)

        await self._run(f"{what} of {aggregate_id!r}", remove)
