"""Sagas: ordered steps, each an atomic ``execute``; on failure, completed steps are
compensated in reverse order.

With an event store, progress is recorded in the saga's own stream
(``saga:<storage key>:<saga id>``), so a process that dies mid-saga can be picked up by
:meth:`Runtime.resume_sagas`: the step that was running is checked against the aggregate's
events (did it commit?), then the saga goes on, or is compensated.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from .errors import ClpError, ConfigError, ConflictError, UserCodeError
from .events import Event, EventStore, entry_from_event
from .log import LogEntry, entry_from_dict, entry_to_dict, now

logger = logging.getLogger("clp")


class SagaHost(Protocol):
    """What a saga needs of the runtime it runs on (:class:`clp_core.Runtime` has it)."""

    storage_key: str
    event_store: EventStore | None

    @property
    def last_seq(self) -> int: ...

    async def hydrate(self) -> None: ...

    async def execute(
        self, name: str, payload: Mapping[str, Any] | None = None, transition: str | None = None
    ) -> LogEntry: ...

    async def log_saga_event(self, event: Event) -> None: ...


COMPLETED, COMPENSATED, FAILED = "completed", "compensated", "failed"
_TERMINAL = {f"saga_{status}" for status in (COMPLETED, COMPENSATED, FAILED)}


@attrs.frozen
class SagaContext:
    """What a compensation receives."""

    saga_id: str
    step: str
    entry: LogEntry  # the step's commit
    results: Mapping[str, LogEntry]  # every completed step's commit so far
    runtime: SagaHost


@attrs.frozen
class Step:
    """One step: dispatch + commit ``intent`` with ``payload`` (a dict, or a function of the
    results of the steps before it), undone by ``compensate(context)`` (sync or async)."""

    intent: str
    payload: Mapping[str, Any] | Callable[[Mapping[str, LogEntry]], Mapping[str, Any]] = attrs.field(factory=dict)
    compensate: Callable[[SagaContext], Any] | None = None
    transition: str | None = None


@attrs.frozen
class Saga:
    """Ordered named steps (dict order)."""

    steps: Mapping[str, Step]
    name: str = "saga"

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("a Saga needs at least one step")
        for key, step in self.steps.items():
            if not isinstance(step, Step):
                raise ConfigError(f"saga step {key!r} must be a clp.Step, got {type(step).__name__}")


@attrs.frozen
class SagaResult:
    saga_id: str
    status: str  # "completed" | "compensated" | "failed"
    results: Mapping[str, LogEntry]
    failed_step: str | None = None
    error: BaseException | None = None
    compensation_error: BaseException | None = None


class _Progress:
    """The saga's stream: appends its progress events when the runtime has an event store."""

    def __init__(self, runtime: SagaHost, saga: Saga, saga_id: str, seq: int = 0) -> None:
        self.runtime, self.saga, self.saga_id, self.seq = runtime, saga, saga_id, seq
        self.stream = f"saga:{runtime.storage_key}:{saga_id}"

    async def record(self, kind: str, **data: Any) -> None:
        event = Event(aggregate_id=self.stream, seq=self.seq + 1, kind=kind,
                      timestamp=now(),
                      data={"saga": self.saga.name, "saga_id": self.saga_id,
                            "aggregate": self.runtime.storage_key, **data})
        store = self.runtime.event_store
        if store is not None:
            await store.append(event, self.seq)
        self.seq += 1
        await self.runtime.log_saga_event(event)


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run(runtime: SagaHost, saga: Saga, saga_id: str | None = None) -> SagaResult:
    progress = _Progress(runtime, saga, saga_id or uuid.uuid4().hex)
    await progress.record("saga_started", steps=list(saga.steps))
    return await _forward(progress, {}, list(saga.steps))


async def _forward(progress: _Progress, results: dict[str, LogEntry], remaining: list[str]) -> SagaResult:
    runtime, saga = progress.runtime, progress.saga
    for name in remaining:
        step = saga.steps[name]
        try:
            payload = dict(await _call(step.payload, dict(results)) if callable(step.payload) else step.payload)
            await progress.record("step_started", step=name, payload=payload, after_seq=runtime.last_seq)
            entry = await runtime.execute(step.intent, payload, step.transition)
        except ClpError as exc:
            await progress.record("step_failed", step=name, error=f"{type(exc).__name__}: {exc}")
            return await _compensate(progress, results, name, exc)
        except Exception as exc:  # a payload function that raised
            error = UserCodeError(f"payload of saga step {name} raised: {type(exc).__name__}: {exc}", where=name)
            error.__cause__ = exc
            await progress.record("step_failed", step=name, error=str(error))
            return await _compensate(progress, results, name, error)
        results[name] = entry
        await progress.record("step_completed", step=name, entry=entry_to_dict(entry))
    await progress.record("saga_completed")
    return SagaResult(progress.saga_id, COMPLETED, results)


async def _compensate(
    progress: _Progress, results: dict[str, LogEntry], failed: str | None, error: BaseException | None
) -> SagaResult:
    saga = progress.saga
    compensation_error: BaseException | None = None
    for name in reversed(list(results)):
        step = saga.steps[name]
        if step.compensate is None:
            continue
        context = SagaContext(progress.saga_id, name, results[name], dict(results), progress.runtime)
        # the claim: a second process resuming the same saga conflicts here instead of running it twice
        await progress.record("compensation_started", step=name)
        try:
            await _call(step.compensate, context)
        except Exception as exc:
            logger.exception("clp saga %s: compensation of %s failed", progress.saga_id, name)
            compensation_error = compensation_error or exc
            await progress.record("compensation_failed", step=name, error=f"{type(exc).__name__}: {exc}")
            continue
        await progress.record("step_compensated", step=name)
    status = FAILED if compensation_error is not None else COMPENSATED
    await progress.record(f"saga_{status}")
    return SagaResult(progress.saga_id, status, results, failed, error, compensation_error)


async def resume(
    runtime: SagaHost, sagas: Mapping[str, Saga], *, compensate: bool = False, stale_after: float = 0.0
) -> list[SagaResult]:
    """Finish every saga of this runtime's aggregate whose stream has no end: the step that
    was running counts as done if the aggregate committed it, then the saga goes on (or,
    with ``compensate=True``, is compensated).

    Each resume first appends a claim, so of two processes resuming at once one wins.
    ``stale_after`` (seconds) leaves alone a saga whose latest progress is younger than that:
    set it above your slowest step when other live processes may be running sagas of this
    aggregate. Steps and compensations are at least once after a crash in their middle.
    """
    store = runtime.event_store
    if store is None:
        raise ConfigError("resume_sagas() needs a runtime created with event_store=...")
    await runtime.hydrate()
    prefix = f"saga:{runtime.storage_key}:"
    finished: list[SagaResult] = []
    for stream in await store.aggregates():
        if not stream.startswith(prefix):
            continue
        events = await store.get_events(stream)
        if not events or events[-1].kind in _TERMINAL or events[0].data.get("aggregate") != runtime.storage_key:
            continue
        if stale_after > 0 and _age(events[-1]) < stale_after:
            continue  # somebody is working on it
        name = events[0].data.get("saga")
        saga = sagas.get(str(name))
        if saga is None:
            raise ConfigError(f"saga stream {stream!r} is a {name!r} saga; pass its definition to resume_sagas")
        progress = _Progress(runtime, saga, stream[len(prefix):], seq=events[-1].seq)
        try:
            await progress.record("resume_started")
            finished.append(await _resume_one(runtime, progress, events, compensate))
        except ConflictError:
            continue  # another process is resuming it: its appends won
    return finished


async def _resume_one(runtime: SagaHost, progress: _Progress, events: list[Event], compensate: bool) -> SagaResult:
    results: dict[str, LogEntry] = {}
    running: Event | None = None
    failed = False
    for event in events:
        if event.kind == "step_started":
            running = event
        elif event.kind == "step_completed":
            results[event.data["step"]] = entry_from_dict(event.data["entry"])
            running = None
        elif event.kind in ("step_failed", "step_compensated", "compensation_failed"):
            failed = True
            running = None
    if running is not None:
        step = running.data["step"]
        entry = await _committed_after(runtime, progress.saga.steps[step].intent, running)
        if entry is not None:
            results[step] = entry
            await progress.record("step_completed", step=step, entry=entry_to_dict(entry), recovered=True)
    steps = list(progress.saga.steps)
    if failed or compensate:
        compensated = {e.data["step"] for e in events if e.kind == "step_compensated"}
        return await _compensate(progress, {k: v for k, v in results.items() if k not in compensated}, None, None)
    return await _forward(progress, results, [s for s in steps if s not in results])


def _age(event: Event) -> float:
    try:
        stamp = _dt.datetime.fromisoformat(event.timestamp)
    except ValueError:
        return float("inf")
    return (_dt.datetime.now(_dt.UTC) - stamp).total_seconds()


async def _committed_after(runtime: SagaHost, intent: str, started: Event) -> LogEntry | None:
    """The aggregate's commit of the step recorded by ``started``, if it happened."""
    assert runtime.event_store is not None
    payload = dict(started.data.get("payload") or {})
    after = int(started.data.get("after_seq", 0))
    for event in await runtime.event_store.get_events(runtime.storage_key, after=after):
        if event.kind == "commit" and event.intent_name == intent and dict(event.payload) == payload:
            return entry_from_event(event)
    return None
