"""What the adapter and the event store share: the client, URL options, error translation."""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from clp_core.plugin_api import (
    OUTCOME_NOT_APPLIED,
    OUTCOME_UNKNOWN,
    ConfigError,
    CorruptStateError,
    StorageError,
    deadline_at,
)

T = TypeVar("T")

DEFAULT_URL = "redis://127.0.0.1:6379/0"

#: URL query options (and keyword arguments) that bound how long one operation may take,
#: in seconds, and how often it is retried: ``timeout`` (each attempt: sending a command and
#: reading its reply),
#: ``connect_timeout`` (opening a connection), ``retries`` (attempts after the first, on a
#: connection error or a timeout) and ``operation_timeout`` (the whole operation, retries and
#: backoff included). The defaults bound one failed operation to 5 s in all. Retrying is
#: safe: every write this package sends is idempotent (see the scripts), so a command resent
#: after a lost reply cannot apply twice.
TIMEOUT_OPTIONS = ("timeout", "connect_timeout", "retries", "operation_timeout")


@attrs.frozen
class Timeouts:
    timeout: float = 1.5
    connect_timeout: float = 1.0
    retries: int = 2
    operation_timeout: float = 5.0
    #: whether this package makes every attempt itself (redis-py's own retries off), so it can
    #: tell an operation that never reached the server from one that may have
    own_retries: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Timeouts:
        values: dict[str, Any] = {}
        for name in TIMEOUT_OPTIONS:
            if name not in options or options[name] is None:
                continue
            raw = options[name]
            try:
                number = int(raw) if name == "retries" else float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}={raw!r}: not a number") from None
            if isinstance(raw, bool) or not math.isfinite(number) or number < 0 or (name != "retries" and number == 0):
                raise ConfigError(f"{name}={raw!r}: must be a positive number"
                                  + (" (or 0 retries)" if name == "retries" else ""))
            values[name] = number
        return cls(**values)


def _backoff(failures: int) -> float:
    return float(min(0.2, 0.02 * 2 ** (failures - 1)))


def split_url(url: str, ours: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Take this package's own query parameters (``prefix``, ``ttl``, :data:`TIMEOUT_OPTIONS`)
    out of ``url``; the rest of the query (``ssl_cert_reqs``...) is left for redis-py."""
    ours = ours + TIMEOUT_OPTIONS
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a Redis URL (redis://, rediss:// or unix://): {_safe(url)}")
    kept: list[tuple[str, str]] = []
    options: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name in ours:
            options[name] = value
        else:
            kept.append((name, value))
    clean = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return clean, options


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def make_client(url: str, options: dict[str, Any], timeouts: Timeouts) -> tuple[aioredis.Redis, Timeouts]:
    """A client that connects within ``timeouts.connect_timeout``; redis-py's own retries are
    turned off (this package retries, see :func:`call`) unless ``options`` passes a ``retry``.

    Each attempt is bounded by :func:`call` (``timeouts.timeout``, one timer for the command and
    its reply), not by redis-py's ``socket_timeout``: on Python 3.11 that costs a task for every
    send and a timer for every read. redis-py closes a connection whose command or reply was
    cut short, so a timed-out attempt never leaves a reply behind for the next one. A
    ``socket_timeout`` given in the URL still reaches redis-py."""
    merged: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": timeouts.connect_timeout, **options}
    if "retry" not in options:
        merged["retry"] = Retry(NoBackoff(), 0)
    else:
        timeouts = attrs.evolve(timeouts, own_retries=False)
    merged["decode_responses"] = False  # values are bytes; this package decodes them
    return aioredis.from_url(url, **merged), timeouts


def describe(client: aioredis.Redis) -> str:
    """``host:port/db`` of a client, for error messages (never the password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def encode_key(text: str) -> bytes:
    """A Redis key for ``text``: its UTF-8 bytes, so any string is a distinct key."""
    return text.encode("utf-8", "surrogatepass")


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


#: The smallest pool (``max_connections``) a :class:`ScriptRunner` holds a connection of: in a
#: smaller one, the other calls may need every connection.
_HOLDING_POOL = 16


def _before_sending(exc: BaseException) -> bool:
    """Whether ``exc`` proves the command was never sent: the connection could not be opened,
    or the pool had none to give."""
    if isinstance(exc, ConnectionRefusedError | MaxConnectionsError):
        return True
    return isinstance(exc, RedisConnectionError | RedisTimeoutError) and " connecting to " in f" {exc}"


#: The connection pool's methods that hand out a connection, connected and ready to send
#: (``get_connection``, and ``ensure_connection`` for the one :class:`ScriptRunner` holds): an
#: attempt cut short inside them was acquiring its connection, opening it or waiting for the
#: handshake's replies; its command had not been written.
_ACQUIRING = frozenset({"get_connection", "ensure_connection"})


def _cut_before_sending(exc: BaseException) -> bool:
    """Whether an attempt whose bound expired (``exc``: the ``TimeoutError`` of its deadline,
    caused by the cancellation) was cut short before its command was written: the cancellation
    came through the pool while the attempt was getting its connection. Read from the
    cancellation's traceback, on failure only, so a command that goes through costs nothing
    more. (Every attempt writes one command, or one pipeline, after getting its connection;
    the only earlier write is an ``EVALSHA`` answered ``NOSCRIPT``, which applied nothing.)"""
    cancelled = exc.__cause__ if isinstance(exc.__cause__, asyncio.CancelledError) else exc
    tb = cancelled.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name in _ACQUIRING and frame.f_globals.get("__name__", "").startswith("redis."):
            return True
        tb = tb.tb_next
    return False


async def call(factory: Callable[[], Awaitable[T]], *, backend: str, where: str, what: str, key: str,
               timeouts: Timeouts | None = None) -> T:
    """Await ``factory()``, retrying connection errors and timeouts ``timeouts.retries`` times
    within ``timeouts.operation_timeout`` seconds; whatever goes wrong comes out as a
    :class:`StorageError` (or a :class:`CorruptStateError` when the stored value is not what
    this package writes). Its ``outcome`` is ``"not_applied"`` only when no attempt reached the
    server (every connection was refused, or timed out, or the attempt's time ran out, while
    connecting: nothing was written); otherwise ``"unknown"``: a write may have been applied,
    whatever the last attempt said."""
    timeouts = timeouts or Timeouts()
    attempts: list[BaseException] = []
    unsent = True  # whether every failed attempt so far ended before writing its command
    loop = asyncio.get_running_loop()
    end = loop.time() + timeouts.operation_timeout
    # each attempt bounded at its own bound or at the operation's end, whichever comes first
    # (clp_core's deadlines: no timer of its own per attempt)
    try:
        while True:
            bound = deadline_at(min(loop.time() + timeouts.timeout, end))
            try:
                async with bound:
                    return await factory()
            except ResponseError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if bound.expired():  # redis-py closed the connection the attempt was cut short on
                    early = _cut_before_sending(exc)
                    unsent = unsent and early
                    if bound.when() >= end:  # the operation's end was this attempt's bound
                        raise _OutOfTime() from exc
                    exc = RedisTimeoutError(f"no reply within timeout={timeouts.timeout:g} s"
                                            + (" while connecting (this attempt sent nothing)" if early else ""))
                else:
                    unsent = unsent and _before_sending(exc)
                attempts.append(exc)
                if len(attempts) > timeouts.retries:
                    raise exc
            pause = _backoff(len(attempts))
            if loop.time() + pause >= end:
                await asyncio.sleep(max(0.0, end - loop.time()))
                raise _OutOfTime() from attempts[-1]
            await asyncio.sleep(pause)
    except ResponseError as exc:
        text = str(exc)
        if "WRONGTYPE" in text or "CLP_CORRUPT" in text:
            raise CorruptStateError(
                f"stored value for key {key!r} is not a CLP value: {text}", backend=backend) from None
        raise StorageError(f"{what} of {key!r} at {where} failed: {text}", backend=backend) from exc
    except _OutOfTime as exc:
        raise StorageError(
            f"{what} of {key!r} at {where} did not finish within operation_timeout="
            f"{timeouts.operation_timeout:g} s ({len(attempts)} failed attempts before)", backend=backend,
            outcome=OUTCOME_NOT_APPLIED if timeouts.own_retries and unsent else OUTCOME_UNKNOWN) from exc.__cause__
    except (RedisError, OSError) as exc:
        proven = timeouts.own_retries and unsent
        tries = f" after {len(attempts)} attempts" if len(attempts) > 1 else ""
        raise StorageError(
            f"{what} of {key!r} at {where} failed{tries}: {type(exc).__name__}: {exc}", backend=backend,
            outcome=OUTCOME_NOT_APPLIED if proven else OUTCOME_UNKNOWN) from exc


class _OutOfTime(Exception):
    """The operation's ``operation_timeout`` ran out (its cause: what the last attempt met)."""


def direct_scripts(client: aioredis.Redis, timeouts: Timeouts) -> ScriptRunner | None:
    """A :class:`ScriptRunner` for ``client``, when it may drive the client's pool itself: a
    client this package made (its own retries, one connection per command from the pool, no
    shared connection); else ``None`` (scripts go through redis-py's ``script(...)``)."""
    if timeouts.own_retries and not client.single_connection_client and client.connection is None:
        return ScriptRunner(client)
    return None


class LoopGuard:
    """The event loop a client's pooled connections belong to. A client this package made,
    used from another loop (``asyncio.run`` again), has its pool forget the connections of
    the old one before the next command: they cannot be used from there (redis-py would
    raise ``RuntimeError: Event loop is closed`` once for each)."""

    __slots__ = ("_client", "_loop", "_runner")

    def __init__(self, client: aioredis.Redis, runner: ScriptRunner | None) -> None:
        self._client, self._runner = client, runner
        self._loop: asyncio.AbstractEventLoop | None = None

    def check(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None:
            self._client.connection_pool.reset()
            if self._runner is not None:
                self._runner.forget()
        self._loop = loop


class ScriptRunner:
    """``script(keys=keys, args=args)`` (one ``EVALSHA``) on a connection of the client's pool,
    without redis-py's per-command machinery (its retry wrapper, metrics and response
    callbacks: a third of the time of a small write). The same bytes go to the server; a
    failed send or read disconnects the connection (redis-py does, on any error) before it
    goes back to the pool. A server that lost the script (restart, ``SCRIPT FLUSH``) is sent it
    through ``script``, which loads it: EVALSHA of an unknown script changes nothing, so
    sending it again cannot apply twice.

    One connection is kept out of the pool between calls (the held connection), while the pool
    has another to give: a call that finds it skips the pool's get and release (an async lock
    and observability records each), checking the socket as the get does. Concurrent calls
    take connections from the pool as before;
    :meth:`release` gives the held one back (the adapter's ``close()`` does)."""

    __slots__ = ("_client", "_held")

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._held: Any = None

    async def run(self, script: Any, keys: list[bytes], args: list[Any]) -> Any:
        pool = self._client.connection_pool
        conn, self._held = self._held, None
        if conn is None:
            conn = await pool.get_connection()
        else:
            try:  # what the pool's get does: a socket the server closed meanwhile is reopened
                await pool.ensure_connection(conn)
            except BaseException:
                await pool.release(conn)
                raise
        try:
            await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            result = await conn.read_response()
        except NoScriptError:
            await self._put_back(pool, conn)
            return await script(keys=keys, args=args)
        except BaseException:
            await pool.release(conn)
            raise
        await self._put_back(pool, conn)
        return result

    async def _put_back(self, pool: Any, conn: Any) -> None:
        # loads, plain saves and deletes do not go through the held connection, and the pool
        # refuses a connection past its limit at once (MaxConnectionsError): a connection is held
        # only in a pool of at least _HOLDING_POOL (redis-py's default is 100), with one to spare
        in_use = getattr(pool, "_in_use_connections", None)
        limit = getattr(pool, "max_connections", 0)
        spare = in_use is not None and limit >= _HOLDING_POOL and len(in_use) < limit - 1
        if self._held is None and conn.is_connected and spare:
            self._held = conn
        else:
            await pool.release(conn)

    async def release(self) -> None:
        conn, self._held = self._held, None
        if conn is not None:
            await self._client.connection_pool.release(conn)

    def forget(self) -> None:
        """Drop the held connection without giving it back (its pool was reset)."""
        self._held = None


async def close_client(client: aioredis.Redis) -> None:
    aclose = getattr(client, "aclose", None)  # redis-py >= 5.0.1
    if aclose is not None:
        await aclose(close_connection_pool=True)
    else:  # pragma: no cover - redis 5.0.0
        await client.close(close_connection_pool=True)


def mode_read_only(mode: str | None) -> bool:
    """The URL option ``mode``: ``ro`` is read-only, ``rw`` (or none) the default."""
    if mode not in (None, "ro", "rw"):
        raise ConfigError(f"mode={mode!r} in the URL: use mode=ro (read-only) or mode=rw")
    return mode == "ro"
