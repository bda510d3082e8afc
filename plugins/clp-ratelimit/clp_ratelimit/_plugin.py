"""The rate-limiting plugin: rules, storage and the ``before_dispatch`` check."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from limits import RateLimitItem, parse_many
from limits.aio import storage as aio_storage
from limits.aio import strategies

from clp_core import hookimpl
from clp_core.plugin_api import ClpError, ConfigError, Intent

logger = logging.getLogger("clp.ratelimit")

ANY_INTENT = "*"

STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}

KeyFunction = Callable[[Intent], Any]


class RateLimitedError(ClpError):
    """A dispatch was refused because a rate limit is used up; nothing changed.

    ``intent`` is the refused intent's name, ``limit`` the rule that refused it (``"10 per 1
    second"``), ``scope`` the intent name the rule is set for (or ``"*"``), ``key`` the per-key
    value (or ``None``) and ``retry_after`` the seconds until the window has room again, when
    the storage can tell.
    """

    def __init__(
        self,
        intent: str,
        limit: str,
        *,
        scope: str | None = None,
        key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = f"Rate limit {limit} exceeded for {intent}"
        if key is not None:
            message += f" (key {key!r})"
        if retry_after is not None:
            message += f"; retry after {retry_after:.3f} s"
        super().__init__(message)
        self.intent = intent
        self.limit = limit
        self.scope = scope if scope is not None else intent
        self.key = key
        self.retry_after = retry_after


@attrs.frozen
class Rule:
    """One limit on one scope (an intent name, or ``"*"`` for every intent)."""

    scope: str
    item: RateLimitItem
    text: str


def parse_rules(limits: Mapping[str, str | Sequence[str]] | None) -> dict[str, tuple[Rule, ...]]:
    """``{"increment": "10/second; 100/hour", "*": "1000/day"}`` -> rules per scope."""
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise ConfigError("clp-ratelimit: 'limits' must map intent names (or '*') to limit strings")
    rules: dict[str, tuple[Rule, ...]] = {}
    for scope, spec in limits.items():
        if not isinstance(scope, str) or not scope:
            raise ConfigError(f"clp-ratelimit: limit names must be intent names or '*', got {scope!r}")
        texts = [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, Sequence) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ConfigError(f"clp-ratelimit: limit of {scope!r} must be a string like '10/second', got {spec!r}")
        items: list[Rule] = []
        for text in texts:
            try:
                parsed = parse_many(text)
            except ValueError as exc:
                raise ConfigError(f"clp-ratelimit: limit of {scope!r}: {exc}") from exc
            items.extend(Rule(scope, item, str(item)) for item in parsed)
        rules[scope] = tuple(items)
    return rules


def make_storage(url: str, key_prefix: str, timeout: float = 1.0) -> tuple[aio_storage.Storage, Any]:
    """A :mod:`limits.aio` storage for ``url`` and, for Redis, the connection pool to close.

    ``memory://`` counts in this process; ``redis://`` / ``rediss://`` (or limits' own
    ``async+redis://``) count in Redis through ``redis.asyncio``.
    """
    scheme = urllib.parse.urlsplit(url).scheme.removeprefix("async+")
    if scheme == "memory":
        return aio_storage.MemoryStorage(), None
    if scheme in ("redis", "rediss"):
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("clp-ratelimit: Redis storage needs redis: pip install 'clp-ratelimit[redis]'") from exc
        plain_url = url.removeprefix("async+")
        pool = aioredis.ConnectionPool.from_url(plain_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        options: dict[str, Any] = {"connection_pool": pool}  # documented by limits, typed narrower
        store = aio_storage.RedisStorage("async+" + plain_url, implementation="redispy", key_prefix=key_prefix,
                                         **options)
        return store, pool
    raise ConfigError(f"clp-ratelimit: unsupported storage {url!r} (use memory:// or redis://host:port/db)")


class RateLimitPlugin:
    """Refuse dispatches beyond ``limits`` (raises :class:`RateLimitedError`).

    - ``limits``: ``{intent name: "N/period"}``; ``"*"`` is one budget that every dispatch
      counts against, on top of its intent's own limit. Several limits per name may be given
      as a list or separated by ``;`` (``"10/second; 100/minute"``). No limits: a no-op.
    - ``key``: budgets per key, a payload field name (``"user_id"``) or a function of the
      intent; a missing value counts against one shared "no key" budget.
    - ``storage``: ``"memory://"`` (default; the budget lives in this instance) or a Redis URL
      (``"redis://127.0.0.1:6379/0"``), or a :mod:`limits.aio` storage instance.
    - ``strategy``: ``"moving-window"`` (default, exact), ``"fixed-window"`` or
      ``"sliding-window-counter"``.
    - ``key_prefix``: namespace of the counters (Redis keys start with it), so applications
      sharing a Redis do not share budgets by accident.
    - ``fail_open``: when the storage fails, let dispatches through (logged) instead of
      refusing them (the default refuses: the caller gets a ``HookError``).
    - ``redis_timeout``: seconds to wait for Redis (connect and each command).
    """

    name = "clp-ratelimit"

    def __init__(
        self,
        limits: Mapping[str, str | Sequence[str]] | None = None,
        *,
        key: str | KeyFunction | None = None,
        storage: str | aio_storage.Storage = "memory://",
        strategy: str = "moving-window",
        key_prefix: str = "clp-ratelimit",
        fail_open: bool = False,
        redis_timeout: float = 1.0,
    ) -> None:
        self.rules = parse_rules(limits)
        if key is not None and not isinstance(key, str) and not callable(key):
            raise ConfigError("clp-ratelimit: 'key' must be a payload field name or a function of the intent")
        if strategy not in STRATEGIES:
            raise ConfigError(f"clp-ratelimit: unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ConfigError("clp-ratelimit: 'key_prefix' must be a non-empty string")
        self.key = key
        self.key_prefix = key_prefix
        self.strategy = strategy
        self.fail_open = bool(fail_open)
        if isinstance(redis_timeout, bool) or not isinstance(redis_timeout, (int, float)) or not redis_timeout > 0:
            raise ConfigError("clp-ratelimit: 'redis_timeout' must be a positive number of seconds")
        self.redis_timeout = float(redis_timeout)
        self._pool: Any = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.storage: aio_storage.Storage | None
        if isinstance(storage, str):
            self.storage, self._pool = (make_storage(storage, key_prefix, self.redis_timeout) if self.rules
                                        else (None, None))
            self._url = storage
        elif isinstance(storage, aio_storage.Storage):
            self.storage = storage
        else:
            raise ConfigError("clp-ratelimit: 'storage' must be a URL or a limits.aio storage")
        self.limiter = STRATEGIES[strategy](self.storage) if self.storage is not None else None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RateLimitPlugin:
        """Build from a configuration table, rejecting unknown options by name."""
        known = {"limits", "key", "storage", "strategy", "key_prefix", "fail_open", "redis_timeout"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"clp-ratelimit: unknown options {unknown} (expected {sorted(known)})")
        return cls(**dict(options))

    # -- the hook --------------------------------------------------------------------------
    @hookimpl
    async def before_dispatch(self, intent: Intent) -> None:
        """Count the dispatch against its limits; raise :class:`RateLimitedError` if over."""
        if self.limiter is None:
            return
        rules = self.rules.get(intent.name, ()) + (self.rules.get(ANY_INTENT, ()) if intent.name != ANY_INTENT else ())
        if not rules:
            return
        if self._pool is not None:
            self._bind_to_loop()
        key = self.key_of(intent)
        checks = [(rule, self._identifiers(rule, key)) for rule in rules]
        try:
            if len(checks) > 1:  # all must have room before any is consumed
                for rule, ids in checks:
                    if not await self.limiter.test(rule.item, *ids):
                        raise await self._refusal(intent, rule, ids, key)
            for rule, ids in checks:
                if not await self.limiter.hit(rule.item, *ids):
                    raise await self._refusal(intent, rule, ids, key)
        except RateLimitedError:
            raise
        except Exception:
            if not self.fail_open:
                raise
            logger.warning("clp-ratelimit: storage failed; letting %s through (fail_open)", intent.name, exc_info=True)

    @hookimpl
    async def on_close(self) -> None:
        """Release Redis connections (they are opened again if the plugin is used again)."""
        if self._pool is not None and self._loop in (None, asyncio.get_running_loop()):
            await self._pool.disconnect()

    # -- helpers ---------------------------------------------------------------------------
    def _bind_to_loop(self) -> None:
        """Redis connections belong to the event loop that opened them: on another loop,
        start a new connection pool (the counters are in Redis, nothing is lost)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop and self._url is not None:
            self.storage, self._pool = make_storage(self._url, self.key_prefix, self.redis_timeout)
            self.limiter = STRATEGIES[self.strategy](self.storage)
            self._loop = loop

    def key_of(self, intent: Intent) -> str | None:
        """The per-key value of ``intent`` (``None`` without ``key``; ``""`` when missing)."""
        if self.key is None:
            return None
        value = intent.payload.get(self.key) if isinstance(self.key, str) else self.key(intent)
        return "" if value is None else str(value)

    def _identifiers(self, rule: Rule, key: str | None) -> tuple[str, ...]:
        ids = (self.key_prefix, rule.scope)
        return ids if key is None else (*ids, key)

    async def _refusal(self, intent: Intent, rule: Rule, ids: tuple[str, ...], key: str | None) -> RateLimitedError:
        retry_after: float | None = None
        try:
            assert self.limiter is not None
            stats = await self.limiter.get_window_stats(rule.item, *ids)
            retry_after = max(0.0, stats.reset_time - time.time())
        except Exception:  # the refusal stands without a retry hint
            logger.debug("clp-ratelimit: no window stats for %s", rule.text, exc_info=True)
        return RateLimitedError(intent.name, rule.text, scope=rule.scope, key=key, retry_after=retry_after)

    async def remaining(self, intent: str, key: str | None = None) -> dict[str, int]:
        """What is left of each limit that applies to ``intent`` (for dashboards and tests)."""
        if self.limiter is None:
            return {}
        if self._pool is not None:
            self._bind_to_loop()
        rules = self.rules.get(intent, ()) + (self.rules.get(ANY_INTENT, ()) if intent != ANY_INTENT else ())
        left = {}
        for rule in rules:
            stats = await self.limiter.get_window_stats(rule.item, *self._identifiers(rule, key))
            left[f"{rule.scope}: {rule.text}"] = stats.remaining
        return left

    def __repr__(self) -> str:
        limits = {scope: [r.text for r in rules] for scope, rules in self.rules.items()}
        return f"RateLimitPlugin(limits={limits!r}, strategy={self.strategy!r}, key_prefix={self.key_prefix!r})"
