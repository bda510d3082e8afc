"""Read-only access to a store: the adapters the runtime uses, behind proxies that only read.

:class:`StoreReader` opens the storage adapter and the event store through
``clp_core.resolve.resolve_storage`` and ``clp_core.resolve.resolve_event_store`` (so any
installed backend works) and wraps them in :class:`ReadOnlyStorage` and
:class:`ReadOnlyEventStore`, which have no writing method at all. For ``sqlite://`` URLs it
first looks at the file through a read-only SQLite connection: a missing file is an error
(the adapter would create it), and a table the runtime never created is not opened (the
adapter would create it too).
"""

from __future__ import annotations

import asyncio
import copy
import os
import sqlite3
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from clp_core.plugin_api import (
    ClpError,
    Event,
    HistoryError,
    apply_events,
    lineage,
    plain,
    replay,
    resolve_event_store,
    resolve_storage,
)

from ._live import INDEX_KEY, is_reserved, live_key

_MISSING = object()


class InspectError(Exception):
    """The inspector cannot open or read what it was pointed at."""


class ReadOnlyStorage:
    """A storage adapter with only its reading methods."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    async def load(self, key: str) -> Any:
        return await self._inner.load(key)

    async def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            await close()


class ReadOnlyEventStore:
    """An event store with only its reading methods."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    async def get_events(self, aggregate_id: str, after: int = 0, until: int | None = None) -> list[Event]:
        return await self._inner.get_events(aggregate_id, after=after, until=until)  # type: ignore[no-any-return]

    async def last_seq(self, aggregate_id: str) -> int:
        return await self._inner.last_seq(aggregate_id)  # type: ignore[no-any-return]

    async def load_snapshot(self, aggregate_id: str, at_or_before: int | None = None) -> Any:
        return await self._inner.load_snapshot(aggregate_id, at_or_before)

    async def aggregates(self) -> list[str]:
        return list(await self._inner.aggregates())

    async def close(self) -> None:
        await self._inner.close()


def redact(url: str | None) -> str | None:
    """A URL fit to show: the password and query values hidden."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}" if ":" in user else f"{name}@{host}"
    query = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query)) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _sqlite_tables(url: str) -> set[str] | None:
    """The tables of the SQLite file ``url`` names, read without writing; None for
    ``:memory:``. A missing file is an :class:`InspectError`."""
    from clp_core.plugin_api import sqlite_path

    path = sqlite_path(url)
    if path in ("", ":memory:"):
        return None
    if not os.path.isfile(path):
        raise InspectError(f"{path}: no such SQLite file (clp inspect opens stores read-only, it creates none)")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise InspectError(f"{path}: cannot read it as SQLite: {exc}") from None


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme


def _event_store_schemes() -> set[str]:
    from clp_core.plugin_api import registration_manager

    schemes: set[str] = set()
    for contributed in registration_manager().hook.register_event_stores():
        schemes.update(contributed or {})
    return schemes


@attrs.frozen
class Aggregate:
    key: str
    events: int  # the last sequence number (0: no events)
    live: bool  # a runtime published live data for it
    saga: bool  # a saga's progress stream


@attrs.frozen
class Change:
    op: str
    path: str
    value: Any
    before: Any
    after: Any


@attrs.frozen
class Step:
    """The state as of one event, and what that event changed."""

    seq: int
    last_seq: int
    state: dict[str, Any]
    event: Event | None
    changes: tuple[Change, ...]


class StoreReader:
    """Reads one store (storage URL, optional event store URL) for the inspector; never writes.

    ``event_store`` defaults to ``storage_url`` when an installed plugin has an event store
    for its scheme (``sqlite:///app.db`` holds both); pass ``event_store=False`` for none.
    ``keys`` are storage keys to list even without events (storage cannot list its keys).
    """

    def __init__(self, storage_url: str, event_store: str | bool | None = None, keys: Sequence[str] = ()) -> None:
        if not isinstance(storage_url, str) or not _scheme(storage_url):
            raise InspectError(f"storage URL {storage_url!r} has no scheme (sqlite:///app.db, file:///dir, ...)")
        self.storage_url = storage_url
        self.event_store_url: str | None
        if event_store is None:
            self.event_store_url = storage_url if _scheme(storage_url) in _event_store_schemes() else None
        elif event_store is False:
            self.event_store_url = None
        else:
            self.event_store_url = str(event_store)
        self.keys = tuple(keys)
        self.storage: ReadOnlyStorage | None = None
        self.events: ReadOnlyEventStore | None = None
        self.notes: list[str] = []
        self._opened = False
        self._lock = asyncio.Lock()

    async def open(self) -> StoreReader:
        """Open the adapters (once). Raises :class:`InspectError` if they cannot be."""
        async with self._lock:
            if self._opened:
                return self
            self.notes = []
            storage_ok, events_ok = True, self.event_store_url is not None
            if _scheme(self.storage_url) == "sqlite":
                tables = _sqlite_tables(self.storage_url)
                if tables is not None and "clp_state" not in tables:
                    storage_ok = False
                    self.notes.append("the storage file has no clp_state table: no stored state, no live runtimes")
            if self.event_store_url is not None and _scheme(self.event_store_url) == "sqlite":
                tables = _sqlite_tables(self.event_store_url)
                if tables is not None and "clp_events" not in tables:
                    events_ok = False
                    self.notes.append("the event store file has no clp_events table: no events yet")
            try:
                if storage_ok:
                    self.storage = ReadOnlyStorage(resolve_storage(self.storage_url, read_only=True))
                if events_ok:
                    self.events = ReadOnlyEventStore(resolve_event_store(self.event_store_url, read_only=True))
            except ClpError as exc:
                await self.close()
                raise InspectError(str(exc)) from None
            self._opened = True
            return self

    async def close(self) -> None:
        for resource in (self.storage, self.events):
            if resource is not None:
                await resource.close()
        self.storage = self.events = None
        self._opened = False

    # -- aggregates ----------------------------------------------------------------------
    async def aggregates(self) -> list[Aggregate]:
        """Every aggregate with events, every key a live runtime published, and ``keys``."""
        await self.open()
        with_events = await self.events.aggregates() if self.events else []
        live_keys = set(await self.live_keys())
        found: dict[str, Aggregate] = {}
        for key in with_events:
            if is_reserved(key):
                continue
            found[key] = Aggregate(key, await self.last_seq(key), key in live_keys, key.startswith("saga:"))
        for key in [*sorted(live_keys), *self.keys]:
            if key not in found and not is_reserved(key):
                found[key] = Aggregate(key, await self.last_seq(key), key in live_keys, key.startswith("saga:"))
        return sorted(found.values(), key=lambda a: (a.saga, a.key))

    async def live_keys(self) -> list[str]:
        index = await self._load(INDEX_KEY)
        keys = index.get("keys") if isinstance(index, dict) else None
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    async def exists(self, key: str) -> bool:
        if key in self.keys or await self.last_seq(key) > 0:
            return True
        return key in await self.live_keys() or await self.stored_state(key) is not None

    # -- events and states -----------------------------------------------------------------
    async def last_seq(self, key: str) -> int:
        await self.open()
        return await self.events.last_seq(key) if self.events else 0

    async def lineage(self, key: str) -> list[tuple[str, int]]:
        """A fork's ancestry, nearest first (``[]`` for an aggregate that is not a fork)."""
        await self.open()
        return await lineage(self.events, key) if self.events else []

    async def get_events(self, key: str, after: int = 0, until: int | None = None) -> list[Event]:
        await self.open()
        return await self.events.get_events(key, after=after, until=until) if self.events else []

    async def initial_state(self, key: str) -> tuple[dict[str, Any], str]:
        """The state before the first event, and where it came from (``"live runtime"`` or
        ``"unknown"``: the event store keeps diffs only; states then show what events wrote)."""
        live = await self.live(key)
        initial = live.get("initial_state") if live else None
        if isinstance(initial, dict):
            return plain(initial), "live runtime"
        return {}, "unknown"

    async def state_at(self, key: str, seq: int) -> dict[str, Any]:
        """The state as of event ``seq`` (0: the initial state): what ``Runtime.state_at``
        answers, from the store alone (latest snapshot at or before ``seq``, then the tail)."""
        last = await self.last_seq(key)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= last:
            raise HistoryError(f"no event {seq!r} in {key!r} (it has events 1 to {last})")
        base, _ = await self.initial_state(key)
        if self.events is None:
            return base
        return (await replay(self.events, key, until=seq, base=base)).state  # type: ignore[arg-type]

    async def step(self, key: str, seq: int) -> Step:
        """The state as of ``seq`` and, for each change event ``seq`` made, the value at its
        path before and after."""
        last = await self.last_seq(key)
        if seq == 0:
            return Step(0, last, await self.state_at(key, 0), None, ())
        before = await self.state_at(key, seq - 1)
        (event,) = await self.get_events(key, after=seq - 1, until=seq)
        after = apply_events(copy.deepcopy(before), [event])
        changes = tuple(
            Change(c.op, c.path, plain(c.value), _at(before, c.path), _at(after, c.path)) for c in event.diff
        )
        return Step(seq, last, after, event, changes)

    async def stored_state(self, key: str) -> Any:
        """The state a runtime without an event store saved under ``key`` (or None)."""
        document = await self._load(key)
        return document.get("state") if isinstance(document, dict) else None

    async def live(self, key: str) -> dict[str, Any] | None:
        """The document live runtimes of ``key`` publish (see :class:`LiveInspector`)."""
        document = await self._load(live_key(key))
        return document if isinstance(document, dict) else None

    async def _load(self, key: str) -> Any:
        await self.open()
        if self.storage is None:
            return None
        return await self.storage.load(key)


def _at(state: Mapping[str, Any], path: str) -> Any:
    """The value at dot path ``path``, or ``MISSING`` (unlike ``lookup``, which says None)."""
    node: Any = state
    for segment in path.split("."):
        if isinstance(node, Mapping) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return plain(node)


MISSING = _MISSING
