"""One lifecycle call: the lock held, state hydrated, then (after the lock) the outbox flushed,
the deliveries the call queued made, and a failure reported."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ..errors import ClpError
from .outbox import Outbox

Later = Callable[[], Awaitable[None]]


class Phase:
    """``async with Phase(...) as phase:`` around the body of a lifecycle call.

    ``phase.then(fn, ...)`` queues ``await fn(...)`` for after the lock; on a :class:`ClpError`
    the queued calls still run (what happened before the failure happened), then
    ``phase.on_failure(error)`` (default: ``on_error`` with the phase's name).
    """

    __slots__ = ("_flush", "_hydrate", "_lock", "_outbox", "later", "name", "on_failure")

    def __init__(
        self,
        name: str,
        lock: asyncio.Lock,
        hydrate: Callable[[], Awaitable[None]],
        flush: Callable[[], Awaitable[None]],
        outbox: Outbox,
    ) -> None:
        self.name = name
        self._lock, self._hydrate, self._flush, self._outbox = lock, hydrate, flush, outbox
        self.later: list[Later] = []
        self.on_failure: Callable[[ClpError], Awaitable[None]] | None = None

    def then(self, fn: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> None:
        self.later.append(functools.partial(fn, *args, **kwargs))

    async def __aenter__(self) -> Phase:
        await self._lock.acquire()
        try:
            await self._hydrate()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
        await self._flush()
        if exc is not None and not isinstance(exc, ClpError):
            return
        for later in self.later:
            await later()
        if isinstance(exc, ClpError):
            if self.on_failure is not None:
                await self.on_failure(exc)
            else:
                await self._outbox.report(exc, self.name)
