"""What a phase leaves for after the runtime's lock: log entries for ``on_log_entry``,
failures for ``on_error``, ``after_*`` hooks and subscribers.

Delivering after the lock lets hooks and subscribers call the runtime again.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ClpError, GuardDeniedError, StorageError, ValidationError
from ..log import AuditLog, Intent, LogEntry, Proposal
from ..plugins import HookRunner
from ..state import Path, State, StateView, parse_path, touches

if TYPE_CHECKING:
    from .commit import CommitResult

logger = logging.getLogger("clp")

Subscriber = Callable[[Mapping[str, Any]], Any]


class Outbox:
    """The audit log, and the deliveries owed once the lock is released, in log order."""

    def __init__(self, hooks: HookRunner, log: AuditLog) -> None:
        self.hooks, self.log = hooks, log
        self._append = log.append
        self._ships = hooks.has("on_log_entry")
        self.entries: list[LogEntry] = []  # logged, not yet given to on_log_entry
        self.errors: list[tuple[BaseException, str]] = []  # not yet given to on_error
        self._flushing = False

    def record(self, entry: LogEntry) -> None:
        self._append(entry)
        if self._ships:
            self.entries.append(entry)

    def entry(self, intent: Intent | None, phase: str, failures: Sequence[ValidationError], **fields: Any) -> LogEntry:
        """The log entry of ``intent`` at ``phase``, with ``fields``; a lenient validator's
        ``failures`` go on it (``validation_errors``) and, at the next flush, to ``on_error``."""
        return self.noted(LogEntry(
            intent_name=intent.name if intent else None,
            intent_payload=intent.payload if intent else None,
            phase=phase,
            intent_id=intent.id if intent else None,
            **fields,
        ), failures)

    def noted(self, entry: LogEntry, failures: Sequence[ValidationError]) -> LogEntry:
        """``entry`` with a lenient validator's ``failures`` (``validation_errors``), which go
        to ``on_error`` at the next flush too."""
        if not failures:
            return entry
        for exc in failures:
            self.defer_error(exc, entry.phase)
        return attrs.evolve(entry, validation_errors=tuple(e for exc in failures for e in exc.errors))

    def defer_error(self, error: BaseException, phase: str) -> None:
        """Report ``error`` to ``on_error`` at the next flush (it did not fail the phase)."""
        self.errors.append((error, phase))

    async def flush(self) -> None:
        """Ship what was recorded. One flush at a time ships everything, so entries arrive in
        log order even when a hook awaits; a call made from inside a hook leaves its entries
        to the flush under way."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while self.entries or self.errors:
                while self.entries:
                    await self.after("on_log_entry", entry=self.entries.pop(0))
                while self.errors:
                    await self.report(*self.errors.pop(0))
        finally:
            self._flushing = False

    async def report(self, error: BaseException, phase: str) -> None:
        if isinstance(error, StorageError):
            phase = "storage"
        if self.hooks.has("on_error"):
            await self.hooks.call_quietly("on_error", error=error, phase=phase)

    async def after(self, hook: str, **kwargs: Any) -> None:
        """Call an ``after_*``/``on_*`` hook; its failures go to ``on_error``."""
        if self.hooks.has(hook):
            for error in await self.hooks.call_quietly(hook, **kwargs):
                await self.report(error, hook)

    def owed(self, hook: str, **kwargs: Any) -> Awaitable[None] | None:
        """:meth:`after`, or ``None`` when no plugin implements ``hook`` (nothing to await)."""
        return self.after(hook, **kwargs) if self.hooks.has(hook) else None

    async def refused(
        self, result: CommitResult | None, error: ClpError, intent: Intent | None, staged: Proposal | None
    ) -> None:
        """After a failed commit: ``on_guard_deny`` for a denial (then the suggestion's fate),
        ``on_error`` for anything else."""
        if not isinstance(error, GuardDeniedError) or result is None or result.denied is None:
            await self.report(error, "commit")
            return
        errors = await self.hooks.call_quietly("on_guard_deny", guard=result.denied, context=result.context)
        if result.suggestion_error is not None:
            await self.report(result.suggestion_error, "suggest")
        if result.suggestion is not None and staged is not None and intent is not None:
            await self.after("after_propose", intent=intent, proposal=staged)
        for failure in errors:
            await self.report(failure, "on_guard_deny")


class Subscribers:
    """Callbacks on paths of the state, called after commits that touched them."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Path, Subscriber]] = {}  # token -> path and callback
        self._next = 0

    def add(self, path: str, callback: Subscriber) -> Callable[[], None]:
        watched = parse_path(path)
        token, self._next = self._next, self._next + 1
        self.callbacks[token] = (watched, callback)

        def unsubscribe() -> None:
            self.callbacks.pop(token, None)

        return unsubscribe

    async def notify(self, changed: Sequence[Path], state: State, outbox: Outbox) -> None:
        if not changed or not self.callbacks:
            return
        view = StateView(state)
        for watched, callback in list(self.callbacks.values()):
            if touches(changed, watched):
                try:
                    result = callback(view)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    logger.exception("clp subscriber of %s failed", ".".join(watched))
                    await outbox.report(exc, "subscriber")
