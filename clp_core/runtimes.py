"""Many aggregates of one contract in one process: :class:`Runtimes`, a keyed, bounded home.

Each key is an aggregate (a runtime whose ``storage_key`` is the key). Runtimes are hydrated
on first use and kept in a least-recently-used set of at most ``max_live``; past that, the
least recently used runtime that nobody is using is closed (drained, ``on_close``) and
forgotten, and its next use hydrates it again from storage. Every runtime shares one storage
adapter and one event store (resolved once from their URLs: one connection pool, not one per
aggregate); closing a runtime leaves them open, :meth:`Runtimes.close` closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .contract import Contract, compiled
from .errors import ClpError, ConfigError
from .events import EventStore
from .lifecycle import Runtime
from .log import LogEntry
from .resolve import resolve_event_store, resolve_storage

logger = logging.getLogger("clp")

__all__ = ["Runtimes"]


class _Slot:
    """A live runtime and how many callers are using it right now."""

    __slots__ = ("runtime", "users")

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.users = 0


class Runtimes:
    """A keyed, bounded home for many aggregates of one contract.

    ::

        runtimes = clp.Runtimes(contract, storage="sqlite:///app.db", max_live=1000)
        await runtimes.execute("order:42", "pay", {"amount": 10})
        async with runtimes.get("order:42") as runtime:
            print(runtime.get_state())
        await runtimes.close()

    ``storage`` and ``event_store`` (objects or URLs) are resolved once and shared by every
    runtime. Without either, the runtimes share one :class:`~clp_core.MemoryAdapter`, so an
    evicted aggregate keeps its state. The other keyword options (``ai_provider``,
    ``validation``, ``config``, ``handlers``, ``log_limit``...) go to every
    :class:`~clp_core.Runtime`; ``storage_key`` is the key and cannot be given.

    ``max_live`` bounds the runtimes kept in memory; a runtime in use (inside ``get``, or
    running ``execute``) is never evicted, so while more than ``max_live`` are in use at
    once the set grows past it and shrinks back as they are released. Calls on one key
    share one runtime and queue on its lock; calls on different keys run concurrently.
    """

    def __init__(
        self,
        contract: Contract,
        *,
        storage: Any = None,
        event_store: Any = None,
        max_live: int = 1000,
        **runtime_options: Any,
    ) -> None:
        if isinstance(max_live, bool) or not isinstance(max_live, int) or max_live < 1:
            raise ConfigError("max_live must be a positive integer")
        if "storage_key" in runtime_options:
            raise ConfigError("Runtimes: the key of each call is the storage_key; do not pass storage_key=")
        self.contract = compiled(contract)
        self.max_live = max_live
        self.storage = resolve_storage(storage)  # None: one MemoryAdapter for every aggregate
        self.event_store: EventStore | None = None if event_store is None else resolve_event_store(event_store)
        self.options: dict[str, Any] = dict(runtime_options)
        self.owns_resources = True  # close() closes the shared storage and event store
        self.created = 0  # runtimes built (first use of a key, or its use after an eviction)
        self.evicted = 0  # runtimes closed to keep within max_live
        self._live: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._closing: dict[str, asyncio.Future[None]] = {}  # evicted, still draining
        self._closed = False

    # -- what is live ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def live_keys(self) -> list[str]:
        """The keys of the live runtimes, least recently used first (the next to be evicted)."""
        return list(self._live)

    # -- use -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def get(self, key: str) -> AsyncIterator[Runtime]:
        """``async with runtimes.get(key) as runtime:`` the hydrated runtime of ``key``,
        kept live (never evicted) until the block ends."""
        slot = await self._acquire(key)
        try:
            await slot.runtime.hydrate()
            yield slot.runtime
        finally:
            await self._release(key, slot)

    async def execute(
        self, key: str, name: str, payload: Mapping[str, Any] | None = None, transition: str | None = None,
        *, intent_id: str | None = None,
    ) -> LogEntry:
        """``runtime.execute(name, payload, transition, intent_id=...)`` on ``key``'s runtime."""
        slot = await self._acquire(key)
        try:
            return await slot.runtime.execute(name, payload, transition, intent_id=intent_id)
        finally:
            await self._release(key, slot)

    async def close(self) -> None:
        """Close every live runtime (drain, ``on_close``), then the shared storage and event
        store (unless ``owns_resources`` was set to False). Later calls raise :class:`ClpError`."""
        if self._closed:
            return
        self._closed = True
        while self._live:
            key, slot = self._live.popitem(last=False)
            self._start_closing(key, slot.runtime)
        while self._closing:
            await asyncio.gather(*self._closing.values(), return_exceptions=True)
        for resource in (self.storage, self.event_store) if self.owns_resources else ():
            close = getattr(resource, "close", None)
            if close is not None:
                await close()

    async def __aenter__(self) -> Runtimes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- inside ----------------------------------------------------------------------------
    def _new_runtime(self, key: str) -> Runtime:
        runtime = Runtime(self.contract, **self.options, storage=self.storage, event_store=self.event_store,
                          storage_key=key)
        runtime.owns_resources = False  # the shared adapter and event store outlive it
        self.created += 1
        return runtime

    async def _acquire(self, key: str) -> _Slot:
        while True:
            if self._closed:
                raise ClpError("Runtimes is closed")
            closing = self._closing.get(key)
            if closing is None:
                break
            await asyncio.shield(closing)  # its last writes land before the key is hydrated again
        slot = self._live.get(key)
        if slot is None:  # no await between the lookup and the insert: one runtime per key
            slot = self._live[key] = _Slot(self._new_runtime(key))
        else:
            self._live.move_to_end(key)
        slot.users += 1
        if len(self._live) > self.max_live:
            try:
                await self._shrink()
            except BaseException:  # cancelled while an evicted runtime closes: not in use after all
                slot.users -= 1
                raise
        return slot

    async def _release(self, key: str, slot: _Slot) -> None:
        slot.users -= 1
        if self._live.get(key) is slot:
            self._live.move_to_end(key)  # used until now: the most recent
        if slot.users == 0 and len(self._live) > self.max_live:
            await self._shrink()

    async def _shrink(self) -> None:
        """Evict the least recently used idle runtimes down to ``max_live`` (or as far as the
        runtimes in use allow), and wait for them to close."""
        excess = len(self._live) - self.max_live
        victims: list[str] = []
        for key, slot in self._live.items():  # oldest first; usually the first one is idle
            if len(victims) >= excess:
                break
            if slot.users == 0:
                victims.append(key)
        closing = []
        for key in victims:
            runtime = self._live.pop(key).runtime
            self.evicted += 1
            closing.append(self._start_closing(key, runtime))
        if closing:
            await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))

    def _start_closing(self, key: str, runtime: Runtime) -> asyncio.Future[None]:
        task = asyncio.ensure_future(self._close_runtime(key, runtime))
        self._closing[key] = task
        return task

    async def _close_runtime(self, key: str, runtime: Runtime) -> None:
        try:
            await runtime.close()
        except Exception:  # an evicted runtime that fails to drain must not fail another key's call
            logger.exception("clp: closing the runtime of %r failed", key)
        finally:
            self._closing.pop(key, None)
