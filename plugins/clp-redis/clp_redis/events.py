"""``RedisEventStore``: CLP event streams in Redis Streams.

Keys, under ``prefix`` (``clp:events:`` by default):

* ``<prefix>stream:<aggregate>``: a stream per aggregate. Event ``seq`` has the entry id
  ``0-<seq>`` and one field, ``e``, the event in clp-core's JSON envelope.
* ``<prefix>snapshots:<aggregate>``: a sorted set of snapshots, scored by ``seq``.
* ``<prefix>aggregates``: the set of aggregate ids that have events.

An append is one ``EVALSHA`` of :data:`APPEND`, which checks the stream's last id against the
expected one and adds the entry and the aggregate id atomically. Resending an append whose
reply was lost finds its own entry and succeeds, so a commit is never recorded twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import redis.asyncio as aioredis

from clp_core.plugin_api import (
    ConfigError,
    ConflictError,
    CorruptStateError,
    Event,
    EventRow,
    Snapshot,
    event_to_json,
    events_from_rows,
    prune_point,
    refuse_writes,
    snapshot_from_json,
    snapshot_to_json,
)

from ._client import (
    DEFAULT_URL,
    TIMEOUT_OPTIONS,
    LoopGuard,
    Timeouts,
    call,
    close_client,
    decode_key,
    describe,
    encode_key,
    make_client,
    mode_read_only,
    split_url,
)

#: KEYS[1] the stream, KEYS[2] the aggregates set. ARGV: the expected last entry id ("" for an
#: empty stream), the new id, the event, the aggregate id, a random token naming this append.
#: Returns {1, new id} or {0, last id}. The token is stored with the entry (field ``t``) so a
#: resend of this very call is recognised; an equal event from another writer still conflicts.
APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = ''
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[1] then
  if last_id == ARGV[2] then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 't' and fields[i + 1] == ARGV[5] then return {1, last_id} end
    end
  end
  return {0, last_id}
end
local added = redis.pcall('XADD', KEYS[1], ARGV[2], 'e', ARGV[3], 't', ARGV[5])
if type(added) == 'table' and added.err then return {0, last_id} end  -- a trimmed stream's ids are used up
redis.call('SADD', KEYS[2], ARGV[4])
return {1, ARGV[2]}
"""

_ID = re.compile(rb"0-(\d+)")
PAGE = 1000  # entries per XRANGE call when reading a long stream


class RedisEventStore:
    """Event streams in Redis Streams, one stream per aggregate, with snapshots.

    ``url`` and the keyword arguments are as for :class:`clp_redis.RedisAdapter` (the URL's
    query may set ``prefix``). Not for Redis Cluster: an append touches the aggregate's stream
    and the shared aggregates set in one script.
    """

    name = "redis-events"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str | None = None,
        client: aioredis.Redis | None = None,
        read_only: bool = False,
        **client_options: Any,
    ) -> None:
        url, from_url = split_url(url, ("prefix", "mode"))
        timeouts = Timeouts.from_options({**from_url, **{k: client_options.pop(k) for k in TIMEOUT_OPTIONS
                                                          if k in client_options}})
        if prefix is None:
            prefix = from_url.get("prefix", "clp:events:")
        if not isinstance(prefix, str):
            raise ConfigError("prefix must be a string")
        self.prefix = prefix
        self._owns_client = client is None
        if client is None:
            client, timeouts = make_client(url, client_options, timeouts)
        else:
            timeouts = attrs.evolve(timeouts, own_retries=False)
        self.client: aioredis.Redis = client
        self.timeouts = timeouts
        self._where = describe(self.client)
        self._loop_guard = LoopGuard(self.client, None) if self._owns_client else None
        self._append = self.client.register_script(APPEND)
        self._aggregates_key = encode_key(prefix + "aggregates")
        self._closed = False
        self.read_only = read_only or mode_read_only(from_url.get("mode"))
        if self.read_only:  # reads create nothing anyway; writes are refused before sending
            refuse_writes(self, f"{self._where} (prefix {self.prefix!r})")

    def __repr__(self) -> str:
        return f"RedisEventStore({self._where!r}, prefix={self.prefix!r})"

    def stream_key(self, aggregate_id: str) -> bytes:
        return encode_key(f"{self.prefix}stream:{aggregate_id}")

    def snapshots_key(self, aggregate_id: str) -> bytes:
        return encode_key(f"{self.prefix}snapshots:{aggregate_id}")

    async def _call(self, factory: Callable[[], Awaitable[Any]], what: str, key: str) -> Any:
        if self._loop_guard is not None:
            self._loop_guard.check()
        return await call(factory, backend=self.name, where=self._where, what=what, key=key, timeouts=self.timeouts)

    def _seq_of(self, entry_id: bytes, aggregate_id: str) -> int:
        match = _ID.fullmatch(entry_id)
        if match is None:
            raise CorruptStateError(f"stream of {aggregate_id!r} has an entry id {entry_id!r} not written by CLP",
                                    backend=self.name)
        return int(match.group(1))

    # -- EventStore --------------------------------------------------------------------
    async def append(self, event: Event, expected_seq: int) -> None:
        aggregate = event.aggregate_id
        if event.seq != expected_seq + 1:
            raise ConflictError(f"event seq {event.seq} does not follow {expected_seq}", backend=self.name)
        raw = event_to_json(event).encode("utf-8")
        expected_id = f"0-{expected_seq}" if expected_seq > 0 else ""
        keys = [self.stream_key(aggregate), self._aggregates_key]
        args: list[Any] = [expected_id, f"0-{event.seq}", raw, encode_key(aggregate), os.urandom(16).hex()]
        ok, last_id = await self._call(lambda: self._append(keys=keys, args=args), "append", aggregate)
        if not ok:
            last = self._seq_of(last_id, aggregate) if last_id else 0
            raise ConflictError(f"stream {aggregate!r} is at {last}, not {expected_seq}", backend=self.name)

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        return events_from_rows(await self.get_event_rows(aggregate_id, after, until), aggregate_id, backend=self.name)

    async def get_event_rows(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[EventRow]:
        """``(seq, stored bytes)`` of the events with ``after < seq <= until`` (``XRANGE``, by pages),
        the seq read from each entry id."""
        key = self.stream_key(aggregate_id)
        start = max(after, 0) + 1
        end = "+" if until is None else f"0-{until}"
        if until is not None and until < start:
            return []
        rows: list[EventRow] = []
        while True:
            first = f"0-{start}"
            entries = await self._call(
                lambda first=first: self.client.xrange(key, first, end, count=PAGE),  # type: ignore[misc]
                "read of events", aggregate_id)
            for entry_id, fields in entries:
                seq = self._seq_of(entry_id, aggregate_id)
                raw = fields.get(b"e")
                if raw is None:
                    raise CorruptStateError(f"event {seq} of {aggregate_id!r} has no data", backend=self.name)
                rows.append((seq, raw))
            if len(entries) < PAGE:
                return rows
            start = rows[-1][0] + 1

    async def last_seq(self, aggregate_id: str) -> int:
        entries = await self._call(
            lambda: self.client.xrevrange(self.stream_key(aggregate_id), "+", "-", count=1),
            "read of last seq", aggregate_id)
        return self._seq_of(entries[0][0], aggregate_id) if entries else 0

    async def save_snapshot(self, aggregate_id: str, snapshot: Snapshot) -> None:
        key = self.snapshots_key(aggregate_id)
        raw = snapshot_to_json(snapshot).encode("utf-8")

        def save() -> Awaitable[Any]:
            pipe = self.client.pipeline(transaction=True)  # MULTI ... EXEC: one round trip
            pipe.zremrangebyscore(key, snapshot.seq, snapshot.seq)  # a newer snapshot of one seq replaces it
            pipe.zadd(key, {raw: snapshot.seq})
            return pipe.execute()

        await self._call(save, "snapshot save", aggregate_id)

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Snapshot | None:
        top = "+inf" if at_or_before is None else at_or_before
        found = await self._call(
            lambda: self.client.zrevrangebyscore(self.snapshots_key(aggregate_id), top, "-inf", start=0, num=1),
            "snapshot load", aggregate_id)
        return snapshot_from_json(found[0], backend=self.name) if found else None

    async def aggregates(self) -> list[str]:
        members = await self._call(lambda: self.client.smembers(self._aggregates_key), "read of aggregates",
                                   "aggregates")
        return sorted(decode_key(member) for member in members)

    async def delete(self, aggregate_id: str) -> None:
        """``DEL`` the stream and its snapshots and drop the id from the aggregates set, in one ``MULTI``."""
        def delete() -> Awaitable[Any]:  # a new MULTI for each attempt
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.stream_key(aggregate_id), self.snapshots_key(aggregate_id))
            pipe.srem(self._aggregates_key, encode_key(aggregate_id))
            return pipe.execute()

        await self._call(delete, "delete", aggregate_id)

    async def prune(self, aggregate_id: str, before: int) -> int:
        """``XTRIM MINID`` (exact) the stream and drop the older snapshots: the stream keeps its
        last entry, so its ids, and appends, go on."""
        point = await prune_point(self, aggregate_id, before)
        def prune() -> Awaitable[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.xtrim(self.stream_key(aggregate_id), minid=f"0-{point}", approximate=False)
            pipe.zremrangebyscore(self.snapshots_key(aggregate_id), "-inf", f"({point}")
            return pipe.execute()

        await self._call(prune, "prune", aggregate_id)
        return point

    async def close(self) -> None:
        """Close the connection pool (unless the client was passed in). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._loop_guard is not None:
            self._loop_guard.check()  # connections of a loop that is gone are forgotten, not closed from here
        if self._owns_client:
            await close_client(self.client)
