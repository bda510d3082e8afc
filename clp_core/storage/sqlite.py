"""SQLite storage (stdlib ``sqlite3``, WAL, run off the event loop): the durable default.

A key's document is its row in ``clp_state`` (the base) plus, once patched, the rows of
``clp_patches`` after it (see :mod:`clp_core.storage.patch`): an append inserts one small row
and leaves the base row, and its overflow pages, untouched. ``clp_patches`` is created with
the first patch, so a file whose documents stay small holds ``clp_state`` only.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from .. import codec
from ..errors import ConflictError, CorruptStateError, StorageError
from .base import Document, refuse_writes
from .patch import PatchLog, Write, patched_document

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clp_state (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
)
"""

#: A key's patches have ids ``slot * SLOT + n`` (n = version - base version, far below 2**32: the
#: patches after a base stay smaller than it): one rowid range per key, so an append adds a row
#: at the end of it (one b-tree and, as the patches are small, mostly one page written).
SLOT = 1 << 32

# Made with the first patch. ``clp_patch_keys`` gives each patched key its slot. The triggers
# keep a writer that knows nothing of patches (an older clp-core on the same file) from
# replacing a base that has patches, and drop a deleted key's patches and slot.
_RANGE = f"BETWEEN s.slot * {SLOT} + 1 AND s.slot * {SLOT} + {SLOT - 1}"
_PATCH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS clp_patch_keys (slot INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS clp_patches (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL)",
    f"""CREATE TRIGGER IF NOT EXISTS clp_patches_keep_base BEFORE UPDATE ON clp_state
    WHEN EXISTS (SELECT 1 FROM clp_patch_keys s JOIN clp_patches p ON p.id {_RANGE} WHERE s.key = OLD.key)
    BEGIN SELECT RAISE(ABORT, 'clp_state: this key has patches in clp_patches'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS clp_patches_follow_base AFTER DELETE ON clp_state BEGIN
    DELETE FROM clp_patches WHERE id IN (
        SELECT p.id FROM clp_patch_keys s JOIN clp_patches p ON p.id {_RANGE} WHERE s.key = OLD.key);
    DELETE FROM clp_patch_keys WHERE key = OLD.key;
    END""",
)


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


def missing_database(path: str, backend: str) -> StorageError:
    return StorageError(f"no such database: {path} (a read-only open creates nothing; check the path, "
                        "or let the application that writes it create it first)", backend=backend)


class SQLiteAdapter:
    """Documents in table ``clp_state`` of one SQLite file (and their patches in
    ``clp_patches``); every save is a compare-and-set in one ``BEGIN IMMEDIATE`` transaction
    (SQLite serialises writers), so processes sharing the file never lose an update.

    ``read_only=True`` (URL option ``?mode=ro``) opens the file with SQLite's ``mode=ro``: a
    missing file or table is a :class:`StorageError` ("no such database"), nothing is created,
    and ``save``/``save_versioned``/``save_logged``/``delete`` are refused.
    """

    name = "sqlite"
    #: The tables a read-only open requires.
    required_tables: tuple[str, ...] = ("clp_state",)

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self.read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._patch_tables = False  # clp_patches seen on self._conn (see _has_patches)
        self._lock = threading.Lock()
        if read_only:
            refuse_writes(self, self.path)

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

    def _has_patches(self, c: sqlite3.Connection) -> bool:
        """Whether ``clp_patches`` exists yet (a file of an older clp-core, or of small
        documents only, has none). Asked before a transaction writes, so a yes is of a
        committed table: kept, as the table is never dropped; a no is asked again, as
        another process may make the table at any time."""
        if not self._patch_tables:
            self._patch_tables = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clp_patches'").fetchone() is not None
        return self._patch_tables

    def _checked(self, key: str, version: Any) -> int:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored version of key {key!r} is not a positive integer: {version!r:.40}",
                                    backend=self.name)
        return version

    def _slot(self, c: sqlite3.Connection, key: str) -> int | None:
        if not self._has_patches(c):
            return None
        row = c.execute("SELECT slot FROM clp_patch_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _head(self, c: sqlite3.Connection, key: str) -> tuple[int, int, int | None]:
        """(base version, head version, slot): 0, 0 without a base. The base's version is the
        column before ``data``, so no overflow page of a big document is read."""
        row = c.execute("SELECT version FROM clp_state WHERE key = ?", (key,)).fetchone()
        base = 0 if row is None else self._checked(key, row[0])
        slot = self._slot(c, key)
        if slot is None or base == 0:
            return base, base, slot
        last = c.execute("SELECT version FROM clp_patches WHERE id BETWEEN ? AND ? ORDER BY id DESC LIMIT 1",
                         (slot * SLOT + 1, slot * SLOT + SLOT - 1)).fetchone()
        return base, base if last is None else self._checked(key, last[0]), slot

    def _read(self, c: sqlite3.Connection, key: str) -> tuple[Any, int, list[tuple[Any, Any]]]:
        """The base row and its patches, in one read transaction."""
        c.execute("BEGIN")
        try:
            row = c.execute("SELECT data, version FROM clp_state WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None, 0, []
            version = self._checked(key, row[1])
            slot = self._slot(c, key)
            if slot is None:
                return row[0], version, []
            return row[0], version, c.execute("SELECT version, data FROM clp_patches WHERE id BETWEEN ? AND ? "
                                              "ORDER BY id", (slot * SLOT + 1, slot * SLOT + SLOT - 1)).fetchall()
        finally:
            c.execute("COMMIT")

    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return await self.load_logged(key, PatchLog())

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        base, version, patches = await self.run(lambda c: self._read(c, key))
        if base is None:
            log.loaded(0, ())
            return None, 0
        for expected, (number, _) in enumerate(patches, start=version + 1):
            if number != expected:
                raise CorruptStateError(f"stored patches of key {key!r} skip version {expected}", backend=self.name)
        document = patched_document(base, [text for _, text in patches], log, key=key, backend=self.name)
        return document, patches[-1][0] if patches else version

    async def save(self, key: str, document: Document) -> None:
        await self._store(key, Write(codec.encode(document), compacts=True), None)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        return await self.save_logged(key, Write(codec.encode(document), compacts=True), expected_version)

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        return await self._store(key, write, expected_version)

    async def _store(self, key: str, write: Write, expected: int | None) -> int:
        """Compare-and-set ``write`` on the head version (any version when ``expected`` is None)."""
        def store(c: sqlite3.Connection) -> int:
            base, head, slot = self._head(c, key)
            if expected is not None and head != expected:
                raise ConflictError(f"key {key!r} is at version {head}, not {expected}", backend=self.name)
            if not write.compacts:
                if base == 0:
                    raise ConflictError(f"key {key!r} has no stored document to patch", backend=self.name)
                if slot is None:
                    slot = self._new_slot(c, key)
                c.execute("INSERT INTO clp_patches (id, version, data) VALUES (?, ?, ?)",
                          (slot * SLOT + head - base + 1, head + 1, write.text))
                return head + 1
            # only where patches follow the base (head > base: known here, whatever Write.over_patches
            # says), or where a slot has no base
            if slot is not None and (head != base or base == 0):
                c.execute("DELETE FROM clp_patches WHERE id BETWEEN ? AND ?", (slot * SLOT + 1, slot * SLOT + SLOT - 1))
            if base == 0:
                c.execute("INSERT INTO clp_state (key, version, data) VALUES (?, 1, ?)", (key, write.text))
            else:
                c.execute("UPDATE clp_state SET data = ?, version = ? WHERE key = ?", (write.text, head + 1, key))
            return head + 1

        return await self.run(lambda c: in_transaction(c, store))

    def _new_slot(self, c: sqlite3.Connection, key: str) -> int:
        if not self._has_patches(c):
            for statement in _PATCH_SCHEMA:
                c.execute(statement)
        slot = c.execute("INSERT INTO clp_patch_keys (key) VALUES (?)", (key,)).lastrowid
        if slot is None or not 0 < slot < 1 << 31:
            raise StorageError(f"{self.path}: no slot left in clp_patch_keys for key {key!r} (slot {slot})",
                               backend=self.name, outcome="not_applied")
        return slot

    async def delete(self, key: str) -> None:
        # the trigger clp_patches_follow_base drops the key's patches and slot
        await self.run(lambda c: c.execute("DELETE FROM clp_state WHERE key = ?", (key,)))

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted (``substr``: no LIKE escaping)."""
        rows = await self.run(lambda c: c.execute(
            "SELECT key FROM clp_state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)).fetchall())
        return [r[0] for r in rows if r[0].startswith(prefix)]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._patch_tables = False  # what the next connection sees is asked again
        if conn is not None:
            await asyncio.to_thread(conn.close)

    def __getstate__(self) -> Any:  # pragma: no cover - adapters are not pickled
        raise TypeError("SQLiteAdapter cannot be pickled")


def in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` in a ``BEGIN IMMEDIATE`` transaction: committed if it returns, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
