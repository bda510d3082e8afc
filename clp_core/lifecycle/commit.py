"""One commit attempt: guards (and a denying guard's suggestion), the choice of transition,
idempotency, and the effects applied to the state with an undo log.

:func:`attempt` takes values and returns a frozen :class:`CommitResult`; the runtime decides
what to keep (persist, or roll back and retry on a conflict).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Mapping
from typing import Any, NamedTuple, NoReturn

from ..contract import Contract, Guard, Transition
from ..errors import (
    AmbiguousTransitionError,
    ClpError,
    ConditionError,
    EffectError,
    EffectTimeoutError,
    GuardDeniedError,
    GuardError,
    NoMatchingTransitionError,
)
from ..log import GuardOutcome, Intent, LogEntry, Proposal, TransitionResult
from ..messages import Message, collect
from ..persistence import Records
from ..state import Change, State, Writer, plain
from .context import Context, context
from .intake import Intake


class CommitResult(NamedTuple):  # a named tuple: half the cost of a frozen attrs class to make
    """What one attempt did. Exactly one of ``error``, ``replayed`` and ``undo`` is set:
    it failed, it was answered from an idempotency record, or its effects are applied to the
    state (``undo`` rolls them back)."""

    context: Context
    guard_outcomes: tuple[GuardOutcome, ...] = ()
    transition: str | None = None  # the one asked for, then the one chosen
    error: ClpError | None = None
    replayed: LogEntry | None = None
    undo: Writer | None = None
    changes: tuple[Change, ...] = ()
    idempotency_key: str | None = None
    denied: Guard | None = None
    suggestion: Proposal | None = None
    suggestion_error: BaseException | None = None
    messages: tuple[Message, ...] = ()


_tuple_new = tuple.__new__
if CommitResult._fields != ("context", "guard_outcomes", "transition", "error", "replayed", "undo", "changes",
                            "idempotency_key", "denied", "suggestion", "suggestion_error", "messages"):
    raise AssertionError("CommitResult's fields changed: change attempt()'s success too")


async def attempt(
    contract: Contract, intake: Intake, state: State, intent: Intent, name: str | None, records: Records,
    aggregate: str,
) -> CommitResult:
    ctx = context(intent, state)
    outcomes: list[GuardOutcome] = []
    transition_name = name
    committed, transition_taken = records.committed(intent.id)
    if committed:  # a retry of a commit that landed (its reply may have been lost)
        return CommitResult(ctx, transition=transition_taken, replayed=LogEntry(
            intent_name=intent.name, intent_payload=intent.payload, phase="commit", intent_id=intent.id,
            transition_attempted=transition_taken, transition_result=TransitionResult(transition_taken, True),
            proposal_source=intent.source))
    try:
        recorded = _recorded(contract, name, ctx, records) if contract.keyed and records else None
        if recorded is not None:
            return CommitResult(ctx, transition=name, replayed=recorded)
        for guard in contract.guards_for(intent.name):
            denied = _denies(guard, ctx)
            outcomes.append(GuardOutcome(guard.name, denied))
            if denied:
                return _denial(intake, guard, ctx, tuple(outcomes), name)
        transition = _choose(contract, name, ctx)
        transition_name = transition.name
        key = None if transition.idempotency_key is None else _idempotency_key(transition, ctx)
        try:
            effects = transition.effects(ctx)  # a dict, the usual; else _awaited_effects takes it
        except Exception as exc:
            _effects_failed(transition, exc)
        if type(effects) is not dict:
            effects = await _awaited_effects(transition, effects)
        writer = Writer(state)
        try:
            writer.apply_effects(effects)
            if intake.validator is not None:
                intake.check_state(state)
            emitted = () if transition.emit is None else collect(
                transition.emit(context(intent, state)), transition=str(transition.name),
                intent_id=intent.id, aggregate=aggregate)
        except BaseException as exc:
            writer.rollback()
            if isinstance(exc, ClpError) or not isinstance(exc, Exception):
                raise
            raise EffectError(f"effects of {transition.name} failed: {type(exc).__name__}: {exc}",
                              where=str(transition.name)) from exc
    except ClpError as exc:
        return CommitResult(ctx, tuple(outcomes), transition_name, error=exc)
    # CommitResult(ctx, outcomes, transition_name, undo=..., changes=..., idempotency_key=..., messages=...),
    # made from its fields in order without the keyword parsing: the hot path
    return _tuple_new(CommitResult, (ctx, tuple(outcomes), transition_name, None, None, writer,
                                     tuple(writer.changes), key, None, None, None, emitted))


def _denies(guard: Guard, ctx: Context) -> bool:
    try:
        return bool(guard.deny(ctx))
    except Exception as exc:
        raise GuardError(f"Guard {guard.name} raised: {type(exc).__name__}: {exc}", where=guard.name) from exc


def _denial(
    intake: Intake, guard: Guard, ctx: Context, outcomes: tuple[GuardOutcome, ...], name: str | None
) -> CommitResult:
    """The guard's suggestion is checked here; an invalid one is reported, never staged."""
    suggestion: Proposal | None = None
    problem: BaseException | None = None
    if guard.suggest is not None:
        try:
            suggestion = intake.suggestion(guard, ctx.intent, guard.suggest(ctx))
        except Exception as exc:
            problem = exc
    error = GuardDeniedError(guard.name, None if suggestion is None else plain(suggestion.values))
    return CommitResult(ctx, outcomes, name, error=error, denied=guard, suggestion=suggestion,
                        suggestion_error=problem)


def _recorded(contract: Contract, name: str | None, ctx: Context, records: Records) -> LogEntry | None:
    """The entry of an earlier commit with this commit's idempotency key. Looked up before the
    guards: a retry returns what the first attempt did."""
    transitions = contract.transitions_for(ctx.intent.name)
    if name is not None:
        candidates = [t for t in (transitions.get(name),) if t is not None]
    else:
        candidates = list(transitions.values())
    for transition in candidates:
        if transition.idempotency_key is None or not _holds(transition, ctx):
            continue
        key = _idempotency_key(transition, ctx)
        if key is not None and key in records:
            return records.get(key)
    return None


def _choose(contract: Contract, name: str | None, ctx: Context) -> Transition:
    transitions = contract.transitions_for(ctx.intent.name)
    if name is not None:
        transition = transitions.get(name)
        if transition is None or not _holds(transition, ctx):
            raise NoMatchingTransitionError(name)
        return transition
    chosen, matching = None, 0
    for transition in transitions.values():
        if transition.when is not None:
            try:
                if not transition.when(ctx):
                    continue
            except Exception as exc:
                _condition_failed(transition, exc)
        chosen, matching = transition, matching + 1
    if matching != 1:
        raise AmbiguousTransitionError(matching)
    return chosen  # type: ignore[return-value]


def _holds(transition: Transition, ctx: Context) -> bool:
    if transition.when is None:
        return True
    try:
        return bool(transition.when(ctx))
    except Exception as exc:
        _condition_failed(transition, exc)


def _condition_failed(transition: Transition, exc: Exception) -> NoReturn:
    raise ConditionError(
        f"when of transition {transition.name} raised: {type(exc).__name__}: {exc}", where=str(transition.name)
    ) from exc


def _idempotency_key(transition: Transition, ctx: Context) -> str | None:
    if transition.idempotency_key is None:
        return None
    try:
        key = transition.idempotency_key(ctx)
    except Exception as exc:
        raise EffectError(
            f"idempotency_key of {transition.name} raised: {type(exc).__name__}: {exc}", where=str(transition.name)
        ) from exc
    return None if key is None else str(key)


async def _awaited_effects(transition: Transition, result: Any) -> Mapping[str, Any]:
    """The effects of a result that is not a dict: awaited (within ``timeout``) if awaitable,
    then checked to be a mapping (``None``: no changes)."""
    name = str(transition.name)
    if inspect.isawaitable(result):
        try:
            if transition.timeout is not None:
                result = await asyncio.wait_for(_as_coroutine(result), transition.timeout)
            else:
                result = await result
        except Exception as exc:
            _effects_failed(transition, exc)
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        raise EffectError(f"effects of {name} returned {type(result).__name__}, expected a dict", where=name)
    return result


def _effects_failed(transition: Transition, exc: Exception) -> NoReturn:
    name = str(transition.name)
    if isinstance(exc, TimeoutError):
        raise EffectTimeoutError(f"effects of {name} timed out after {transition.timeout} s", where=name) from exc
    if isinstance(exc, ClpError):
        raise exc
    raise EffectError(f"effects of {name} failed: {type(exc).__name__}: {exc}", where=name) from exc


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
