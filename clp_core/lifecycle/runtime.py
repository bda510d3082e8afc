"""The public runtime: dispatch -> (propose -> accept) -> guards -> transition -> commit.

Each lifecycle call is one :class:`~.phase.Phase`: the lock, then the work (checked by
:mod:`.intake`, committed by :mod:`.commit`, kept by :mod:`clp_core.persistence`), then,
after the lock, the deliveries of :mod:`.outbox`. This is the only place that changes state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from ..contract import Contract, compiled
from ..errors import (
    ClpError,
    ConfigError,
    ConflictError,
    EffectError,
    IncompleteIntentError,
    NoIntentError,
    NoMatchingIntentError,
    NoStagedProposalError,
    UnacceptedProposalError,
    UnknownIntentError,
)
from ..events import EventStore
from ..log import AuditLog, Intent, LogEntry, Proposal, commit_entry, dispatch_entry, now
from ..messages import Message
from ..persistence import DocumentPersistence, EventPersistence, Persistence, Records
from ..plugins import runtime_hooks
from ..resolve import resolve_event_store, resolve_storage
from ..state import Change, State, changed_paths, copy_value, lookup, parse_path, plain
from ..validation import build_validator, intent_json_schema
from . import commit
from .commit import CommitResult
from .courier import Courier, Handler
from .history import History
from .intake import AIProvider, Intake, providers_of
from .outbox import Outbox, Subscriber, Subscribers
from .phase import Phase


class Runtime(History):
    """A contract's runtime: the current intent, the staged proposal, state and log.

    Create it with :func:`create_runtime`.
    """

    def __init__(
        self,
        contract: Contract,
        ai_provider: AIProvider | Mapping[str, AIProvider] | None = None,
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
        intent_window: int = 32,
        max_conflict_retries: int = 100,
        handlers: Mapping[str, Handler] | None = None,
        delivery_attempts: int = 5,
    ) -> None:
        self.options = locals().copy()  # the keyword options, as given (a fork passes them on)
        del self.options["self"], self.options["contract"], self.options["ai_provider"]
        contract = compiled(contract)
        providers = providers_of(ai_provider, contract)
        if not isinstance(storage_key, str) or not storage_key:
            raise ConfigError("storage_key must be a non-empty string")
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ConfigError("snapshot_every must be a positive integer")
        if not isinstance(intent_window, int) or intent_window < 0:
            raise ConfigError("intent_window must be a non-negative integer")
        self.contract = contract
        self.ai_provider = ai_provider  # one provider, or a mapping of intent name to provider
        self.storage_key = storage_key
        self.config = dict(config or {})
        self.max_conflict_retries = max_conflict_retries
        self.validator = None if validation is None else build_validator(contract, validation)
        self._intake = Intake(contract, self.validator, bool((validation or {}).get("strict", True)))
        self.storage = resolve_storage(storage)
        self.event_store: EventStore | None = None if event_store is None else resolve_event_store(event_store)
        durable = storage is not None or event_store is not None
        self.persist_on_commit = durable if persist_on_commit is None else persist_on_commit
        self.hydrate_on_init = durable if hydrate_on_init is None else hydrate_on_init
        self._state: State = copy_value(dict(initial_state or {}))
        initial = plain(self._state)
        self.hooks = runtime_hooks(self.config, middleware)
        self._outbox = Outbox(self.hooks, AuditLog(log_limit))
        records = Records(idempotency_limit, window=intent_window)
        self._persistence: Persistence
        if self.event_store is not None:
            self._persistence = EventPersistence(
                self.event_store, storage_key, initial, snapshot_every=snapshot_every,
                records=records, report=self._outbox.defer_error)
        else:
            self._persistence = DocumentPersistence(
                self.storage, storage_key, initial, save_on_commit=self.persist_on_commit, records=records)
        self._unsure = False  # a save failed without saying whether it landed: re-read first
        self._courier = Courier(handlers or {}, self.hooks, self._outbox, attempts=delivery_attempts,
                                delivered=lambda ids: self._persistence.records.ack(ids),
                                failed=lambda *failure: self._persistence.records.failed(*failure))
        self._subscribers = Subscribers()
        self._hydrated = not self.hydrate_on_init
        self._intent: Intent | None = None
        self._staged: Proposal | None = None
        self._lock = asyncio.Lock()
        self._ship = self._shipment  # bound once: every phase hands it on
        for provider in providers:
            bind = getattr(provider, "bind", None)
            if callable(bind):  # a provider that wants the intents' JSON Schemas (clp-llm)
                bind(self)
        self.owns_resources = True  # close() closes storage and event store (a fork borrows its parent's)

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
        """Finish the deliveries under way (:meth:`drain`), let plugins flush (``on_close``),
        then close the storage adapter and event store."""
        if self._hydrated:
            await self.drain()
        if self.hooks.has("on_close"):
            await self.hooks.call_quietly("on_close")
        for resource in (self.storage, self.event_store) if self.owns_resources else ():
            close = getattr(resource, "close", None)
            if close is not None:
                await close()

    async def _ensure_hydrated(self) -> None:
        if not self._hydrated:
            self._state = await self._persistence.load()
            self._hydrated = True
            # messages of commits that landed before a crash or a restart: deliver them now
            self._courier.send(self._persistence.records.pending())

    async def drain(self) -> None:
        """Wait for the deliveries of emitted messages under way, then record them in storage
        (so that a restart does not deliver them again)."""
        await self._courier.drain()
        async with self._lock:
            if self._hydrated and self._persistence.records.unwritten():
                self._state = await self._persistence.settle(self._state)

    def pending_messages(self) -> list[Message]:
        """Emitted messages not yet delivered (or whose delivery failed), oldest first."""
        return self._persistence.records.pending()

    def _phase(self, name: str) -> Phase:
        return Phase(name, self._lock, None if self._hydrated else self._ensure_hydrated, self._ship, self._outbox)

    def _shipment(self) -> Awaitable[None] | None:
        """What the outbox has to ship (:meth:`.Outbox.flush`), or ``None``."""
        if self._intake.failures:
            self._intake.failures.clear()  # failures of a call that logged nothing are dropped with it
        outbox = self._outbox
        return outbox.flush() if outbox.entries or outbox.errors else None

    # -- reads -------------------------------------------------------------------------
    def get_state(self, path: str | None = None) -> Any:
        """The value at ``path`` (a dot path), or the whole state; containers are copies."""
        if path is None:
            return plain(self._state)
        return plain(lookup(self._state, parse_path(path)))

    def get_log(self) -> list[LogEntry]:
        """A copy of the in-memory audit log (the last ``log_limit`` entries)."""
        return self._outbox.log.snapshot()

    @property
    def current_intent(self) -> Intent | None:
        return self._intent

    @property
    def staged_proposal(self) -> Proposal | None:
        return self._staged

    def subscribe(self, path: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(state)`` after each commit that changed something at, under or
        above ``path``. Returns a function that unsubscribes."""
        if not callable(callback):
            parse_path(path)
            raise ConfigError("subscribe needs a callable callback")
        return self._subscribers.add(path, callback)

    def intent_schema(self, name: str) -> dict[str, Any]:
        """JSON Schema of an intent's payload (for an AI provider's structured output)."""
        compiled = self.contract.intent(name)
        if compiled is None:
            raise UnknownIntentError(name)
        if self.validator is not None:
            return self.validator.intent_schema(name)
        return intent_json_schema(compiled)

    # -- lifecycle -------------------------------------------------------------------
    async def dispatch(
        self, name: str, payload: Mapping[str, Any] | None = None, *, intent_id: str | None = None
    ) -> Intent:
        """Make ``name`` the current intent (replacing any earlier one and its proposal).

        ``intent_id`` (default: a new UUIDv7) identifies the intent: once it committed, a
        commit of an intent with the same id, by this process or after a restart, returns the
        recorded entry as a replay instead of applying it again.
        """
        async with self._phase("dispatch") as phase:
            intent = await self._dispatch(name, payload, phase, intent_id)
        return intent

    async def propose(self, name: str) -> dict[str, Any] | None:
        """Ask the AI provider for values; they are staged, never applied.

        Returns ``None`` when ``name`` is not the current intent or there is no provider.
        """
        async with self._phase("propose") as phase:
            intent = self._intent
            provider = self.ai_provider.get(name) if isinstance(self.ai_provider, Mapping) else self.ai_provider
            if intent is None or intent.name != name or provider is None:
                return None
            await self.hooks.call("before_propose", intent=intent)
            proposal, meta = await self._intake.proposal(provider, intent)
            self._staged = proposal
            self._outbox.record(self._entry(intent, "propose", staged_proposal=proposal.values,
                                            proposal_source=proposal.source, proposal_meta=meta))
            phase.then(self._outbox.owed, "after_propose", intent=intent, proposal=proposal)
        return plain(proposal.values)  # type: ignore[no-any-return]

    async def accept_proposal(
        self, name: str | None = None, *, edits: Mapping[str, Any] | None = None, by: str | None = None
    ) -> Intent:
        """Merge the staged proposal into the current intent's payload (``name`` defaults to
        the current intent).

        ``edits`` changes values before accepting (a human correcting the AI): they must be
        declared inputs of the intent and fit their types, and the commit guards them like any
        payload. The log entry records the proposal as staged, the edits and ``by`` whom.
        """
        async with self._phase("accept"):
            intent, staged = self._current(name, "accept")
            detail = None
            if edits:
                staged = self._intake.edited(intent, staged, edits, by)
                detail = {"edits": dict(edits), "edited_by": by or "user"}
            accepted = self._intake.accepted(intent, staged)
            self._intent, self._staged = accepted, None
            self._outbox.record(self._entry(accepted, "accept", accepted_proposal=staged.values,
                                            proposal_source=staged.source, detail=detail))
        return accepted

    async def reject_proposal(self, name: str | None = None) -> Intent:
        """Discard the staged proposal (logged); the intent stays current."""
        async with self._phase("reject"):
            intent, staged = self._current(name, "reject")
            self._staged = None
            self._outbox.record(self._entry(intent, "reject", staged_proposal=staged.values,
                                            proposal_source=staged.source))
        return intent

    async def commit(self, transition: str | None = None) -> LogEntry:
        """Run guards, pick the transition, apply its effects, persist; returns the entry."""
        async with self._phase("commit") as phase:
            entry = await self._commit(transition, phase)
        return entry

    async def execute(
        self, name: str, payload: Mapping[str, Any] | None = None, transition: str | None = None,
        *, intent_id: str | None = None,
    ) -> LogEntry:
        """``dispatch`` + ``commit`` as one atomic step; retried with the same ``intent_id``
        after a failure, it commits at most once."""
        async with self._phase("dispatch") as phase:
            await self._dispatch(name, payload, phase, intent_id)
            phase.name = "commit"
            entry = await self._commit(transition, phase)
        return entry

    # -- phases (called with the lock held) ---------------------------------------------
    def _entry(self, intent: Intent | None, phase: str, **fields: Any) -> LogEntry:
        return self._outbox.entry(intent, phase, self._intake.take_failures(), **fields)

    def _noted(self, entry: LogEntry) -> LogEntry:
        """``entry`` with the failures of a lenient validator (call it when there are some)."""
        return self._outbox.noted(entry, self._intake.take_failures())

    def _current(self, name: str | None, action: str) -> tuple[Intent, Proposal]:
        if self._intent is None or (name is not None and self._intent.name != name):
            raise NoMatchingIntentError()
        if self._staged is None:
            raise NoStagedProposalError(action)
        return self._intent, self._staged

    async def _dispatch(
        self, name: str, payload: Mapping[str, Any] | None, phase: Phase, intent_id: str | None = None
    ) -> Intent:
        intent = self._intake.intent(name, payload, intent_id)
        if "before_dispatch" in self.hooks.pm.implemented:
            await self.hooks.call("before_dispatch", intent=intent)
        self._intent, self._staged = intent, None
        entry = dispatch_entry(intent)
        if self._intake.failures:
            entry = self._noted(entry)
        self._outbox.record(entry)
        if "after_dispatch" in self.hooks.pm.implemented:
            phase.then(self._outbox.owed, "after_dispatch", intent=intent, entry=entry)
        return intent

    async def _commit(self, name: str | None, phase: Phase) -> LogEntry:
        intent = self._intent
        result: CommitResult | None = None
        try:
            if intent is None:
                raise NoIntentError()
            if self._staged is not None:
                raise UnacceptedProposalError()
            if not intent.complete:
                raise IncompleteIntentError()
            if "before_commit" in self.hooks.pm.implemented:
                await self.hooks.call("before_commit", intent=intent)
            if self._unsure:  # the last save may have landed: see what storage holds
                self._state = await self._persistence.refresh(self._state)
                self._unsure = False
            tries = 1
            while True:
                result = await commit.attempt(self.contract, self._intake, self._state, intent, name,
                                              self._persistence.records, self.storage_key)
                try:
                    return await self._keep(intent, result, phase)
                except ConflictError as conflict:
                    if tries > self.max_conflict_retries:
                        raise ConflictError.exhausted(tries, conflict) from conflict
                    # full jitter, exponential up to 128 ms, so a loser does not keep losing
                    await asyncio.sleep(random.uniform(0, 0.001 * 2 ** min(tries - 1, 7)))
                    self._state = await self._persistence.refresh(self._state)
                    tries += 1
        except ClpError as exc:
            phase.on_failure = lambda error: self._outbox.refused(result, error, self._intent, self._staged)
            staged = self._staged if result is not None and result.suggestion is not None else None
            self._outbox.record(self._entry(
                intent, "commit", guard_outcomes=result.guard_outcomes if result else (),
                transition_attempted=result.transition if result else None,
                staged_proposal=staged.values if staged else None, proposal_source=staged.source if staged else None,
                error=str(exc)))
            raise

    async def _keep(self, intent: Intent, result: CommitResult, phase: Phase) -> LogEntry:
        """Persist a successful attempt (rolled back if that fails), or log a replay."""
        if result.error is not None:
            if result.suggestion is not None:
                self._staged = result.suggestion
            raise result.error
        if result.replayed is not None:
            entry = attrs.evolve(result.replayed, replay=True, timestamp=now())
            # a commit that landed although its save failed: its messages are still owed
            owed = [m for m in self._persistence.records.pending() if m.intent_id == intent.id]
            if owed:
                phase.then(self._send, owed)
        else:
            assert result.undo is not None
            entry = commit_entry(intent, result.guard_outcomes, result.transition, result.changes,
                                 result.idempotency_key)
            if self._intake.failures:
                entry = self._noted(entry)
            try:
                await self._persistence.save(self._state, entry, result.messages)
            except BaseException as exc:
                result.undo.rollback()
                if not isinstance(exc, ConflictError) and getattr(exc, "outcome", "unknown") != "not_applied":
                    self._unsure = True
                if isinstance(exc, ClpError) or not isinstance(exc, Exception):
                    raise
                raise EffectError(f"saving the commit of {result.transition} failed: {type(exc).__name__}: {exc}",
                                  where=str(result.transition)) from exc
            if result.changes and self._subscribers.callbacks:
                phase.then(self._notify, result.changes)
            if result.messages:
                phase.then(self._send, result.messages)
        self._intent = self._staged = None
        self._outbox.record(entry)
        if "after_commit" in self.hooks.pm.implemented:
            phase.then(self._outbox.owed, "after_commit", intent=intent, entry=entry)
        return entry

    def _send(self, messages: Sequence[Message]) -> None:
        # eager, so the deliveries start now: with a storage that never suspends (memory) or a
        # caller that commits back to back, they would otherwise wait, and every save would
        # write the whole growing outbox again
        self._courier.send(messages, eager=True)

    def _notify(self, changes: Sequence[Change]) -> Awaitable[None]:
        return self._subscribers.notify(changed_paths(changes), self._state, self._outbox)


def create_runtime(
    contract: Contract, ai_provider: AIProvider | Mapping[str, AIProvider] | None = None, **options: Any
) -> Runtime:
    """Build a :class:`Runtime`; see the options of :class:`Runtime`."""
    return Runtime(contract, ai_provider, **options)
