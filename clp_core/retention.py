"""Retention: forget what is no longer needed, safely. Plain async functions that report what
went (or, with ``dry_run=True``, what would go); ``clp prune`` and ``clp delete`` call them.

* :func:`prune` drops an aggregate's events and snapshots older than its latest snapshot at or
  before a seq, so replay still works from that snapshot on (``state_at`` of an older seq is a
  :class:`~clp_core.errors.HistoryError`).
* :func:`delete` removes an aggregate (events and snapshots) from an event store, or a key from
  a storage adapter.
* :func:`prune_sagas` deletes the progress streams of sagas that finished a while ago.

Event stores take part through the optional :class:`~clp_core.events.RetainingEventStore`
methods (``delete``, ``prune``); storage adapters through ``delete`` and, for listing,
``keys(prefix)`` (:class:`ListableStorage`).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Protocol, runtime_checkable

import attrs

from .errors import ConfigError, CorruptStateError
from .events import EventStore, RetainingEventStore, lineage, prune_point

__all__ = ["ListableStorage", "Removal", "delete", "lineage", "prune", "prune_sagas"]

SAGA_END = frozenset({"saga_completed", "saga_compensated", "saga_failed"})


@runtime_checkable
class ListableStorage(Protocol):
    """A storage adapter that can list its keys (memory, files, SQLite, Redis, PostgreSQL, MongoDB)."""

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted."""


@attrs.frozen
class Removal:
    """What one retention call removed (or, with ``dry_run``, would remove)."""

    key: str
    backend: str
    kind: str  # "events" (an event store's aggregate) or "document" (a storage adapter's key)
    events: int = 0  # events removed
    documents: int = 0  # storage documents removed (0 or 1)
    kept_from: int | None = None  # prune: the snapshot seq replay starts from now
    dry_run: bool = False

    @property
    def removed_anything(self) -> bool:
        return bool(self.events or self.documents)


def _retaining(store: Any, what: str) -> RetainingEventStore:
    if not isinstance(store, RetainingEventStore):
        raise ConfigError(f"{what} needs an event store with delete/prune; {type(store).__name__} has none")
    return store


async def _count(store: EventStore, key: str, below: int | None = None) -> int:
    """How many of ``key``'s events have ``seq < below`` (all without ``below``), read a page at a time."""
    last = await store.last_seq(key)
    end = last if below is None else min(last, below - 1)
    count, after = 0, 0
    while after < end:
        until = min(after + 1000, end)
        count += len(await store.get_events(key, after=after, until=until))
        after = until
    return count


async def prune(store: EventStore, key: str, before: int, *, dry_run: bool = False) -> Removal:
    """Drop ``key``'s events and snapshots older than its latest snapshot at or before
    ``before``. Raises :class:`HistoryError` when there is no such snapshot (pruning would make
    replay impossible) or ``before`` is not one of the stream's seqs."""
    retaining = _retaining(store, "prune")
    point = await prune_point(store, key, before)
    events = await _count(store, key, point)
    if not dry_run:
        await retaining.prune(key, before)
    return Removal(key, store.name, "events", events=events, kept_from=point, dry_run=dry_run)


async def delete(target: Any, key: str, *, dry_run: bool = False) -> Removal:
    """Remove ``key``: an aggregate's events and snapshots from an event store, or a document
    from a storage adapter. A missing key removes nothing (and is not an error)."""
    if isinstance(target, EventStore):
        retaining = _retaining(target, "delete")
        events = await _count(target, key)
        if not dry_run:
            await retaining.delete(key)
        return Removal(key, target.name, "events", events=events, dry_run=dry_run)
    if not callable(getattr(target, "delete", None)) or not callable(getattr(target, "load", None)):
        raise ConfigError(f"delete() needs an event store or a storage adapter, not {type(target).__name__}")
    try:
        present = await target.load(key) is not None
    except CorruptStateError:
        present = True  # unreadable, but there
    if present and not dry_run:
        await target.delete(key)
    return Removal(key, getattr(target, "name", type(target).__name__), "document", documents=int(present),
                   dry_run=dry_run)


async def prune_sagas(
    store: EventStore, *, older_than: float, key: str | None = None, dry_run: bool = False
) -> list[Removal]:
    """Delete the progress streams (``saga:<key>:<id>``) of sagas that finished (completed,
    compensated or failed) at least ``older_than`` seconds ago; of aggregate ``key`` only, or
    of all. Unfinished sagas are kept: :meth:`Runtime.resume_sagas` needs them."""
    retaining = _retaining(store, "prune_sagas")
    if isinstance(older_than, bool) or not isinstance(older_than, int | float) or older_than < 0:
        raise ConfigError("older_than must be a number of seconds >= 0")
    prefix = "saga:" if key is None else f"saga:{key}:"
    now = _dt.datetime.now(_dt.UTC)
    removed = []
    for stream in await store.aggregates():
        if not stream.startswith(prefix):
            continue
        last = await store.last_seq(stream)
        (end,) = await store.get_events(stream, after=last - 1, until=last) or (None,)
        if end is None or end.kind not in SAGA_END:
            continue
        try:
            age = (now - _dt.datetime.fromisoformat(end.timestamp)).total_seconds()
        except ValueError:
            continue
        if age < older_than:
            continue
        if not dry_run:
            await retaining.delete(stream)
        removed.append(Removal(stream, store.name, "events", events=last, dry_run=dry_run))
    return removed
