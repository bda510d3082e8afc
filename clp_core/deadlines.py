"""Deadlines for many short operations on one timer per event loop.

``asyncio.timeout_at`` schedules a timer on every use: a handle pushed on the loop's heap,
cancelled on exit and popped later, about as much work as the client side of a small Redis
command. A storage client bounds every operation, so :func:`deadline_at` registers its
deadline with the loop's watch instead: one timer, set for the earliest deadline pending and
moved only when an earlier one comes. Operations that finish in time never touch it.

Expiry is ``asyncio.timeout``'s: the task is cancelled, and the block raises
:class:`TimeoutError` (a cancellation from elsewhere still propagates as such).
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Callable
from types import TracebackType

_ENTERED, _EXPIRING, _EXPIRED, _EXITED = "active", "expiring", "expired", "finished"


class Deadline:
    """``async with deadline_at(when) as d:``; see :func:`deadline_at`."""

    __slots__ = ("_cancelling", "_state", "_task", "_watch", "_when")

    def __init__(self, when: float) -> None:
        self._when = when
        self._state: str | None = None
        self._task: asyncio.Task[object] | None = None
        self._watch: _Watch | None = None
        self._cancelling = 0

    def when(self) -> float:
        return self._when

    def expired(self) -> bool:
        """Whether the deadline passed while the block ran (then it raised TimeoutError)."""
        return self._state in (_EXPIRING, _EXPIRED)

    def reschedule(self, when: float) -> None:
        """Move the deadline (only while the block runs)."""
        if self._state is not _ENTERED or self._watch is None:
            raise RuntimeError(f"cannot reschedule a deadline that is {self._state or 'not entered'}")
        self._when = when
        self._watch.moved(self)

    async def __aenter__(self) -> Deadline:
        if self._state is not None:
            raise RuntimeError("a deadline is entered once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is used inside a task")
        self._state, self._task, self._cancelling = _ENTERED, task, task.cancelling()
        self._watch = _watch_of(asyncio.get_running_loop())
        self._watch.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state is _ENTERED:
            self._state = _EXITED
            self._watch.discard(self)  # type: ignore[union-attr]
            return
        if self._state is _EXPIRING:
            self._state = _EXPIRED
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:  # type: ignore[union-attr]
                raise TimeoutError from exc

    def _expire(self) -> None:
        self._state = _EXPIRING
        self._task.cancel()  # type: ignore[union-attr]


def deadline_at(when: float) -> Deadline:
    """An async context manager cancelling its block at loop time ``when``, as
    ``asyncio.timeout_at(when)`` does, without a timer of its own."""
    return Deadline(when)


class _Watch:
    """The deadlines of one loop under way, and the one timer for the earliest."""

    __slots__ = ("_at", "_loop", "_pending", "_timer")

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self._loop = loop  # a weak reference: the loop keeps its watch (through the timer), not the reverse
        self._pending: dict[Deadline, None] = {}
        # the timer, weakly (it holds the loop, which may close with it pending)
        self._timer: weakref.ReferenceType[asyncio.TimerHandle] | None = None
        self._at = math.inf  # when the timer fires

    def add(self, deadline: Deadline) -> None:
        self._pending[deadline] = None
        if deadline._when < self._at:
            self._arm(deadline._when)

    def moved(self, deadline: Deadline) -> None:
        if deadline._when < self._at:  # a later deadline: the timer finds it not due and waits on
            self._arm(deadline._when)

    def discard(self, deadline: Deadline) -> None:
        # the timer stays: when it fires it finds nothing due, or waits for the next deadline
        self._pending.pop(deadline, None)

    def _arm(self, when: float) -> None:
        timer = None if self._timer is None else self._timer()
        if timer is not None:
            timer.cancel()
        loop = self._loop()
        assert loop is not None, "deadlines are only armed from their running loop"
        self._at = when
        self._timer = weakref.ref(loop.call_at(when, self._fire))

    def _fire(self) -> None:
        loop = self._loop()
        assert loop is not None, "a timer fires on its running loop"
        self._timer, self._at = None, math.inf
        now, earliest = loop.time(), math.inf
        for deadline in list(self._pending):
            if deadline._when <= now:
                del self._pending[deadline]
                deadline._expire()
            elif deadline._when < earliest:
                earliest = deadline._when
        if earliest < math.inf:
            self._arm(earliest)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()
_last: tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], _Watch] | None = None


def _watch_of(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    try:
        ref = weakref.ref(loop)
    except TypeError:  # a loop without weak references: a watch of its own for each deadline
        return _Watch(lambda: loop)
    with _watches_lock:
        watch = _watches.get(loop)
        if watch is None:
            watch = _watches[loop] = _Watch(ref)
    _last = (ref, watch)
    return watch
