"""SQLite storage (stdlib ``sqlite3``, WAL, run off the event loop): the durable default."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .. import codec
from ..errors import ConflictError, CorruptStateError, StorageError
from .base import Document

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clp_state (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
)
"""


def _setup(conn: sqlite3.Connection, timeout: float) -> None:
    """WAL mode and the table. Switching a new file to WAL can fail with "database is locked"
    without waiting, when another connection is setting up the same file: retry until
    ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def refuse_writes(obj: Any, methods: Iterable[str], where: str) -> None:
    """Make ``obj``'s write ``methods`` raise a :class:`StorageError` (nothing sent): what a
    read-only open does."""
    backend = str(getattr(obj, "name", type(obj).__name__))

    def refuse(method: str) -> Callable[..., Any]:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise StorageError(f"{where} is open read-only: {method}() refused", backend=backend,
                               outcome="not_applied")
        return refused

    for method in methods:
        setattr(obj, method, refuse(method))


def missing_database(path: str, backend: str) -> StorageError:
    return StorageError(f"no such database: {path} (a read-only open creates nothing; check the path, "
                        "or let the application that writes it create it first)", backend=backend)


class SQLiteAdapter:
    """Documents in table ``clp_state`` of one SQLite file; versioned saves are a
    conditional ``UPDATE``, so processes sharing the file never lose an update.

    ``read_only=True`` (URL option ``?mode=ro``) opens the file with SQLite's ``mode=ro``: a
    missing file or table is a :class:`StorageError` ("no such database"), nothing is created,
    and ``save``/``save_versioned``/``delete`` are refused.
    """

    name = "sqlite"
    #: The tables a read-only open requires.
    required_tables: tuple[str, ...] = ("clp_state",)

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self.read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if read_only:
            refuse_writes(self, ("save", "save_versioned", "delete"), self.path)

    def _connect_read_only(self) -> sqlite3.Connection:
        if self.path == ":memory:" or not os.path.isfile(self.path):
            raise missing_database(self.path, self.name)
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except BaseException:
            conn.close()
            raise
        missing = [t for t in self.required_tables if t not in names]
        if missing:
            conn.close()
            raise StorageError(f"no table {missing[0]} in {self.path}: nothing of this kind was stored there "
                               "(a read-only open creates nothing)", backend=self.name)
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None and self.read_only:
            self._conn = self._connect_read_only()
        if self._conn is None:
            if self.path != ":memory:":
                parent = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(parent, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False,
                                   isolation_level=None)
            try:
                _setup(conn, self.timeout)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on a worker thread, one call at a time; sqlite3 errors become
        :class:`StorageError`."""
        def call() -> T:
            with self._lock:
                return fn(self._connect())

        try:
            return await asyncio.to_thread(call)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}", backend=self.name) from exc

    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        row = await self.run(
            lambda c: c.execute("SELECT data, version FROM clp_state WHERE key = ?", (key,)).fetchone()
        )
        if row is None:
            return None, 0
        version = row[1]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored version of key {key!r} is not a positive integer: {version!r:.40}",
                                    backend=self.name)
        return codec.decode_document(row[0], backend=self.name, key=key), version

    async def save(self, key: str, document: Document) -> None:
        encoded = codec.encode(document)
        await self.run(
            lambda c: c.execute(
                "INSERT INTO clp_state (key, version, data) VALUES (?, 1, ?) "
                "ON CONFLICT(key) DO UPDATE SET data = excluded.data, version = clp_state.version + 1",
                (key, encoded),
            )
        )

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        encoded = codec.encode(document)

        def write(c: sqlite3.Connection) -> bool:
            if expected_version == 0:
                cur = c.execute(
                    "INSERT INTO clp_state (key, version, data) VALUES (?, 1, ?) ON CONFLICT(key) DO NOTHING",
                    (key, encoded),
                )
            else:
                cur = c.execute(
                    "UPDATE clp_state SET data = ?, version = version + 1 WHERE key = ? AND version = ?",
                    (encoded, key, expected_version),
                )
            return cur.rowcount == 1

        if not await self.run(write):
            raise ConflictError(f"key {key!r} changed since version {expected_version}", backend=self.name)
        return expected_version + 1

    async def delete(self, key: str) -> None:
        await self.run(lambda c: c.execute("DELETE FROM clp_state WHERE key = ?", (key,)))

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted (``substr``: no LIKE escaping)."""
        rows = await self.run(lambda c: c.execute(
            "SELECT key FROM clp_state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)).fetchall())
        return [r[0] for r in rows if r[0].startswith(prefix)]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    def __getstate__(self) -> Any:  # pragma: no cover - adapters are not pickled
        raise TypeError("SQLiteAdapter cannot be pickled")
