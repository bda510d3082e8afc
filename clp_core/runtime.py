"""The lifecycle: dispatch -> (propose -> accept) -> guards -> transition -> commit.

This is the only module that changes state. Lifecycle calls on one runtime are serialised
by an ``asyncio.Lock``; subscribers, ``after_*`` hooks and ``on_error`` run after the lock
is released, so they may call the runtime again.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from . import saga as saga_module
from .contract import CompiledIntent, Contract, Guard, Transition
from .errors import (
    AmbiguousTransitionError,
    ClpError,
    ConditionError,
    ConfigError,
    ConflictError,
    CorruptStateError,
    EffectError,
    EffectTimeoutError,
    GuardDeniedError,
    GuardError,
    HistoryError,
    IncompleteIntentError,
    NoIntentError,
    NoMatchingIntentError,
    NoMatchingTransitionError,
    NoStagedProposalError,
    ProposalError,
    StorageError,
    UnacceptedProposalError,
    UnknownIntentError,
    ValidationError,
)
from .events import (
    Event,
    Snapshot,
    entry_from_event,
    event_from_entry,
    idempotency_records,
    replay,
    resolve_event_store,
)
from .log import (
    AuditLog,
    GuardOutcome,
    Intent,
    LogEntry,
    Proposal,
    TransitionResult,
    entry_from_dict,
    entry_to_dict,
    now,
)
from .plugins import runtime_hooks
from .saga import Saga, SagaResult
from .state import StateView, Writer, changed_paths, copy_value, lookup, parse_path, plain, touches
from .storage import VersionedStorage, resolve_storage
from .validation import build_validator, intent_json_schema

logger = logging.getLogger("clp")

Subscriber = Callable[[Mapping[str, Any]], Any]


@attrs.frozen
class Context:
    """What guards, ``when`` and effects see: the intent and a read-only view of state."""

    intent: Intent
    state: StateView


class Runtime:
    """A contract's runtime: the current intent, the staged proposal, state and log.

    Create it with :func:`create_runtime`.
    """

    def __init__(
        self,
        contract: Contract,
        ai_provider: Callable[[Intent], Any] | None = None,
        *,
        storage: Any = None,
        storage_key: str = "clp:state",
        persist_on_commit: bool | None = None,
        hydrate_on_init: bool | None = None,
        initial_state: Mapping[str, Any] | None = None,
        validation: Mapping[str, Any] | None = None,
        middleware: Sequence[Any] = (),
        config: Mapping[str, Any] | None = None,
        event_store: Any = None,
        snapshot_every: int = 1000,
        log_limit: int | None = 10_000,
        idempotency_limit: int = 10_000,
        max_conflict_retries: int = 100,
    ) -> None:
        if not isinstance(contract, Contract):
            raise ConfigError("create_runtime needs a contract made by create_contract()")
        if ai_provider is not None and not callable(ai_provider):
            raise ConfigError("ai_provider must be callable (sync or async) or None")
        if not isinstance(storage_key, str) or not storage_key:
            raise ConfigError("storage_key must be a non-empty string")
        self.contract = contract
        self._validator = None if validation is None else build_validator(contract, validation)
        self._strict = bool((validation or {}).get("strict", True))
        self._lenient: list[ValidationError] = []  # failures of a lenient validation, not yet logged
        self._unreported: list[tuple[BaseException, str]] = []  # logged, not yet given to on_error
        self.ai_provider = ai_provider
        self.storage = resolve_storage(storage)
        self._storage_name = str(getattr(self.storage, "name", type(self.storage).__name__))
        self.storage_key = storage_key
        self.event_store = None if event_store is None else resolve_event_store(event_store)
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ConfigError("snapshot_every must be a positive integer")
        self.snapshot_every = snapshot_every
        self._seq = 0  # the aggregate's last event sequence number (with an event store)
        durable = storage is not None or event_store is not None
        self.persist_on_commit = durable if persist_on_commit is None else persist_on_commit
        self.hydrate_on_init = durable if hydrate_on_init is None else hydrate_on_init
        self.config = dict(config or {})
        self.max_conflict_retries = max_conflict_retries
        self._state: dict[str, Any] = copy_value(dict(initial_state or {}))
        self._initial_state = plain(self._state)
        self._version = 0
        self._versioned = isinstance(self.storage, VersionedStorage)
        self._hydrated = not self.hydrate_on_init
        self._intent: Intent | None = None
        self._staged: Proposal | None = None
        self._log = AuditLog(log_limit)
        self._idempotency: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._idempotency_limit = idempotency_limit
        self._subscribers: dict[int, tuple[tuple[str, ...], Subscriber]] = {}
        self._next_subscriber = 0
        self._lock = asyncio.Lock()
        self.hooks = runtime_hooks(self.config, middleware)
        self._entry_hooks = self.hooks.has("on_log_entry")
        self._unshipped: list[LogEntry] = []  # entries logged, not yet given to on_log_entry
        self._flushing = False

    # -- context management ------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        await self.hydrate()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def hydrate(self) -> None:
        """Load state from storage now (otherwise the first lifecycle call does)."""
        async with self._lock:
            await self._ensure_hydrated()

    async def close(self) -> None:
        """Let plugins flush (``on_close``), then close the storage adapter and event store."""
        if self.hooks.has("on_close"):
            await self.hooks.call_quietly("on_close")
        for resource in (self.storage, self.event_store):
            close = getattr(resource, "close", None)
            if close is not None:
                await close()

    async def _ensure_hydrated(self) -> None:
        if not self._hydrated:
            await self._load()
            self._hydrated = True

    async def _load(self) -> None:
        if self.event_store is not None:
            await self._load_events()
            return
        name = self._storage_name
        try:
            if self._versioned:
                document, version = await self.storage.load_versioned(self.storage_key)
            else:
                document, version = await self.storage.load(self.storage_key), 0
        except ClpError:
            raise
        except Exception as exc:
            raise StorageError(f"load of {self.storage_key!r} failed: {exc}", backend=name) from exc
        if document is None:
            self._state, self._version = plain(self._initial_state), version
            return
        if not isinstance(document, dict) or not isinstance(document.get("state"), dict):
            raise CorruptStateError(f"stored document for {self.storage_key!r} has no state object", backend=name)
        try:
            records = idempotency_records(document.get("idempotency"))
        except ValueError:
            raise CorruptStateError(
                f"stored idempotency records for {self.storage_key!r} are malformed", backend=name) from None
        self._state = document["state"]
        self._idempotency = records
        self._version = version

    async def _load_events(self) -> None:
        assert self.event_store is not None
        try:
            replayed = await replay(self.event_store, self.storage_key, base=self._initial_state)
        except ClpError:
            raise
        except Exception as exc:
            raise StorageError(f"replay of {self.storage_key!r} failed: {exc}", backend=self.event_store.name) from exc
        records = collections.OrderedDict(replayed.idempotency)
        for event in replayed.tail:
            if event.idempotency_key is not None:
                records[event.idempotency_key] = entry_to_dict(entry_from_event(event))
        self._state, self._seq = replayed.state, replayed.seq
        self._idempotency = records

    # -- reads -------------------------------------------------------------------------
    def get_state(self, path: str | None = None) -> Any:
        """The value at ``path`` (a dot path), or the whole state; containers are copies."""
        if path is None:
            return plain(self._state)
        return plain(lookup(self._state, parse_path(path)))

    def get_log(self) -> list[LogEntry]:
        """A copy of the in-memory audit log (the last ``log_limit`` entries)."""
        return self._log.snapshot()

    async def state_at(self, seq: int) -> dict[str, Any]:
        """The state as of event ``seq`` (1 = after the first commit; 0 = the initial state)."""
        store = self._require_event_store("state_at")
        last = await store.last_seq(self.storage_key)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= last:
            raise HistoryError(f"no event {seq!r} in {self.storage_key!r} (it has events 1 to {last})")
        replayed = await replay(store, self.storage_key, until=seq, base=self._initial_state)
        return replayed.state

    async def history(self, after: int = 0, page: int = 1000) -> AsyncIterator[Event]:
        """The aggregate's events in order, read ``page`` at a time."""
        store = self._require_event_store("history")
        while True:
            events = await store.get_events(self.storage_key, after=after, until=after + page)
            for event in events:
                yield event
            if len(events) < page:
                return
            after = events[-1].seq

    async def run_saga(self, saga: Saga, saga_id: str | None = None) -> SagaResult:
        """Run ``saga``'s steps in order, each as one ``execute``; if one fails, compensate
        the completed ones in reverse. See :mod:`clp_core.saga`."""
        return await saga_module.run(self, saga, saga_id)

    async def resume_sagas(
        self, sagas: Mapping[str, Saga], *, compensate: bool = False, stale_after: float = 0.0
    ) -> list[SagaResult]:
        """Finish the sagas a dead process left running (definitions by saga name); see
        :func:`clp_core.saga.resume`."""
        return await saga_module.resume(self, sagas, compensate=compensate, stale_after=stale_after)

    async def _saga_event(self, event: Event) -> None:
        detail = {"saga": event.data.get("saga"), "saga_id": event.data.get("saga_id"),
                  "kind": event.kind, "step": event.data.get("step")}
        self._record(LogEntry(intent_name=None, intent_payload=None, phase="saga",
                                  error=event.data.get("error"), detail=detail))
        await self._flush()
        await self._after("on_saga_event", event=event)

    def _require_event_store(self, what: str) -> Any:
        if self.event_store is None:
            raise ConfigError(f"{what}() needs a runtime created with event_store=...")
        return self.event_store

    def intent_schema(self, name: str) -> dict[str, Any]:
        """JSON Schema of an intent's payload (for an AI provider's structured output)."""
        compiled = self.contract.intent(name)
        if compiled is None:
            raise UnknownIntentError(name)
        if self._validator is not None:
            return self._validator.intent_schema(name)
        return intent_json_schema(compiled)

    @property
    def current_intent(self) -> Intent | None:
        return self._intent

    @property
    def staged_proposal(self) -> Proposal | None:
        return self._staged

    def subscribe(self, path: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(state)`` after each commit that changed something at, under or
        above ``path``. Returns a function that unsubscribes."""
        watched = parse_path(path)
        if not callable(callback):
            raise ConfigError("subscribe needs a callable callback")
        token = self._next_subscriber
        self._next_subscriber += 1
        self._subscribers[token] = (watched, callback)

        def unsubscribe() -> None:
            self._subscribers.pop(token, None)

        return unsubscribe

    # -- lifecycle -------------------------------------------------------------------
    async def dispatch(self, name: str, payload: Mapping[str, Any] | None = None) -> Intent:
        """Make ``name`` the current intent (replacing any earlier one and its proposal)."""
        try:
            async with self._lock:
                await self._ensure_hydrated()
                intent, entry = await self._dispatch(name, payload)
        except ClpError as exc:
            await self._flush()  # the entries first, then the error: as in execute()
            await self._report(exc, "dispatch")
            raise
        finally:
            await self._flush()
        await self._after("after_dispatch", intent=intent, entry=entry)
        return intent

    async def propose(self, name: str) -> dict[str, Any] | None:
        """Ask the AI provider for values; they are staged, never applied.

        Returns ``None`` when ``name`` is not the current intent or there is no provider.
        """
        try:
            async with self._lock:
                await self._ensure_hydrated()
                intent = self._intent
                if intent is None or intent.name != name or self.ai_provider is None:
                    return None
                await self.hooks.call("before_propose", intent=intent)
                proposal = await self._ask_provider(intent)
        except ClpError as exc:
            await self._flush()  # the entries first, then the error: as in execute()
            await self._report(exc, "propose")
            raise
        finally:
            await self._flush()
        await self._after("after_propose", intent=intent, proposal=proposal)
        return plain(proposal.values)  # type: ignore[no-any-return]

    async def accept_proposal(self, name: str) -> Intent:
        """Merge the staged proposal into the current intent's payload."""
        try:
            async with self._lock:
                await self._ensure_hydrated()
                staged = self._check_staged(name, "accept")
                assert self._intent is not None
                compiled = self.contract.intents[name]
                merged = plain({**self._intent.payload, **staged.values})
                complete = all(merged.get(f) is not None for f in compiled.required)
                payload = self._validate(compiled, merged, f"accepted payload of {name}", complete=complete)
                intent = attrs.evolve(self._make_intent(compiled, payload), source=staged.source)
                self._intent, self._staged = intent, None
                self._record(self._entry(intent, "accept", accepted_proposal=staged.values,
                                             proposal_source=staged.source))
                return intent
        except ClpError as exc:
            await self._flush()  # the entries first, then the error: as in execute()
            await self._report(exc, "accept")
            raise
        finally:
            await self._flush()

    async def reject_proposal(self, name: str) -> Intent:
        """Discard the staged proposal (logged); the intent stays current."""
        try:
            async with self._lock:
                await self._ensure_hydrated()
                staged = self._check_staged(name, "reject")
                assert self._intent is not None
                self._staged = None
                self._record(self._entry(self._intent, "reject", staged_proposal=staged.values,
                                             proposal_source=staged.source))
                return self._intent
        except ClpError as exc:
            await self._flush()  # the entries first, then the error: as in execute()
            await self._report(exc, "reject")
            raise
        finally:
            await self._flush()

    async def commit(self, transition: str | None = None) -> LogEntry:
        """Run guards, pick the transition, apply its effects, persist; returns the entry."""
        outcome = _CommitOutcome()
        try:
            async with self._lock:
                await self._ensure_hydrated()
                entry = await self._commit(transition, outcome)
        except ClpError as exc:
            await self._flush()
            await self._finish_failed_commit(exc, outcome)
            raise
        finally:
            await self._flush()
        await self._finish_commit(entry, outcome)
        return entry

    async def execute(
        self, name: str, payload: Mapping[str, Any] | None = None, transition: str | None = None
    ) -> LogEntry:
        """``dispatch`` + ``commit`` as one atomic step."""
        outcome = _CommitOutcome()
        dispatched: tuple[Intent, LogEntry] | None = None
        try:
            async with self._lock:
                await self._ensure_hydrated()
                dispatched = await self._dispatch(name, payload)
                entry = await self._commit(transition, outcome)
        except ClpError as exc:
            await self._flush()
            if dispatched is None:
                await self._report(exc, "dispatch")
                raise
            await self._after("after_dispatch", intent=dispatched[0], entry=dispatched[1])
            await self._finish_failed_commit(exc, outcome)
            raise
        await self._flush()
        await self._after("after_dispatch", intent=dispatched[0], entry=dispatched[1])
        await self._finish_commit(entry, outcome)
        return entry

    # -- phases (called with the lock held) ---------------------------------------------
    def _make_intent(self, compiled: CompiledIntent, payload: Mapping[str, Any]) -> Intent:
        complete = all(payload.get(f) is not None for f in compiled.required)
        return Intent(compiled.name, payload, complete)

    def _entry(self, intent: Intent | None, phase: str, **fields: Any) -> LogEntry:
        if self._lenient:
            fields["validation_errors"] = tuple(e for exc in self._lenient for e in exc.errors)
            self._unreported.extend((exc, phase) for exc in self._lenient)
            self._lenient.clear()
        return LogEntry(
            intent_name=intent.name if intent else None,
            intent_payload=intent.payload if intent else None,
            phase=phase,
            **fields,
        )

    def _validate(
        self, compiled: CompiledIntent, values: Mapping[str, Any], where: str, *, complete: bool = False
    ) -> dict[str, Any]:
        """The values to use: checked against the declared types, or by the validator
        (which may coerce). A lenient validation's failures are kept for the log entry."""
        try:
            if self._validator is None:
                self.contract.check_values(compiled, values, where=where)
                return {k: plain(v) for k, v in values.items()}
            try:
                return self._validator.validate_payload(compiled.name, values, complete=complete)
            except ValidationError as exc:
                error = exc if exc.where == where else ValidationError(where, exc.errors)  # say what was checked
                if self._strict:
                    raise error from None
                self._lenient.append(error)
                return {k: plain(v) for k, v in values.items()}
        except RecursionError:  # a cyclic or absurdly deep value
            raise ValidationError(where, [{"field": "<payload>", "expected": "a finite, reasonably nested value",
                                           "got": "cyclic or too deeply nested"}]) from None

    def _validate_state(self) -> None:
        if self._validator is None or not self._validator.checks_state:
            return
        try:
            self._validator.validate_state(StateView(self._state))
        except ValidationError as exc:
            if self._strict:
                raise
            self._lenient.append(exc)

    async def _dispatch(self, name: str, payload: Mapping[str, Any] | None) -> tuple[Intent, LogEntry]:
        compiled = self.contract.intent(name)
        if compiled is None:
            raise UnknownIntentError(name)
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise ValidationError(
                f"payload of {name}", [{"field": "<payload>", "expected": "object", "got": type(payload).__name__}]
            )
        unknown = [k for k in payload if k not in compiled.inputs]
        if unknown:
            raise ValidationError(
                f"payload of {name}",
                [{"field": str(k), "expected": "a declared input", "got": "undeclared field"} for k in unknown],
            )
        complete = all(payload.get(f) is not None for f in compiled.required)
        intent = self._make_intent(compiled, self._validate(compiled, payload, f"payload of {name}", complete=complete))
        await self.hooks.call("before_dispatch", intent=intent)
        self._intent, self._staged = intent, None
        entry = self._entry(intent, "dispatch")
        self._record(entry)
        return intent, entry

    async def _ask_provider(self, intent: Intent) -> Proposal:
        assert self.ai_provider is not None
        try:
            result = self.ai_provider(intent)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise ProposalError(f"AI provider failed for {intent.name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, Mapping):
            raise ProposalError(f"AI provider returned {type(result).__name__} for {intent.name}, expected a dict")
        compiled = self.contract.intents[intent.name]
        for key in result:
            if key not in compiled.inputs:
                raise ProposalError(f"Proposal contains invalid field: {key}")
            if key in compiled.required and intent.payload.get(key) is not None:
                raise ProposalError(f"Proposal tries to override required field: {key}")
        proposal = Proposal(self._validate(compiled, result, f"proposal for {intent.name}"), "ai")
        self._staged = proposal
        self._record(self._entry(intent, "propose", staged_proposal=proposal.values, proposal_source="ai"))
        return proposal

    def _check_staged(self, name: str, action: str) -> Proposal:
        if self._intent is None or self._intent.name != name:
            raise NoMatchingIntentError()
        if self._staged is None:
            raise NoStagedProposalError(action)
        return self._staged

    async def _commit(self, name: str | None, outcome: _CommitOutcome) -> LogEntry:
        intent = self._intent
        try:
            if intent is None:
                raise NoIntentError()
            if self._staged is not None:
                raise UnacceptedProposalError()
            if not intent.complete:
                raise IncompleteIntentError()
            await self.hooks.call("before_commit", intent=intent)
            for attempt in range(self.max_conflict_retries + 1):
                try:
                    return await self._attempt_commit(intent, name, outcome)
                except ConflictError:
                    if attempt == self.max_conflict_retries:
                        raise
                    outcome.reset()
                    # full jitter, exponential up to 128 ms, so a loser does not keep losing
                    await asyncio.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 7)))
                    await self._load()
            raise AssertionError("unreachable")  # pragma: no cover
        except ClpError as exc:
            self._record(self._entry(
                intent, "commit",
                guard_outcomes=tuple(outcome.guard_outcomes),
                transition_attempted=outcome.transition,
                staged_proposal=self._staged.values if outcome.suggested and self._staged else None,
                proposal_source=self._staged.source if outcome.suggested and self._staged else None,
                error=str(exc),
            ))
            raise

    async def _attempt_commit(self, intent: Intent, name: str | None, outcome: _CommitOutcome) -> LogEntry:
        ctx = Context(intent, StateView(self._state))
        outcome.context, outcome.intent, outcome.transition = ctx, intent, name
        replay = self._recorded_replay(name, ctx)
        if replay is not None:
            return replay
        self._run_guards(intent, ctx, outcome)
        transition = self._choose_transition(name, ctx)
        outcome.transition = transition.name
        key = self._idempotency_key(transition, ctx)
        result = await self._run_effects(transition, ctx)
        writer = Writer(self._state)
        try:
            writer.apply_effects(result)
            self._validate_state()
            entry = self._entry(
                intent, "commit",
                guard_outcomes=tuple(outcome.guard_outcomes),
                transition_attempted=transition.name,
                transition_result=TransitionResult(transition.name, True),
                state_diff=tuple(writer.changes),
                idempotency_key=key,
                proposal_source=intent.source,
            )
            if key is not None:
                self._idempotency[key] = entry_to_dict(entry)
            if self.event_store is not None:
                await self._append_event(entry)
            elif self.persist_on_commit:
                await self._persist()
        except BaseException as exc:
            writer.rollback()
            if key is not None:
                self._idempotency.pop(key, None)
            if isinstance(exc, ClpError) or not isinstance(exc, Exception):
                raise
            raise EffectError(
                f"effects of {transition.name} failed: {type(exc).__name__}: {exc}", where=str(transition.name)
            ) from exc
        while len(self._idempotency) > self._idempotency_limit:
            self._idempotency.popitem(last=False)
        if self.event_store is not None and self._seq % self.snapshot_every == 0:
            await self._snapshot()
        self._intent = self._staged = None
        self._record(entry)
        outcome.changed = changed_paths(writer.changes)
        return entry

    def _recorded_replay(self, name: str | None, ctx: Context) -> LogEntry | None:
        """The recorded entry, marked as a replay, if the commit's idempotency key already
        committed. Looked up before guards: a retry returns what the first attempt did."""
        if not self._idempotency:
            return None
        if name is not None:
            candidates = [t for t in (self.contract.transitions.get(name),) if t is not None]
        else:
            candidates = list(self.contract.transitions.values())
        for transition in candidates:
            if transition.idempotency_key is None or not self._holds(transition, ctx):
                continue
            key = self._idempotency_key(transition, ctx)
            if key is not None and key in self._idempotency:
                recorded = entry_from_dict(self._idempotency[key])
                entry = attrs.evolve(recorded, replay=True, timestamp=now())
                self._intent = self._staged = None
                self._record(entry)
                return entry
        return None

    async def _append_event(self, entry: LogEntry) -> None:
        assert self.event_store is not None
        if self._seq == 0 and self._initial_state:
            # the stream's base, so that replays outside this runtime (clp state, the inspector)
            # start from the same initial state
            await self._save_snapshot(Snapshot(0, plain(self._initial_state), {}))
        event = event_from_entry(self.storage_key, self._seq + 1, entry)
        try:
            await self.event_store.append(event, self._seq)
        except ClpError:
            raise
        except Exception as exc:
            problem = f"append to {self.storage_key!r} failed: {type(exc).__name__}: {exc}"
            raise StorageError(problem, backend=self.event_store.name) from exc
        self._seq += 1

    async def _snapshot(self) -> None:
        await self._save_snapshot(Snapshot(self._seq, plain(self._state), self._idempotency.copy()))

    async def _save_snapshot(self, snapshot: Snapshot) -> None:
        """Save a snapshot; a failure only costs replay time, so it is reported, not raised."""
        assert self.event_store is not None
        try:
            await self.event_store.save_snapshot(self.storage_key, snapshot)
        except Exception as exc:
            logger.warning("clp snapshot of %s at %d failed: %s", self.storage_key, snapshot.seq, exc)
            self._unreported.append((exc, "storage"))

    async def _persist(self) -> None:
        # a list keeps the records' age order through stores that sort keys (jsonb)
        document = {"state": self._state, "idempotency": [[k, v] for k, v in self._idempotency.items()]}
        name = self._storage_name
        try:
            if self._versioned:
                self._version = await self.storage.save_versioned(self.storage_key, document, self._version)
            else:
                await self.storage.save(self.storage_key, document)
        except ClpError:
            raise
        except Exception as exc:
            problem = f"save of {self.storage_key!r} failed: {type(exc).__name__}: {exc}"
            raise StorageError(problem, backend=name) from exc

    def _run_guards(self, intent: Intent, ctx: Context, outcome: _CommitOutcome) -> None:
        outcome.guard_outcomes = []
        for guard in self.contract.guards:
            try:
                denied = bool(guard.deny(ctx))
            except Exception as exc:
                raise GuardError(f"Guard {guard.name} raised: {type(exc).__name__}: {exc}", where=guard.name) from exc
            outcome.guard_outcomes.append(GuardOutcome(guard.name, denied))
            if denied:
                suggestion = self._suggest(guard, intent, ctx, outcome)
                outcome.denied = guard
                raise GuardDeniedError(guard.name, suggestion)

    def _suggest(self, guard: Guard, intent: Intent, ctx: Context, outcome: _CommitOutcome) -> dict[str, Any] | None:
        if guard.suggest is None:
            return None
        compiled = self.contract.intents[intent.name]
        try:
            values = guard.suggest(ctx)
            if values is None:  # nothing to suggest
                return None
            if not isinstance(values, Mapping):
                raise ProposalError(f"suggestion of guard {guard.name} is {type(values).__name__}, expected a dict")
            for key in values:
                if key not in compiled.inputs:
                    raise ProposalError(f"Proposal contains invalid field: {key}")
            checked = self._validate(compiled, values, f"suggestion of guard {guard.name}")
        except Exception as exc:  # an invalid suggestion is reported, never staged
            outcome.suggestion_error = exc
            return None
        proposal = Proposal(checked, f"guard:{guard.name}")
        self._staged = proposal
        outcome.suggested = True
        return plain(proposal.values)  # type: ignore[no-any-return]

    def _choose_transition(self, name: str | None, ctx: Context) -> Transition:
        if name is not None:
            transition = self.contract.transitions.get(name)
            if transition is None or not self._holds(transition, ctx):
                raise NoMatchingTransitionError(name)
            return transition
        matching = [t for t in self.contract.transitions.values() if self._holds(t, ctx)]
        if len(matching) != 1:
            raise AmbiguousTransitionError(len(matching))
        return matching[0]

    @staticmethod
    def _holds(transition: Transition, ctx: Context) -> bool:
        if transition.when is None:
            return True
        try:
            return bool(transition.when(ctx))
        except Exception as exc:
            raise ConditionError(
                f"when of transition {transition.name} raised: {type(exc).__name__}: {exc}", where=str(transition.name)
            ) from exc

    @staticmethod
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

    @staticmethod
    async def _run_effects(transition: Transition, ctx: Context) -> Mapping[str, Any]:
        name = str(transition.name)
        try:
            result = transition.effects(ctx)
            if inspect.isawaitable(result):
                if transition.timeout is not None:
                    result = await asyncio.wait_for(_as_coroutine(result), transition.timeout)
                else:
                    result = await result
        except TimeoutError as exc:
            raise EffectTimeoutError(
                f"effects of {name} timed out after {transition.timeout} s", where=name
            ) from exc
        except ClpError:
            raise
        except Exception as exc:
            raise EffectError(f"effects of {name} failed: {type(exc).__name__}: {exc}", where=name) from exc
        if result is None:
            return {}
        if not isinstance(result, Mapping):
            raise EffectError(f"effects of {name} returned {type(result).__name__}, expected a dict", where=name)
        return result

    # -- after the lock ---------------------------------------------------------------
    async def _finish_commit(self, entry: LogEntry, outcome: _CommitOutcome) -> None:
        if outcome.changed:
            await self._notify(outcome.changed)
        await self._after("after_commit", intent=outcome.intent, entry=entry)

    async def _finish_failed_commit(self, exc: ClpError, outcome: _CommitOutcome) -> None:
        if isinstance(exc, GuardDeniedError) and outcome.denied is not None:
            errors = await self.hooks.call_quietly("on_guard_deny", guard=outcome.denied, context=outcome.context)
            if outcome.suggestion_error is not None:
                await self._report(outcome.suggestion_error, "suggest")
            if outcome.suggested and self._staged is not None and self._intent is not None:
                await self._after("after_propose", intent=self._intent, proposal=self._staged)
            for error in errors:
                await self._report(error, "on_guard_deny")
        else:
            await self._report(exc, "commit")

    async def _notify(self, changed: list[tuple[str, ...]]) -> None:
        state = StateView(self._state)
        for watched, callback in list(self._subscribers.values()):
            if touches(changed, watched):
                try:
                    result = callback(state)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    logger.exception("clp subscriber of %s failed", ".".join(watched))
                    await self._report(exc, "subscriber")

    async def _after(self, hook: str, **kwargs: Any) -> None:
        if self.hooks.has(hook):
            for error in await self.hooks.call_quietly(hook, **kwargs):
                await self._report(error, hook)

    def _record(self, entry: LogEntry) -> None:
        self._log.append(entry)
        if self._entry_hooks:
            self._unshipped.append(entry)

    async def _flush(self) -> None:
        """After the lock: give new log entries to ``on_log_entry`` and the logged failures
        of a lenient validation to ``on_error``.

        One flush at a time ships everything, so entries arrive in log order even when a hook
        awaits; a call made from inside a hook leaves its entries to the flush under way.
        """
        self._lenient.clear()  # failures of a call that logged nothing are dropped with it
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._unshipped or self._unreported:
                while self._unshipped:
                    await self._after("on_log_entry", entry=self._unshipped.pop(0))
                while self._unreported:
                    await self._report(*self._unreported.pop(0))
        finally:
            self._flushing = False

    async def _report(self, error: BaseException, phase: str) -> None:
        if isinstance(error, StorageError):
            phase = "storage"
        if self.hooks.has("on_error"):
            await self.hooks.call_quietly("on_error", error=error, phase=phase)


@attrs.define
class _CommitOutcome:
    """What one commit attempt learnt, for the log and the hooks called after the lock."""

    guard_outcomes: list[GuardOutcome] = attrs.field(factory=list)
    intent: Intent | None = None
    transition: str | None = None
    context: Context | None = None
    denied: Guard | None = None
    suggested: bool = False
    suggestion_error: BaseException | None = None
    changed: list[tuple[str, ...]] = attrs.field(factory=list)

    def reset(self) -> None:
        self.guard_outcomes, self.transition, self.changed = [], None, []


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def create_runtime(contract: Contract, ai_provider: Callable[[Intent], Any] | None = None, **options: Any) -> Runtime:
    """Build a :class:`Runtime`; see the options of :class:`Runtime`."""
    return Runtime(contract, ai_provider, **options)
