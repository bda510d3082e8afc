"""A bounded default executor for the concurrency cases of the storage suite: at most so many
calls at once, on daemon threads, so that an adapter parking every pool thread on a lock
shows its deadlock without keeping pytest from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


class _DaemonThreadPool(concurrent.futures.ThreadPoolExecutor):
    """At most ``max_workers`` calls at once, each on a daemon thread.

    Used as the loop's default executor in the concurrency tests: it bounds the threads as a
    real pool does (so an adapter that blocks pool threads while waiting for a lock shows its
    deadlock), yet a call stuck forever cannot keep pytest from exiting.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self._slots = threading.BoundedSemaphore(max_workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            with self._slots:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        threading.Thread(target=run, name="clp-suite-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # stuck daemon threads are abandoned, never joined


@contextlib.contextmanager
def bounded_default_executor(max_workers: int) -> Iterator[None]:
    """Run the block with the running loop's default executor limited to ``max_workers``."""
    loop = asyncio.get_running_loop()
    previous = getattr(loop, "_default_executor", None)
    loop.set_default_executor(_DaemonThreadPool(max_workers))
    try:
        yield
    finally:
        if previous is not None:
            loop.set_default_executor(previous)
        elif hasattr(loop, "_default_executor"):
            loop._default_executor = None
