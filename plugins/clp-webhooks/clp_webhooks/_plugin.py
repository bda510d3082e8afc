"""The webhook plugin: hooks enqueue events; a background worker POSTs them.

A hook only builds a small dict and puts it on a bounded :class:`asyncio.Queue` (never
waits): a slow or dead endpoint cannot slow commits down. Worker tasks take events off the
queue, sign the JSON body (HMAC-SHA256) and POST it to every URL with :mod:`httpx`, retrying
transport errors, 5xx and 429 answers with exponential backoff (:mod:`tenacity`). An event
that does not fit in the queue is dropped, and one that still fails after its retries is
given up; both are logged and counted in :attr:`WebhookPlugin.stats`, and neither ever
touches the commit, which has already happened.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from clp_core import hookimpl
from clp_core.plugin_api import ConfigError, Context, Guard, Intent, LogEntry, Proposal, entry_to_dict, now, plain

logger = logging.getLogger("clp.webhooks")

#: The events a webhook can carry (hook names).
EVENTS = ("after_dispatch", "after_propose", "after_commit", "on_guard_deny", "on_error")
DEFAULT_EVENTS = ("after_commit", "on_guard_deny", "on_error")

SIGNATURE_HEADER = "X-CLP-Signature"
EVENT_HEADER = "X-CLP-Event"
DELIVERY_HEADER = "X-CLP-Delivery"


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-CLP-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (the header value) signs ``body``; compares in constant time."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


@attrs.define
class WebhookStats:
    """Counters of one plugin instance (cumulative)."""

    queued: int = 0  # events put on the queue
    delivered: int = 0  # (event, URL) deliveries answered with 2xx
    failed: int = 0  # (event, URL) deliveries given up after retries (or a 4xx answer)
    retries: int = 0  # extra attempts made
    dropped: int = 0  # events refused because the queue was full
    abandoned: int = 0  # events still queued or in flight when on_close's flush timed out


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, _RetryableStatus))


def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _intent(intent: Intent | None) -> dict[str, Any] | None:
    if intent is None:
        return None
    return {"name": intent.name, "payload": plain(intent.payload), "complete": intent.complete}


class WebhookPlugin:
    """POST chosen lifecycle events as signed JSON to ``urls``.

    - ``url`` / ``urls``: where to POST (one URL or a list). None: the plugin is a no-op.
    - ``events``: which hooks to send, among ``after_dispatch``, ``after_propose``,
      ``after_commit``, ``on_guard_deny`` and ``on_error`` (default: commits, denials, errors).
    - ``intents``: only events of these intent names (default: all).
    - ``secret``: HMAC-SHA256 key; each request carries ``X-CLP-Signature: sha256=<hex>`` of
      its exact body. Without a secret no signature is sent.
    - ``timeout``: seconds per request (connect, read, write); ``max_attempts`` tries per URL;
      ``backoff`` the first wait between tries, doubling up to ``max_backoff``.
    - ``queue_size``: events waiting at most; more are dropped (logged, counted).
    - ``workers``: concurrent deliveries (1 keeps events in order).
    - ``flush_timeout``: how long ``on_close`` waits for the queue to drain.
    - ``headers``: extra request headers; ``source``: a label copied into every body.
    """

    name = "clp-webhooks"

    def __init__(
        self,
        url: str | None = None,
        *,
        urls: Sequence[str] | None = None,
        events: Iterable[str] = DEFAULT_EVENTS,
        intents: Iterable[str] | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        queue_size: int = 1000,
        workers: int = 1,
        flush_timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        source: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        targets = ([url] if url is not None else []) + list(urls or [])
        for target in targets:
            if not isinstance(target, str) or not target.startswith(("http://", "https://")):
                raise ConfigError(f"clp-webhooks: URL must be http:// or https://, got {target!r}")
        events = (events,) if isinstance(events, str) else tuple(events)
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise ConfigError(f"clp-webhooks: unknown events {unknown} (choose from {', '.join(EVENTS)})")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ConfigError("clp-webhooks: 'secret' must be a non-empty string")
        for option, value, low in (("timeout", timeout, 0), ("backoff", backoff, -1), ("max_backoff", max_backoff, -1),
                                   ("flush_timeout", flush_timeout, -1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
                raise ConfigError(f"clp-webhooks: '{option}' must be a {'positive' if low == 0 else 'non-negative'} "
                                  f"number of seconds, got {value!r}")
        for option, count in (("max_attempts", max_attempts), ("queue_size", queue_size), ("workers", workers)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"clp-webhooks: '{option}' must be a positive integer, got {count!r}")
        self.urls = tuple(targets)
        self.events = frozenset(events) if self.urls else frozenset()
        self.intents = None if intents is None else frozenset((intents,) if isinstance(intents, str) else intents)
        self.secret = secret
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.queue_size = queue_size
        self.workers = workers
        self.flush_timeout = float(flush_timeout)
        self.headers = dict(headers or {})
        self.source = source
        self.transport = transport
        self.stats = WebhookStats()
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WebhookPlugin:
        """Build from a configuration table, rejecting unknown options by name."""
        known = {"url", "urls", "events", "intents", "secret", "timeout", "max_attempts", "backoff", "max_backoff",
                 "queue_size", "workers", "flush_timeout", "headers", "source", "transport"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"clp-webhooks: unknown options {unknown} (expected {sorted(known)})")
        return cls(**dict(options))

    # -- hooks (each only enqueues) -----------------------------------------------------------
    @hookimpl
    def after_dispatch(self, intent: Intent, entry: LogEntry) -> None:
        if "after_dispatch" in self.events and self._wanted(intent):
            self._enqueue("after_dispatch", {"intent": _intent(intent), "entry": entry_to_dict(entry)})

    @hookimpl
    def after_propose(self, intent: Intent, proposal: Proposal) -> None:
        if "after_propose" in self.events and self._wanted(intent):
            self._enqueue("after_propose", {"intent": _intent(intent),
                                            "proposal": {"values": plain(proposal.values), "source": proposal.source}})

    @hookimpl
    def after_commit(self, intent: Intent, entry: LogEntry) -> None:
        if "after_commit" in self.events and self._wanted(intent):
            self._enqueue("after_commit", {"intent": _intent(intent), "entry": entry_to_dict(entry)})

    @hookimpl
    def on_guard_deny(self, guard: Guard, context: Context) -> None:
        if "on_guard_deny" in self.events and self._wanted(context.intent):
            self._enqueue("on_guard_deny", {"guard": guard.name, "intent": _intent(context.intent)})

    @hookimpl
    def on_error(self, error: BaseException, phase: str) -> None:
        if "on_error" in self.events and self.intents is None:
            self._enqueue("on_error", {"phase": phase,
                                       "error": {"type": type(error).__name__, "message": str(error)}})

    @hookimpl
    async def on_close(self) -> None:
        """Wait (at most ``flush_timeout``) for queued events, then stop and close the client."""
        queue, tasks, client = self._queue, self._tasks, self._client
        if queue is None:
            return
        if self._loop is asyncio.get_running_loop():
            try:
                await asyncio.wait_for(queue.join(), self.flush_timeout)
            except TimeoutError:
                left = queue.qsize() + self._in_flight
                self.stats.abandoned += left
                logger.warning("clp-webhooks: %d event(s) not delivered within flush_timeout=%s s", left,
                               self.flush_timeout)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if client is not None:
                await client.aclose()
        self._queue, self._tasks, self._client, self._loop, self._in_flight = None, [], None, None, 0

    # -- queue and delivery --------------------------------------------------------------------
    def _wanted(self, intent: Intent | None) -> bool:
        return self.intents is None or (intent is not None and intent.name in self.intents)

    def _enqueue(self, event: str, data: dict[str, Any]) -> None:
        queue = self._ensure_started()
        delivery = uuid.uuid4().hex
        message = {"id": delivery, "event": event, "timestamp": now(), **data}
        if self.source is not None:
            message["source"] = self.source
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            logger.warning("clp-webhooks: queue full (%d); dropped %s event %s", self.queue_size, event, delivery)
            return
        self.stats.queued += 1

    def _ensure_started(self) -> asyncio.Queue[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            if self._queue is not None:  # left behind by an earlier event loop
                self.stats.abandoned += self._queue.qsize() + self._in_flight
            self._loop, self._in_flight = loop, 0
            self._queue = asyncio.Queue(self.queue_size)
            self._client = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
            self._tasks = [loop.create_task(self._work(self._queue), name=f"clp-webhooks-{i}")
                           for i in range(self.workers)]
        return self._queue

    async def _work(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            message = await queue.get()
            self._in_flight += 1
            try:
                await self._deliver(message)
            except Exception:  # never let one event stop the worker
                logger.exception("clp-webhooks: delivering %s failed", message.get("id"))
            finally:
                self._in_flight -= 1
                queue.task_done()

    def body_of(self, message: Mapping[str, Any]) -> bytes:
        """The exact bytes POSTed (and signed) for ``message``."""
        return json.dumps(message, default=_json_default, separators=(",", ":"), sort_keys=True).encode()

    async def _deliver(self, message: Mapping[str, Any]) -> None:
        body = self.body_of(message)
        headers = {**self.headers, "Content-Type": "application/json", EVENT_HEADER: str(message["event"]),
                   DELIVERY_HEADER: str(message["id"])}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        await asyncio.gather(*(self._post(url, body, headers, str(message["id"])) for url in self.urls))

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str], delivery: str) -> None:
        assert self._client is not None
        client = self._client
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    response = await client.post(url, content=body, headers=headers)
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _RetryableStatus(response.status_code)
                    response.raise_for_status()
        except Exception as exc:
            self.stats.failed += 1
            logger.warning("clp-webhooks: gave up on %s to %s: %s: %s", delivery, url, type(exc).__name__, exc)
            return
        self.stats.delivered += 1

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handled (delivered or given up); ``False``
        on timeout. Useful in tests and before a planned shutdown."""
        if self._queue is None:
            return True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    def __repr__(self) -> str:
        return f"WebhookPlugin(urls={list(self.urls)!r}, events={sorted(self.events)!r})"

