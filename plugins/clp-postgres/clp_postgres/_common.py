"""What the adapter and the event store share: identifiers, DSNs, jsonb text, the pool, errors."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import json
import math
import re
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from clp_core.plugin_api import (
    OUTCOME_NOT_APPLIED,
    OUTCOME_UNKNOWN,
    ClpError,
    ConfigError,
    StorageError,
    deadline_at,
    refuse_writes,
)

T = TypeVar("T")

BACKEND = "postgresql"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

# A plain PostgreSQL identifier: letters, digits and underscores, not starting with a digit,
# at most 63 bytes (NAMEDATALEN - 1). Anything else is refused, never escaped.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class InvalidIdentifierError(ConfigError, ValueError):
    """A table or schema name that is not a plain identifier (``x; DROP TABLE y``)."""


def check_identifier(name: Any, what: str = "identifier") -> str:
    """``name`` if it is a plain identifier; :class:`InvalidIdentifierError` otherwise."""
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a plain identifier (letters, digits and _, not starting with a "
            "digit, at most 63 characters)"
        )
    return name


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``, both already checked by :func:`check_identifier`."""
    return f'"{schema}"."{table}"'


def lock_key(*names: str) -> int:
    """A stable advisory-lock key (a signed 32-bit int) for DDL on ``names``."""
    return zlib.crc32(b"clp-postgres:" + ".".join(names).encode()) - 2**31


# -- DSNs ------------------------------------------------------------------------------------

#: Query parameters of a storage URL that are ours, not asyncpg's (asyncpg would send unknown
#: ones to the server as settings).
URL_OPTIONS = ("table", "schema", "mode", "min_size", "max_size", "connect_timeout", "command_timeout",
               "operation_timeout", "toast_compression")

#: Time limits, in seconds, of one operation (URL options or keyword arguments of the same
#: names): opening a connection, running a statement, and the whole operation (connecting,
#: creating the tables on first use, the statement). One failed operation takes at most
#: ``DEFAULT_OPERATION_TIMEOUT`` seconds.
DEFAULT_CONNECT_TIMEOUT = 1.5
DEFAULT_COMMAND_TIMEOUT = 3.0
DEFAULT_OPERATION_TIMEOUT = 5.0
_TIMEOUTS = ("connect_timeout", "command_timeout", "operation_timeout")

#: How PostgreSQL compresses the big ``data`` values of the tables the plugin creates (or
#: ``clp migrate`` updates): the column's ``COMPRESSION``. lz4 took 114 ms to store a 4 MiB
#: jsonb document where pglz took 166 ms, for a fifth more bytes; ``default`` follows the
#: server's ``default_toast_compression``. A server without lz4 (before PostgreSQL 14, or
#: built without it) keeps its own.
DEFAULT_TOAST_COMPRESSION = "lz4"
TOAST_COMPRESSIONS = ("lz4", "pglz", "default")


def check_toast_compression(value: Any) -> str:
    if value not in TOAST_COMPRESSIONS:
        raise ConfigError(f"toast_compression={value!r}: use lz4 (the default), pglz, or default (the "
                          "server's default_toast_compression)")
    return str(value)


def check_timeout(name: str, value: Any) -> float:
    """``value`` as a positive number of seconds; :class:`ConfigError` naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name}={value!r}: must be a positive number of seconds")
    return number


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The DSN for asyncpg and our options (``?table=...&schema=...``) taken out of it."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in URL_OPTIONS}
    rest = [(k, v) for k, v in query if k not in URL_OPTIONS]
    dsn = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
    return dsn, ours


def url_kwargs(options: Mapping[str, str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name in ("table", "schema"):
        if name in options:
            kwargs[name] = options[name]
    for name in ("min_size", "max_size"):
        if name in options:
            try:
                kwargs[name] = int(options[name])
            except ValueError:
                raise ConfigError(f"{name}={options[name]!r} in the URL is not an integer") from None
    for name in _TIMEOUTS:
        if name in options:
            kwargs[name] = check_timeout(name, options[name])
    if "toast_compression" in options:
        kwargs["toast_compression"] = check_toast_compression(options["toast_compression"])
    if "mode" in options:
        if options["mode"] not in ("ro", "rw"):
            raise ConfigError(f"mode={options['mode']!r} in the URL: use mode=ro (read-only) or mode=rw")
        kwargs["read_only"] = options["mode"] == "ro"
    return kwargs


def describe(dsn: str) -> str:
    """``host:port/db`` of a DSN, without user or password (for messages)."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "postgresql"
    database = parts.path.lstrip("/") or "?"
    return f"{host}:{port}/{database}"


# -- jsonb -------------------------------------------------------------------------------

# jsonb keeps the JSON structure but not every text: it refuses \u0000 in strings, and it
# stores numbers as numeric, so a float written 1e+16 comes back 10000000000000000 (an int)
# and -0.0 comes back 0.0. Documents whose text has any of these (or something that looks
# like them inside a string: harmless) are stored as one jsonb *string* holding the exact
# envelope text instead; every other document is stored as a jsonb object, queryable in SQL.
_NUMBER_DRIFT = re.compile(r"[0-9]e\+|(?<![0-9.])-0\.0(?![0-9])")


def to_jsonb(text: str) -> str:
    """The jsonb input for an envelope text (itself, or the JSON string that holds it)."""
    if "\\u0000" in text or (("e+" in text or "-0.0" in text) and _NUMBER_DRIFT.search(text)):
        return json.dumps(text, ensure_ascii=False)
    return text


def from_jsonb(text: str) -> str:
    """The envelope text of a stored jsonb value (``to_jsonb`` undone)."""
    if text[:1] == '"':
        try:
            inner = json.loads(text)
        except ValueError:
            return text
        if isinstance(inner, str):
            return inner
    return text


# -- pools and errors --------------------------------------------------------------------


async def _reset_connection(connection: Any) -> None:
    """Pool reset for connections only this plugin uses: it never LISTENs, SETs, locks at
    session level or leaves cursors, so releasing costs no round trip (asyncpg's default
    reset sends ``RESET ALL; UNLISTEN *; ...`` on every release)."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


_POOL_TAKES_RESET = "reset" in inspect.signature(asyncpg.create_pool).parameters


class PoolClient:
    """A lazily created asyncpg pool (or one given), and calls through it whose failures
    are :class:`StorageError` naming ``backend`` (``postgresql``...), never asyncpg exceptions."""

    def __init__(
        self,
        dsn: str,
        *,
        backend: str = BACKEND,
        pool: Any = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError("dsn must be a postgresql:// URL")
        sizes_ok = isinstance(min_size, int) and isinstance(max_size, int) and 0 <= min_size <= max_size
        if not sizes_ok or max_size < 1:
            raise ConfigError(f"min_size={min_size!r}, max_size={max_size!r}: need 0 <= min_size <= max_size, "
                              "1 <= max_size")
        self.dsn = dsn
        self.backend = backend
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = check_timeout("connect_timeout", connect_timeout)
        self.command_timeout = None if command_timeout is None else check_timeout("command_timeout", command_timeout)
        self.operation_timeout = check_timeout("operation_timeout", operation_timeout)
        self.pool_options = dict(pool_options or {})
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._held: Any = None  # a connection of an owned pool kept between calls (run)
        self._acquiring = 0  # calls waiting in the pool's acquire
        self._out = 0  # connections of the owned pool acquired and not released (the held one too)
        self.where = describe(dsn)

    @property
    def pool(self) -> Any:
        """The asyncpg pool, or ``None`` before first use (and after ``close()``)."""
        return self._pool

    async def _get_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._owns_pool and self._pool_loop is not loop:
            # created under another event loop (asyncio.run twice): it cannot be used here
            pool, self._pool = self._pool, None
            _terminate(pool)
        if self._pool is not None:
            return self._pool
        if self._pool_lock is None or self._lock_loop is not loop:
            self._pool_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._pool_lock:
            if self._pool is None:
                # no command_timeout: run() bounds the statements itself, with one timer
                options: dict[str, Any] = {"timeout": self.connect_timeout}
                if _POOL_TAKES_RESET:
                    options["reset"] = _reset_connection
                options.update(self.pool_options)
                pool = asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size, **options)
                try:
                    await pool
                except BaseException:
                    _terminate(pool)
                    raise
                self._pool, self._pool_loop, self._out = pool, loop, 0
        return self._pool

    async def run(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(connection)`` on a pooled connection, within ``operation_timeout``, and ``fn``
        itself (its statements) within ``command_timeout``; failures become
        :class:`StorageError`, whose ``outcome`` is ``"not_applied"`` when no connection could
        be had (nothing was sent) and ``"unknown"`` once ``fn`` ran.

        One deadline bounds both (asyncpg's own ``command_timeout`` would add a timer per statement):
        at the statement's bound when a connection is at hand, moved there once one is had.
        On a pool of its own, the client keeps one connection out of the pool between calls
        (the held connection): a call that finds it takes it without the pool's acquire and
        release (a queue, and a task for ``asyncio.shield`` on every release). Concurrent calls
        use the pool as before; :meth:`close` gives the held connection back first."""
        sent = False
        loop = asyncio.get_running_loop()
        end = loop.time() + self.operation_timeout
        deadline = deadline_at(self._statement_end(loop, end))
        try:
            async with deadline:
                connection = self._take_held()
                if connection is not None and not _alive(connection):
                    # lost while held (the server went away): the pool replaces it (a
                    # connection asyncpg saw close is back in the pool already)
                    await self._release(self._pool, connection)
                    connection = None
                if connection is None:
                    deadline.reschedule(end)  # getting a connection may take the operation's time
                    pool = await self._get_pool()
                    self._acquiring += 1
                    try:
                        connection = await pool.acquire()
                        self._out += 1
                    finally:
                        self._acquiring -= 1
                    deadline.reschedule(self._statement_end(loop, end))
                else:
                    pool = self._pool
                try:
                    sent = True
                    result = await fn(connection)
                except ClpError:
                    await self._put_back(pool, connection)
                    raise
                except BaseException:
                    # a statement that timed out, was cancelled or lost its connection: drop
                    # the connection at once (asyncpg would otherwise wait, unbounded, for
                    # the server to acknowledge a cancel request before reusing it)
                    try:
                        if _alive(connection):  # one asyncpg saw close is detached already
                            connection.terminate()
                    finally:
                        await self._release(pool, connection)
                    raise
                await self._put_back(pool, connection)
                return result
        except ClpError:
            raise
        except Exception as exc:
            if deadline.expired():
                if deadline.when() < end:  # the statement's bound, not the operation's end
                    raise StorageError(
                        f"{what} at {self.where} did not finish within command_timeout={self.command_timeout:g} s",
                        backend=self.backend, outcome=OUTCOME_UNKNOWN) from exc
                raise StorageError(
                    f"{what} at {self.where} did not finish within operation_timeout={self.operation_timeout:g} s",
                    backend=self.backend, outcome=OUTCOME_UNKNOWN if sent else OUTCOME_NOT_APPLIED) from exc
            raise self.error(what, exc, outcome=OUTCOME_UNKNOWN if sent else OUTCOME_NOT_APPLIED) from exc

    def _statement_end(self, loop: asyncio.AbstractEventLoop, end: float) -> float:
        """When the statements about to run must be done: ``command_timeout`` from now, or
        the operation's ``end`` if that comes first."""
        if self.command_timeout is None:
            return end
        return min(end, loop.time() + self.command_timeout)

    def _take_held(self) -> Any:
        """The held connection, if there is one usable on this loop (else ``None``)."""
        connection = self._held
        if connection is None:
            return None
        self._held = None
        if self._pool_loop is not asyncio.get_running_loop() or self._pool is None:
            return None  # the pool's loop is gone: _get_pool drops that pool and its connections
        return connection

    async def _put_back(self, pool: Any, connection: Any) -> None:
        """Keep ``connection`` held (an owned pool, no connection held, nothing left open on
        it, and no call waiting for a connection: the pool has another free one, and none of
        ours waits in its acquire), or release it to the pool."""
        if (self._held is None and self._owns_pool and pool is self._pool and not self._acquiring
                and self._out < self.max_size and _alive(connection) and not connection.is_in_transaction()):
            self._held = connection
        else:
            await self._release(pool, connection)

    async def _release(self, pool: Any, connection: Any) -> None:
        if pool is self._pool:
            self._out -= 1
        await pool.release(connection)

    def error(self, what: str, exc: BaseException, *, outcome: str = OUTCOME_UNKNOWN) -> StorageError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and detail == "TimeoutError":
            detail = "timed out"
        return StorageError(f"{what} at {self.where} failed: {type(exc).__name__}: {detail}", backend=self.backend,
                            outcome=outcome)

    async def close(self) -> None:
        """Close the pool this object created (a pool passed in is the caller's to close)."""
        pool, self._pool = self._pool, None
        held, self._held = self._held, None
        self._out = 0
        if pool is None or not self._owns_pool:
            if not self._owns_pool:
                self._pool = pool  # still usable: it is the caller's
            return
        try:
            if self._pool_loop is asyncio.get_running_loop():
                if held is not None:  # the pool's close waits for every acquired connection
                    await pool.release(held)
                await asyncio.wait_for(pool.close(), timeout=10)
            else:
                _terminate(pool)
        except Exception:
            _terminate(pool)


def _alive(connection: Any) -> bool:
    """Whether a pooled connection is open (one whose connection closed is detached from it)."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:  # "released back to the pool": asyncpg saw it close
        return False


def _terminate(pool: Any) -> None:
    """Drop a pool's connections without waiting (its loop may be closed already)."""
    with contextlib.suppress(Exception):
        pool.terminate()


class TableClient(abc.ABC):
    """What the adapter and the event store share: checked identifiers, the pool client, and
    their tables created on first use (subclasses implement ``_create(connection)``)."""

    name: str

    def __init__(
        self,
        dsn: str,
        *,
        table: str,
        schema: str,
        pool: Any,
        min_size: int,
        max_size: int,
        create_table: bool,
        connect_timeout: float,
        command_timeout: float | None,
        pool_options: Mapping[str, Any] | None,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        read_only: bool = False,
        toast_compression: str = DEFAULT_TOAST_COMPRESSION,
    ) -> None:
        self.table = check_identifier(table, "table")
        self.toast_compression = check_toast_compression(toast_compression)
        self.schema = check_identifier(schema, "schema")
        self.read_only = read_only
        self.create_table = create_table and not read_only
        self._client = PoolClient(dsn, backend=self.name, pool=pool, min_size=min_size, max_size=max_size,
                                  connect_timeout=connect_timeout, command_timeout=command_timeout,
                                  operation_timeout=operation_timeout, pool_options=pool_options)
        self._ready = not create_table
        if read_only:  # no table is created; a missing one is an error on first use
            self._ready = False
            refuse_writes(self, f"{self._client.where} {self.schema}.{self.table}")

    async def _check_tables(self, connection: Any) -> None:
        """Read-only (or ``create_table=False``, where a subclass asks): the tables must exist
        (``to_regclass``); nothing is created."""
        for table in (self.table, getattr(self, "snapshots_table", None)):
            if table is None:
                continue
            found = await connection.fetchval("SELECT to_regclass($1)", qualified(self.schema, table))
            if found is None:
                raise StorageError(f"no such database table {self.schema}.{table} at {self._client.where} "
                                   "(a read-only open creates nothing; run `clp migrate` or the application "
                                   "that writes it first)", backend=self.name)

    @property
    def dsn(self) -> str:
        return self._client.dsn

    @property
    def pool(self) -> Any:
        """The asyncpg pool (``None`` before first use and after :meth:`close`)."""
        return self._client.pool

    @abc.abstractmethod
    async def _create(self, connection: Any) -> None:
        """Create the tables (first use, unless read-only)."""

    async def _run(self, what: str, fn: Any) -> Any:
        if not self._ready and not self.create_table:  # read-only, or told not to create
            await self._client.run(f"checking {self.schema}.{self.table}", self._check_tables)
            self._ready = True
        elif not self._ready:
            await self.create()
        return await self._client.run(what, fn)

    async def create(self) -> None:
        """Create the tables now (``CREATE TABLE IF NOT EXISTS``)."""
        await self._client.run(f"creating {self.schema}.{self.table}", self._create)
        self._ready = True

    async def close(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client.where}, table={self.schema}.{self.table})"
