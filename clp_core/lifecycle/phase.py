"""One lifecycle call: the lock held, state hydrated, then (after the lock) the outbox flushed,
the deliveries the call queued made, and a failure reported."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ..errors import ClpError
from .outbox import Outbox

Later = tuple[Callable[..., Awaitable[None] | None], tuple[Any, ...], dict[str, Any]]


class Phase:
    """``async with Phase(...) as phase:`` around the body of a lifecycle call.

    ``phase.then(fn, ...)`` queues ``fn(...)`` for after the lock, awaited when it returns
    an awaitable (``None``: nothing to do); on a :class:`ClpError` the queued calls still
    run (what happened before the failure happened), then ``phase.on_failure(error)``
    (default: ``on_error`` with the phase's name). ``hydrate`` is ``None`` once there is
    nothing to load; ``flush`` too returns an awaitable, or ``None`` when there is nothing
    to ship.
    """

    __slots__ = ("_flush", "_hydrate", "_lock", "_outbox", "later", "name", "on_failure")

    def __init__(
        self,
        name: str,
        lock: asyncio.Lock,
        hydrate: Callable[[], Awaitable[None]] | None,
        flush: Callable[[], Awaitable[None] | None],
        outbox: Outbox,
    ) -> None:
        self.name = name
        self._lock, self._hydrate, self._flush, self._outbox = lock, hydrate, flush, outbox
        self.later: list[Later] = []
        self.on_failure: Callable[[ClpError], Awaitable[None]] | None = None

    def then(self, fn: Callable[..., Awaitable[None] | None], *args: Any, **kwargs: Any) -> None:
        self.later.append((fn, args, kwargs))

    async def __aenter__(self) -> Phase:
        await self._lock.acquire()
        if self._hydrate is not None:
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
        flushing = self._flush()
        if flushing is not None:
            await flushing
        if exc is None:
            if self.later:
                await self._run_later()
        elif isinstance(exc, ClpError):
            await self._run_later()
            if self.on_failure is not None:
                await self.on_failure(exc)
            else:
                await self._outbox.report(exc, self.name)

    async def _run_later(self) -> None:
        for fn, args, kwargs in self.later:
            pending = fn(*args, **kwargs)
            if pending is not None:
                await pending
