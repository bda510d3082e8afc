"""Sagas: ordered steps, each an atomic ``execute``; on failure, completed steps are
compensated in reverse order of completion. A step may be a :class:`Parallel` group, whose
members run concurrently (each one ``execute``; their payload functions and commits overlap,
the commits themselves serialize on the runtime's lock).

With an event store, progress is recorded in the saga's own stream
(``saga:<storage key>:<saga id>``), so a process that dies mid-saga can be picked up by
:meth:`Runtime.resume_sagas`: the step that was running is checked against the aggregate's
events (did it commit? each ``step_started`` records the intent id its ``execute`` uses), then
the saga goes on, or is compensated. Members of a group recorded as completed are not run again.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from .errors import ClpError, ConfigError, ConflictError, UserCodeError
from .events import Event, EventStore, entry_from_event
from .ids import new_id
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
        self, name: str, payload: Mapping[str, Any] | None = None, transition: str | None = None,
        *, intent_id: str | None = None,
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
class Parallel:
    """Steps run concurrently, as one step of a saga: ``Parallel({"hotel": Step(...), "car": Step(...)})``.

    Each member is one ``execute``; the saga goes on when all of them committed. If one fails,
    the others still finish, then every completed step (members and earlier steps) is
    compensated in reverse order of completion. Member names are step names: they key
    ``SagaResult.results`` and must be unique in the saga. A member's payload function sees
    the results of the steps before the group.
    """

    steps: Mapping[str, Step]

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("a Parallel group needs at least one step")
        for key, step in self.steps.items():
            if not isinstance(step, Step):
                raise ConfigError(f"member {key!r} of a Parallel group must be a clp.Step, got {type(step).__name__}")


@attrs.frozen
class Saga:
    """Ordered named steps (dict order); a step is a :class:`Step` or a :class:`Parallel` group."""

    steps: Mapping[str, Step | Parallel]
    name: str = "saga"

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("a Saga needs at least one step")
        seen: set[str] = set()
        for key, step in self.steps.items():
            if not isinstance(step, Step | Parallel):
                raise ConfigError(f"saga step {key!r} must be a clp.Step or clp.Parallel, got {type(step).__name__}")
            names = [key] if isinstance(step, Step) else list(step.steps)
            for name in names:
                if name in seen:
                    raise ConfigError(f"saga step name {name!r} is used twice")
                seen.add(name)

    @property
    def members(self) -> dict[str, Step]:
        """Every runnable step by name: plain steps and the members of groups."""
        found: dict[str, Step] = {}
        for key, step in self.steps.items():
            found.update({key: step} if isinstance(step, Step) else step.steps)
        return found


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
        self._lock = asyncio.Lock()  # members of a group record concurrently

    async def record(self, kind: str, **data: Any) -> None:
        async with self._lock:
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
    groups = {k: list(g.steps) for k, g in saga.steps.items() if isinstance(g, Parallel)}
    await progress.record("saga_started", steps=list(saga.steps), **({"groups": groups} if groups else {}))
    return await _forward(progress, {})


async def _forward(progress: _Progress, results: dict[str, LogEntry]) -> SagaResult:
    """Run the steps (and group members) not in ``results`` yet, in order."""
    for key, step in progress.saga.steps.items():
        members = {key: step} if isinstance(step, Step) else dict(step.steps)
        todo = [name for name in members if name not in results]
        if not todo:
            continue
        group = None if isinstance(step, Step) else key
        before = dict(results)
        if len(todo) == 1 and group is None:
            errors: list[Any] = [await _run_step(progress, results, before, todo[0], members[todo[0]], group)]
        else:  # every member finishes (nothing is cancelled half-way) before anything is decided
            errors = list(await asyncio.gather(
                *(_run_step(progress, results, before, name, members[name], group) for name in todo),
                return_exceptions=True))
            raised = [e for e in errors if isinstance(e, BaseException)]  # not step failures: a lost claim...
            if raised:
                raise raised[0]
        failures = [(name, error[0]) for name, error in zip(todo, errors, strict=True) if error is not None]
        if failures:
            return await _compensate(progress, results, *failures[0])
    await progress.record("saga_completed")
    return SagaResult(progress.saga_id, COMPLETED, results)


async def _run_step(
    progress: _Progress, results: dict[str, LogEntry], before: Mapping[str, LogEntry], name: str, step: Step,
    group: str | None,
) -> tuple[BaseException] | None:
    """One step (or group member) as one ``execute``: ``(its error,)``, recorded, or None once
    it completed (``results`` then holds it: in order of completion)."""
    runtime, where = progress.runtime, {"group": group} if group else {}
    try:
        payload = dict(await _call(step.payload, dict(before)) if callable(step.payload) else step.payload)
        intent_id = new_id()
        await progress.record("step_started", step=name, payload=payload, after_seq=runtime.last_seq,
                              intent_id=intent_id, **where)
        entry = await runtime.execute(step.intent, payload, step.transition, intent_id=intent_id)
    except ClpError as exc:
        await progress.record("step_failed", step=name, error=f"{type(exc).__name__}: {exc}", **where)
        return (exc,)
    except Exception as exc:  # a payload function that raised
        error = UserCodeError(f"payload of saga step {name} raised: {type(exc).__name__}: {exc}", where=name)
        error.__cause__ = exc
        await progress.record("step_failed", step=name, error=str(error), **where)
        return (error,)
    results[name] = entry
    await progress.record("step_completed", step=name, entry=entry_to_dict(entry), **where)
    return None


async def _compensate(
    progress: _Progress, results: dict[str, LogEntry], failed: str | None, error: BaseException | None
) -> SagaResult:
    steps = progress.saga.members
    compensation_error: BaseException | None = None
    for name in reversed(list(results)):
        step = steps[name]
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
    running: dict[str, Event] = {}  # started, not recorded as finished (several in a group)
    failed = False
    for event in events:
        step = str(event.data.get("step"))
        if event.kind == "step_started":
            running[step] = event
        elif event.kind == "step_completed":
            results[step] = entry_from_dict(event.data["entry"])
            running.pop(step, None)
        elif event.kind in ("step_failed", "step_compensated", "compensation_failed"):
            failed = True
            running.pop(step, None)
    members = progress.saga.members
    claimed: set[str | None] = {entry.intent_id for entry in results.values() if entry.intent_id}
    for step, started in running.items():
        if step not in members:
            raise ConfigError(f"saga {progress.saga_id!r} ran a step {step!r} its definition lacks")
        entry = await _committed_after(runtime, members[step].intent, started, claimed)
        if entry is not None:
            results[step] = entry
            claimed.add(entry.intent_id)
            await progress.record("step_completed", step=step, entry=entry_to_dict(entry), recovered=True,
                                  **({"group": started.data["group"]} if started.data.get("group") else {}))
    if failed or compensate:
        compensated = {e.data["step"] for e in events if e.kind == "step_compensated"}
        return await _compensate(progress, {k: v for k, v in results.items() if k not in compensated}, None, None)
    return await _forward(progress, results)


def _age(event: Event) -> float:
    try:
        stamp = _dt.datetime.fromisoformat(event.timestamp)
    except ValueError:
        return float("inf")
    return (_dt.datetime.now(_dt.UTC) - stamp).total_seconds()


async def _committed_after(
    runtime: SagaHost, intent: str, started: Event, claimed: set[str | None]
) -> LogEntry | None:
    """The aggregate's commit of the step recorded by ``started``, if it happened: the commit
    with the intent id it recorded (older streams: the first unclaimed commit of that intent
    and payload)."""
    assert runtime.event_store is not None
    intent_id = started.data.get("intent_id")
    payload = dict(started.data.get("payload") or {})
    after = int(started.data.get("after_seq", 0))
    for event in await runtime.event_store.get_events(runtime.storage_key, after=after):
        if event.kind != "commit":
            continue
        if intent_id is not None:
            if event.intent_id == intent_id:
                return entry_from_event(event)
        elif event.intent_name == intent and dict(event.payload) == payload and event.intent_id not in claimed:
            return entry_from_event(event)
    return None
