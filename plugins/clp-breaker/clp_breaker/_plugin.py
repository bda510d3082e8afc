"""The circuit-breaker plugin, driving :pypi:`purgatory`'s circuit state machine from hooks.

A circuit is usually wrapped around one call. Here the call is split across hooks: the
``before_*`` hook is the request (refused while the circuit is open), ``on_error`` with a
matching phase is a failure, and the ``after_*`` hook is a success. purgatory's ``Context``
exposes those three steps (``handle_new_request``, ``handle_exception``,
``handle_end_request``) and persists each change through its unit of work, in memory or in
Redis (``redis.asyncio``), so it fits without wrapping the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import attrs
from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork, AsyncRedisUnitOfWork
from purgatory.domain.model import OpenedState
from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker
from purgatory.service._async.repository import AsyncRedisRepository

from clp_core import hookimpl
from clp_core.plugin_api import (
    ClpError,
    ConfigError,
    ConflictError,
    CorruptStateError,
    EffectError,
    Intent,
    LogEntry,
    Proposal,
    ProposalError,
    StorageError,
)

logger = logging.getLogger("clp.breaker")

#: The circuits and the ``on_error`` phases whose failures count against each.
CIRCUIT_PHASES: dict[str, tuple[str, ...]] = {
    "provider": ("propose",),
    "commit": ("commit", "storage"),
}
_PHASE_CIRCUIT = {phase: circuit for circuit, phases in CIRCUIT_PHASES.items() for phase in phases}
_STATE_NAMES = {"closed": "closed", "opened": "open", "half-opened": "half-open"}

FailureFilter = Callable[[BaseException, str], bool]


class CircuitOpenError(ClpError):
    """A call was refused because its circuit is open; nothing changed.

    ``circuit`` is ``"provider"`` (AI provider calls, refused from ``before_propose``) or
    ``"commit"`` (effects and storage, refused from ``before_commit``); ``remaining`` is the
    cool-down left, in seconds, before a trial call is let through.
    """

    def __init__(self, circuit: str, remaining: float) -> None:
        super().__init__(f"Circuit {circuit} is open; retry in {remaining:.3f} s")
        self.circuit = circuit
        self.remaining = remaining


def default_is_failure(error: BaseException, phase: str) -> bool:
    """The default test of what counts against a circuit.

    - ``propose``: the AI provider raised or timed out (a :class:`ProposalError` caused by
      an exception). An invalid proposal is the model's answer, not an outage.
    - ``commit``: an effect raised or timed out (:class:`EffectError`). Guard denials never
      reach ``on_error``; lifecycle mistakes (no intent, ambiguous transition...) and other
      plugins' refusals do not count.
    - ``storage``: the storage backend failed (:class:`StorageError`), except version
      conflicts (normal under concurrency) and corrupt data.
    """
    if isinstance(error, CircuitOpenError):
        return False
    if phase == "propose":
        return isinstance(error, ProposalError) and error.__cause__ is not None
    if phase == "commit":
        return isinstance(error, EffectError)
    if phase == "storage":
        return isinstance(error, StorageError) and not isinstance(error, (ConflictError, CorruptStateError))
    return False


@attrs.frozen
class CircuitSettings:
    fail_max: int
    reset_timeout: float


def _settings(name: str, fail_max: Any, reset_timeout: Any) -> CircuitSettings:
    if isinstance(fail_max, bool) or not isinstance(fail_max, int) or fail_max < 1:
        raise ConfigError(f"clp-breaker: fail_max of circuit {name!r} must be a positive integer, got {fail_max!r}")
    if isinstance(reset_timeout, bool) or not isinstance(reset_timeout, (int, float)) or not reset_timeout > 0:
        raise ConfigError(f"clp-breaker: reset_timeout of circuit {name!r} must be a positive number of seconds")
    return CircuitSettings(fail_max, float(reset_timeout))


def parse_circuits(
    fail_max: int | None,
    reset_timeout: float,
    circuits: Iterable[str] | Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, CircuitSettings]:
    """The active circuits. Nothing configured: none (the plugin is a no-op)."""
    if circuits is None:
        names: dict[str, Mapping[str, Any]] = {name: {} for name in CIRCUIT_PHASES} if fail_max is not None else {}
    elif isinstance(circuits, Mapping):
        names = {}
        for name, options in circuits.items():
            if not isinstance(options, Mapping):
                raise ConfigError(f"clp-breaker: options of circuit {name!r} must be a table")
            unknown = set(options) - {"fail_max", "reset_timeout"}
            if unknown:
                raise ConfigError(f"clp-breaker: unknown options {sorted(unknown)} for circuit {name!r}")
            names[name] = options
    elif isinstance(circuits, str) or not isinstance(circuits, Iterable):
        raise ConfigError("clp-breaker: 'circuits' must be a list of circuit names or a table per circuit")
    else:
        names = {name: {} for name in circuits}
    active = {}
    for name, options in names.items():
        if name not in CIRCUIT_PHASES:
            raise ConfigError(f"clp-breaker: unknown circuit {name!r} (one of {', '.join(CIRCUIT_PHASES)})")
        limit = options.get("fail_max", fail_max)
        if limit is None:
            raise ConfigError(f"clp-breaker: circuit {name!r} needs fail_max")
        active[name] = _settings(name, limit, options.get("reset_timeout", reset_timeout))
    return active


class BreakerPlugin:
    """Open a circuit after ``fail_max`` consecutive failures; refuse fast while it is open.

    - ``fail_max``: failures in a row that open a circuit. Without it (and without
      ``circuits``) the plugin is a no-op.
    - ``reset_timeout``: the cool-down, in seconds, after which the circuit half-opens and
      lets calls through as trials: the first success closes it, a failure opens it again.
    - ``circuits``: which circuits to run, ``["provider", "commit"]`` by default, or a table
      ``{"provider": {"fail_max": 3, "reset_timeout": 10}}`` with settings per circuit.
    - ``storage``: ``"memory://"`` (default: the state lives in this instance) or a Redis URL,
      so that every process using the same URL and ``namespace`` shares the circuits.
    - ``namespace``: prefix of the Redis keys (``<namespace>:<circuit>``).
    - ``is_failure``: ``(error, phase) -> bool``, what counts as a failure (see
      :func:`default_is_failure`, the default).
    - ``fail_open``: when the circuit storage itself fails, let calls through (logged; the
      default) rather than refuse them.
    - ``redis_timeout``: seconds to wait for Redis (connect and each command).
    """

    name = "clp-breaker"

    def __init__(
        self,
        fail_max: int | None = None,
        reset_timeout: float = 30.0,
        *,
        circuits: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
        storage: str = "memory://",
        namespace: str = "clp-breaker",
        is_failure: FailureFilter = default_is_failure,
        fail_open: bool = True,
        redis_timeout: float = 1.0,
    ) -> None:
        self.circuits = parse_circuits(fail_max, reset_timeout, circuits)
        if not isinstance(namespace, str) or not namespace:
            raise ConfigError("clp-breaker: 'namespace' must be a non-empty string")
        if not callable(is_failure):
            raise ConfigError("clp-breaker: 'is_failure' must be a function (error, phase) -> bool")
        scheme = urllib.parse.urlsplit(storage).scheme if isinstance(storage, str) else None
        if scheme not in ("memory", "redis", "rediss", "unix"):
            raise ConfigError(f"clp-breaker: unsupported storage {storage!r} (use memory:// or redis://host:port/db)")
        if scheme != "memory":
            try:
                import redis.asyncio  # noqa: F401
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ConfigError("clp-breaker: Redis storage needs redis: pip install 'clp-breaker[redis]'") from exc
        self.storage = storage
        self.namespace = namespace
        self.is_failure = is_failure
        self.fail_open = bool(fail_open)
        if isinstance(redis_timeout, bool) or not isinstance(redis_timeout, (int, float)) or not redis_timeout > 0:
            raise ConfigError("clp-breaker: 'redis_timeout' must be a positive number of seconds")
        self.redis_timeout = float(redis_timeout)
        self._redis = scheme != "memory"
        self._loop: asyncio.AbstractEventLoop | None = None
        # in memory, the state lives in the factory for the instance's whole life
        self._factory: AsyncCircuitBreakerFactory | None = (
            None if self._redis else AsyncCircuitBreakerFactory(uow=AsyncInMemoryUnitOfWork()))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BreakerPlugin:
        """Build from a configuration table, rejecting unknown options by name."""
        known = {"fail_max", "reset_timeout", "circuits", "storage", "namespace", "is_failure", "fail_open",
                 "redis_timeout"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"clp-breaker: unknown options {unknown} (expected {sorted(known)})")
        return cls(**dict(options))

    # -- hooks -----------------------------------------------------------------------------
    @hookimpl
    async def before_propose(self, intent: Intent) -> None:
        """Refuse to ask the AI provider while the ``provider`` circuit is open."""
        await self._request("provider")

    @hookimpl
    async def after_propose(self, intent: Intent, proposal: Proposal) -> None:
        """The provider answered: a success (guard suggestions are not provider calls)."""
        if proposal.source == "ai":
            await self._record("provider", None)

    @hookimpl
    async def before_commit(self, intent: Intent) -> None:
        """Refuse to run effects and write storage while the ``commit`` circuit is open."""
        await self._request("commit")

    @hookimpl
    async def after_commit(self, intent: Intent, entry: LogEntry) -> None:
        """A commit ran its effects and persisted: a success (a replay, answered from its
        idempotency record, exercised neither and is not counted)."""
        if not entry.replay:
            await self._record("commit", None)

    @hookimpl
    async def on_error(self, error: BaseException, phase: str) -> None:
        circuit = _PHASE_CIRCUIT.get(phase)
        if circuit is not None and circuit in self.circuits and self.is_failure(error, phase):
            await self._record(circuit, error)

    @hookimpl
    async def on_close(self) -> None:
        """Close the Redis connection (opened again if the plugin is used again)."""
        if self._redis and self._factory is not None:
            factory, self._factory = self._factory, None
            await _close_redis(factory)

    # -- reading ----------------------------------------------------------------------------
    async def state(self, circuit: str) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``. An open circuit whose cool-down is over
        still reads ``"open"`` until the next call moves it to half-open."""
        breaker = await self._breaker(circuit)
        return _STATE_NAMES[breaker.context.state]

    async def failure_count(self, circuit: str) -> int:
        """Failures in a row counted so far on a closed ``circuit``."""
        breaker = await self._breaker(circuit)
        return breaker.context.failure_count or 0

    # -- purgatory ---------------------------------------------------------------------------
    async def _get_factory(self) -> AsyncCircuitBreakerFactory:
        loop = asyncio.get_running_loop()
        if self._factory is not None and self._redis and self._loop is not loop:
            self._factory = None  # Redis connections belong to the loop that opened them
        if self._factory is None:
            import redis.asyncio as aioredis

            uow = AsyncRedisUnitOfWork(self.storage)
            repository = cast(AsyncRedisRepository, uow.contexts)
            repository.prefix = f"{self.namespace}:"
            # a hung Redis must not hang commits: bounded waits (purgatory sets none)
            repository.redis = aioredis.from_url(self.storage, socket_timeout=self.redis_timeout,
                                                 socket_connect_timeout=self.redis_timeout)
            factory = AsyncCircuitBreakerFactory(uow=uow)
            await factory.initialize()
            if self._factory is None:  # another task may have finished first
                self._factory, self._loop = factory, loop
            else:
                await _close_redis(factory)
        return self._factory

    async def _breaker(self, circuit: str) -> AsyncCircuitBreaker:
        settings = self.circuits.get(circuit)
        if settings is None:
            raise ConfigError(f"clp-breaker: circuit {circuit!r} is not active (active: {sorted(self.circuits)})")
        factory = await self._get_factory()
        breaker = await factory.get_breaker(circuit, settings.fail_max, settings.reset_timeout)
        # the configured settings win over what an earlier configuration stored
        breaker.context.threshold = settings.fail_max
        breaker.context.ttl = settings.reset_timeout
        return breaker

    @staticmethod
    async def _publish(breaker: AsyncCircuitBreaker) -> None:
        """Persist the changes the state machine recorded (purgatory's message bus)."""
        while breaker.context.messages:
            await breaker.messagebus.handle(breaker.context.messages.pop(0), breaker.uow)

    async def _request(self, circuit: str) -> None:
        settings = self.circuits.get(circuit)
        if settings is None:
            return
        try:
            breaker = await self._breaker(circuit)
            try:
                breaker.context.handle_new_request()
            finally:
                await self._publish(breaker)
        except OpenedState as opened:
            remaining = opened.opened_at + settings.reset_timeout - time.time()
            raise CircuitOpenError(circuit, max(0.0, remaining)) from None
        except Exception:
            if not self.fail_open:
                raise
            logger.warning("clp-breaker: circuit %s could not be read; letting the call through", circuit,
                           exc_info=True)

    async def _record(self, circuit: str, error: BaseException | None) -> None:
        if circuit not in self.circuits:
            return
        try:
            breaker = await self._breaker(circuit)
            if error is None:
                breaker.context.handle_end_request()
            else:
                breaker.context.handle_exception(error)
            await self._publish(breaker)
        except Exception:
            logger.warning("clp-breaker: could not record the %s of circuit %s",
                           "success" if error is None else "failure", circuit, exc_info=True)

    def __repr__(self) -> str:
        circuits = {name: (s.fail_max, s.reset_timeout) for name, s in self.circuits.items()}
        return f"BreakerPlugin(circuits={circuits!r}, storage={self.storage!r}, namespace={self.namespace!r})"


async def _close_redis(factory: AsyncCircuitBreakerFactory) -> None:
    client = getattr(getattr(factory.uow, "contexts", None), "redis", None)
    close = getattr(client, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            logger.debug("clp-breaker: closing the Redis connection failed", exc_info=True)
