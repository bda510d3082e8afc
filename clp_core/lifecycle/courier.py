"""Delivery of emitted messages after their commit: to the runtime's handler for the topic and
to plugins implementing ``deliver_message``, retried with jittered exponential back-off; at
least once, since a crash between delivery and its record means delivering again (receivers
de-duplicate by ``Message.id``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import Any

from ..errors import ConfigError, DeliveryError
from ..log import delivery_entry
from ..messages import Message
from ..plugins import HookRunner
from .outbox import Outbox

logger = logging.getLogger("clp")

Handler = Callable[[Message], Any]


class _Resumed(Coroutine[Any, Any, None]):
    """The rest of a coroutine started by hand, for a task to run: the task's first step is
    handed what the coroutine waits on (what it yielded), later steps go to the coroutine.
    What the task throws in (a cancellation, even before its first step) goes to the coroutine."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coroutine, self._waiting, self._first = coroutine, waiting, True

    def send(self, value: Any) -> Any:
        if self._first:
            self._first = False
            return self._waiting
        return self._coroutine.send(value)

    def throw(self, *exc: Any) -> Any:
        self._first = False
        return self._coroutine.throw(*exc)

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("run by a task, not awaited")  # pragma: no cover


class Courier:
    """Runs one delivery task per message; :meth:`drain` waits for them.

    ``delivered(ids)`` and ``failed(id, error, attempts)`` tell the persistence what to
    write with the next save.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        hooks: HookRunner,
        outbox: Outbox,
        *,
        delivered: Callable[[Iterable[str]], None],
        failed: Callable[[str, str, int], None],
        attempts: int = 5,
        backoff: float = 0.05,
    ) -> None:
        for topic, handler in handlers.items():
            if not isinstance(topic, str) or not callable(handler):
                raise ConfigError("handlers must map topic names to callables (sync or async)")
        if attempts < 1:
            raise ConfigError("delivery_attempts must be at least 1")
        self.handlers = dict(handlers)
        self._hooks = hooks
        self._outbox, self._delivered, self._failed = outbox, delivered, failed
        self.attempts, self.backoff = attempts, backoff
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: set[str] = set()  # ids being delivered now, never twice at once

    def send(self, messages: Iterable[Message], *, eager: bool = False) -> None:
        """Start delivering ``messages``. ``eager``: run each delivery now, up to the first
        point where it waits, as :func:`asyncio.eager_task_factory` does (a handler that never
        waits costs no task and no turn of the event loop); only where the caller may run a
        handler, not holding the runtime's lock."""
        for message in messages:
            if message.id in self._sending:
                continue
            self._sending.add(message.id)
            delivery: Coroutine[Any, Any, None] = self._deliver(message)
            if eager:
                try:
                    waiting = delivery.send(None)
                except StopIteration:
                    continue
                delivery = _Resumed(delivery, waiting)
            task = asyncio.get_running_loop().create_task(delivery)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every delivery under way succeeded or gave up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, message: Message) -> None:
        error: BaseException | None = None
        attempt = 0
        try:
            handler = self.handlers.get(message.topic)
            plugins = self._hooks.has("deliver_message")
            if handler is None and not plugins:
                error = DeliveryError(f"no handler for topic {message.topic!r} (create_runtime(handlers=...))")
                attempt = 1
            else:
                for attempt in range(1, self.attempts + 1):
                    try:
                        if handler is not None:
                            result = handler(message)
                            if inspect.isawaitable(result):
                                await result
                        if plugins:
                            await self._hooks.call("deliver_message", message=message)
                        error = None
                        break
                    except Exception as exc:
                        error = exc
                        if attempt < self.attempts:
                            await asyncio.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))
            detail = {"message_id": message.id, "topic": message.topic, "attempts": attempt}
            if error is None:
                self._delivered([message.id])
                self._outbox.record(delivery_entry(message.intent_id, detail, None))
            else:
                problem = f"delivery of {message.topic} message {message.id} failed: {type(error).__name__}: {error}"
                logger.warning("clp %s", problem)
                self._failed(message.id, f"{type(error).__name__}: {error}", attempt)
                self._outbox.record(delivery_entry(message.intent_id, detail, problem))
                failure = error if isinstance(error, DeliveryError) else DeliveryError(problem)
                failure.__cause__ = error if failure is not error else None
                self._outbox.defer_error(failure, "deliver")
            await self._outbox.flush()
        finally:
            self._sending.discard(message.id)
