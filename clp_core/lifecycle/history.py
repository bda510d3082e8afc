"""The runtime's event-sourced calls: time travel, history, forks and sagas (a mixin of
:class:`~.runtime.Runtime`, kept apart so each module stays readable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .. import saga as saga_module
from ..errors import ConfigError
from ..events import Event, EventStore, lineage
from ..log import LogEntry
from ..persistence import EventPersistence, Persistence
from ..saga import Saga, SagaResult
from . import fork as fork_module

if TYPE_CHECKING:
    from .outbox import Outbox
    from .runtime import Runtime


class History:
    """Calls that need ``event_store=...``; mixed into :class:`~.runtime.Runtime`."""

    storage_key: str
    event_store: EventStore | None
    _persistence: Persistence
    _outbox: Outbox

    def _runtime(self) -> Runtime:
        return self  # type: ignore[return-value]  # History is only ever mixed into Runtime

    # -- event sourcing and sagas -------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The aggregate's last event sequence number as this runtime knows it (0 without an event store)."""
        return self._persistence.seq if isinstance(self._persistence, EventPersistence) else 0

    def _events(self, what: str) -> EventPersistence:
        if not isinstance(self._persistence, EventPersistence):
            raise ConfigError(f"{what}() needs a runtime created with event_store=...")
        return self._persistence

    async def state_at(self, seq: int) -> dict[str, Any]:
        """The state as of event ``seq`` (1 = after the first commit; 0 = the initial state)."""
        return await self._events("state_at").state_at(seq)

    async def history(self, after: int = 0, page: int = 1000) -> AsyncIterator[Event]:
        """The aggregate's events in order, read ``page`` at a time."""
        async for event in self._events("history").history(after, page):
            yield event

    async def fork(self, *, at: int, key: str) -> Runtime:
        """A new runtime on aggregate ``key`` whose history starts from this one's state at
        ``at`` (same contract and options; it shares this runtime's event store). See
        :mod:`clp_core.lifecycle.fork`."""
        return await fork_module.fork(self._runtime(), at, key)

    async def lineage(self) -> list[tuple[str, int]]:
        """This aggregate's fork ancestry, nearest first: ``[(parent key, seq), ..., (root key, seq)]``."""
        return await lineage(self._events("lineage").store, self.storage_key)

    async def run_saga(self, saga: Saga, saga_id: str | None = None) -> SagaResult:
        """Run ``saga``'s steps in order, each as one ``execute``; if one fails, compensate
        the completed ones in reverse. See :mod:`clp_core.saga`."""
        return await saga_module.run(self._runtime(), saga, saga_id)

    async def resume_sagas(
        self, sagas: Mapping[str, Saga], *, compensate: bool = False, stale_after: float = 0.0
    ) -> list[SagaResult]:
        """Finish the sagas a dead process left running (definitions by saga name); see
        :func:`clp_core.saga.resume`."""
        return await saga_module.resume(self._runtime(), sagas, compensate=compensate, stale_after=stale_after)

    async def log_saga_event(self, event: Event) -> None:
        """Log a saga's progress and call ``on_saga_event`` (used by :mod:`clp_core.saga`)."""
        detail = {"saga": event.data.get("saga"), "saga_id": event.data.get("saga_id"),
                  "kind": event.kind, "step": event.data.get("step")}
        self._outbox.record(LogEntry(intent_name=None, intent_payload=None, phase="saga",
                                     error=event.data.get("error"), detail=detail))
        await self._outbox.flush()
        await self._outbox.after("on_saga_event", event=event)
