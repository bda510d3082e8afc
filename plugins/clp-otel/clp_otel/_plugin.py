"""The plugin: one span per lifecycle phase, and counters and a histogram for the phases."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

import attrs
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from clp_core import Context, Guard, Intent, LogEntry, Proposal, hookimpl
from clp_core.plugin_api import HookError

__all__ = ["PHASES", "SCOPE", "OtelPlugin"]

logger = logging.getLogger("clp.otel")

#: Instrumentation scope of the tracer and the meter.
SCOPE = "clp_otel"
VERSION = "0.2.0"
#: The phases that get a span: each starts in ``before_<phase>`` and ends in ``after_<phase>``,
#: ``on_guard_deny`` (commit) or ``on_error``.
PHASES = ("dispatch", "propose", "commit")

P = ParamSpec("P")


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    """Telemetry must not change the lifecycle: a bug here is logged, never raised."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            logger.exception("clp-otel: %s failed", method.__name__)

    return wrapper


@attrs.define(eq=False)
class _Open:
    """A span started by a ``before_*`` hook and not yet ended."""

    owner: int
    phase: str
    intent: Intent
    span: Span
    started: float
    task: asyncio.Task[Any] | None = None
    on_task_done: Callable[[asyncio.Task[Any]], None] | None = None
    done: bool = False


# The spans the current task opened, by (plugin, phase). ``on_error(error, phase)`` has no
# intent, so it ends the span its own task opened for that phase. Values are never mutated.
_TASK_OPEN: contextvars.ContextVar[Mapping[tuple[int, str], _Open]] = contextvars.ContextVar(
    "clp_otel_open", default=types.MappingProxyType({})
)


def error_type(error: BaseException) -> str:
    """The ``error.type`` attribute: the exception's fully qualified class name."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _intent_attributes(phase: str, intent: Intent) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "clp.phase": phase,
        "clp.intent": intent.name,
        "clp.intent.complete": bool(intent.complete),
        "clp.intent.fields": sorted(str(k) for k in intent.payload),  # names only: values may be secret
    }
    source = getattr(intent, "source", None)
    if isinstance(source, str):
        attributes["clp.intent.source"] = source
    return attributes


class OtelPlugin:
    """Traces and measures the lifecycle; usable as middleware or as the ``clp-otel`` plugin.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (no-ops until the
    application installs an SDK). A guard denial is not an error unless ``denial_is_error``;
    at most ``max_open`` spans are in flight (the oldest are ended as abandoned past that).
    """

    name = "clp-otel"

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        denial_is_error: bool = False,
        max_open: int = 1000,
    ) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.denial_is_error = denial_is_error
        self.max_open = max_open
        self._tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        self._commits = meter.create_counter(
            "clp.commits", unit="{commit}", description="Commits that changed state (replays included)")
        self._denials = meter.create_counter(
            "clp.denials", unit="{denial}", description="Commits refused by a guard")
        self._errors = meter.create_counter(
            "clp.errors", unit="{error}", description="Failures reported to on_error, by phase")
        self._duration = meter.create_histogram(
            "clp.phase.duration", unit="s", description="Time from before_<phase> to its end, by phase and outcome")
        self._open: list[_Open] = []

    # -- hooks -------------------------------------------------------------------------
    @hookimpl
    @_never_raises
    def before_dispatch(self, intent: Intent) -> None:
        self._start("dispatch", intent)

    @hookimpl

    @_never_raises
    def after_dispatch(self, intent: Intent, entry: LogEntry) -> None:
        record = self._find("dispatch", intent)
        if record is not None:
            self._finish(record, "ok")

    @hookimpl

    @_never_raises
    def before_propose(self, intent: Intent) -> None:
        self._start("propose", intent)

    @hookimpl

    @_never_raises
    def after_propose(self, intent: Intent, proposal: Proposal) -> None:
        attributes: dict[str, AttributeValue] = {
            "clp.proposal.source": proposal.source,
            "clp.proposal.fields": sorted(str(k) for k in proposal.values),
        }
        record = self._find("propose", intent)
        if record is not None:
            self._finish(record, "ok", attributes)
        else:  # a guard's suggestion: staged by a commit, no before_propose
            self._instant("propose", intent, "ok", attributes)

    @hookimpl

    @_never_raises
    def before_commit(self, intent: Intent) -> None:
        self._start("commit", intent)

    @hookimpl

    @_never_raises
    def after_commit(self, intent: Intent, entry: LogEntry) -> None:
        result = entry.transition_result
        transition = result.name or entry.transition_attempted
        attributes: dict[str, AttributeValue] = {
            f"clp.guard.{outcome.name}.denied": outcome.denied for outcome in entry.guard_outcomes
        }
        attributes["clp.permitted"] = bool(result.permitted)
        if transition is not None:
            attributes["clp.transition"] = transition
        if entry.replay:
            attributes["clp.replay"] = True
        if entry.proposal_source is not None:
            attributes["clp.proposal.source"] = entry.proposal_source
        attributes["clp.state.changed"] = list(dict.fromkeys(change.path for change in entry.state_diff))
        record = self._find("commit", intent)
        if record is not None:
            self._finish(record, "ok", attributes)
        metric: dict[str, AttributeValue] = {"clp.intent": intent.name, "clp.replay": bool(entry.replay)}
        if transition is not None:
            metric["clp.transition"] = transition
        self._commits.add(1, metric)

    @hookimpl

    @_never_raises
    def on_guard_deny(self, guard: Guard, context: Context) -> None:
        intent = context.intent
        attributes: dict[str, AttributeValue] = {
            f"clp.guard.{guard.name}.denied": True,
            "clp.guard.denied": guard.name,
            "clp.permitted": False,
        }
        status = Status(StatusCode.ERROR, f"Guard {guard.name} denied") if self.denial_is_error else None
        record = self._find("commit", intent)
        if record is not None:
            self._finish(record, "denied", attributes, status=status)
        else:
            self._instant("commit", intent, "denied", attributes, status=status)
        self._denials.add(1, {"clp.intent": intent.name, "clp.guard": guard.name})

    @hookimpl

    @_never_raises
    def on_error(self, error: BaseException, phase: str) -> None:
        attributes: dict[str, AttributeValue] = {"error.type": error_type(error)}
        if isinstance(error, HookError):
            attributes["clp.hook"], attributes["clp.plugin"] = error.hook, error.plugin
        if error.__cause__ is not None:
            attributes["clp.error.cause"] = error_type(error.__cause__)
        record = self._task_open(phase)
        metric: dict[str, AttributeValue] = {"clp.phase": phase, "error.type": attributes["error.type"]}
        if record is not None:
            metric["clp.intent"] = record.intent.name
            if record.phase == "commit":
                attributes["clp.permitted"] = False
            self._finish(record, "error", attributes, error=error)
        elif phase in PHASES:  # failed before any before_* hook ran (unknown intent, incomplete...)
            span = self._tracer.start_span(f"clp.{phase}", kind=SpanKind.INTERNAL,
                                           attributes={"clp.phase": phase, "clp.outcome": "error", **attributes})
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()
        self._errors.add(1, metric)

    @hookimpl

    @_never_raises
    def on_close(self) -> None:
        for record in list(_TASK_OPEN.get().values()):
            if record.owner == id(self):
                self._finish(record, "abandoned", status=Status(StatusCode.ERROR, "runtime closed mid-phase"))

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def open_spans(self) -> int:
        """How many phase spans are in flight (for tests and health checks)."""
        return len(self._open)

    def _start(self, phase: str, intent: Intent) -> None:
        span = self._tracer.start_span(f"clp.{phase}", kind=SpanKind.INTERNAL,
                                       attributes=_intent_attributes(phase, intent))
        record = _Open(id(self), phase, intent, span, time.perf_counter())
        while len(self._open) >= self.max_open:
            self._finish(self._open[0], "abandoned", status=Status(StatusCode.ERROR, "too many spans in flight"))
        self._open.append(record)
        _TASK_OPEN.set({**_TASK_OPEN.get(), (id(self), phase): record})
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is not None:  # a cancelled phase calls no hook: end its span with the task
            def ended(_: asyncio.Task[Any], record: _Open = record) -> None:
                self._finish(record, "abandoned", status=Status(StatusCode.ERROR, "task ended mid-phase"))

            task.add_done_callback(ended)
            record.task, record.on_task_done = task, ended

    def _find(self, phase: str, intent: Intent) -> _Open | None:
        """The open span of ``phase`` for this very intent object, this task's first."""
        mine = _TASK_OPEN.get().get((id(self), phase))
        if mine is not None and not mine.done and mine.intent is intent:
            return mine
        return next((r for r in self._open if r.phase == phase and r.intent is intent), None)

    def _task_open(self, phase: str) -> _Open | None:
        """This task's open span for ``phase`` (``storage``: the phase that was writing)."""
        task_open = _TASK_OPEN.get()
        phases = ("commit", "dispatch", "propose") if phase == "storage" else (phase,)
        for candidate in phases:
            record = task_open.get((id(self), candidate))
            if record is not None and not record.done:
                return record
        return None

    def _finish(
        self,
        record: _Open,
        outcome: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        status: Status | None = None,
        error: BaseException | None = None,
    ) -> None:
        if record.done:
            return
        record.done = True
        self._open.remove(record)
        task_open = _TASK_OPEN.get()
        key = (record.owner, record.phase)
        if task_open.get(key) is record:
            _TASK_OPEN.set({k: v for k, v in task_open.items() if k != key})
        if record.task is not None and record.on_task_done is not None:
            record.task.remove_done_callback(record.on_task_done)
            record.task = record.on_task_done = None
        span = record.span
        span.set_attributes({**(attributes or {}), "clp.outcome": outcome})
        if error is not None:
            span.record_exception(error)
            status = Status(StatusCode.ERROR, str(error))
        if status is not None:
            span.set_status(status)
        span.end()
        self._duration.record(time.perf_counter() - record.started, {
            "clp.phase": record.phase, "clp.intent": record.intent.name, "clp.outcome": outcome})

    def _instant(
        self, phase: str, intent: Intent, outcome: str, attributes: Mapping[str, AttributeValue],
        *, status: Status | None = None,
    ) -> None:
        """A span for a phase that had no ``before_*`` (a guard's suggestion)."""
        span = self._tracer.start_span(f"clp.{phase}", kind=SpanKind.INTERNAL, attributes={
            **_intent_attributes(phase, intent), **attributes, "clp.outcome": outcome})
        if status is not None:
            span.set_status(status)
        span.end()
