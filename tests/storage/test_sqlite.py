"""SQLiteAdapter: the conformance suite, WAL, SQL-safe keys, several adapters on one file, URLs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from clp_core.errors import ConflictError, CorruptStateError
from clp_core.resolve import resolve_storage
from clp_core.storage import SQLiteAdapter
from clp_core.testing.storage import NASTY_KEYS, StorageAdapterSuite, bounded_default_executor


def _raw_put(path: str, key: str, raw: bytes | str, version: int = 1) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO clp_state (key, version, data) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data = excluded.data, version = excluded.version",
                (key, version, raw),
            )
    finally:
        conn.close()


class TestSQLiteAdapter(StorageAdapterSuite):
    async def make_adapter(self) -> SQLiteAdapter:
        return SQLiteAdapter(self.tmp_path / "clp.db")

    async def write_raw(self, adapter: SQLiteAdapter, key: str, raw: bytes) -> None:
        await adapter.load("schema-probe")  # creates the table
        try:
            value: bytes | str = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw  # stored as a BLOB
        await asyncio.to_thread(_raw_put, adapter.path, key, value)


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    adapter = SQLiteAdapter(path)
    await adapter.save("k", {"x": 1})
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        conn.close()
    await adapter.close()


@pytest.mark.parametrize("version", ["abc", "", 1.5, 0, -3, b"\x01"], ids=["text", "empty", "real", "zero",
                                                                         "negative", "blob"])
async def test_bad_version_column_is_corrupt_state(tmp_path: Path, version: object) -> None:
    path = tmp_path / "bad-version.db"
    adapter = SQLiteAdapter(path)
    await adapter.save("k", {"ok": True})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE clp_state SET version = ? WHERE key = 'k'", (version,))
    conn.close()
    with pytest.raises(CorruptStateError, match="version of key 'k'"):
        await adapter.load_versioned("k")
    with pytest.raises(CorruptStateError):
        await adapter.load("k")
    await adapter.close()


async def test_sql_injection_keys_are_data(tmp_path: Path) -> None:
    path = tmp_path / "inj.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE x (id INTEGER)")
    conn.execute("INSERT INTO x VALUES (1)")
    conn.commit()
    conn.close()
    adapter = SQLiteAdapter(path)
    keys = ["'; DROP TABLE x; --", '"; DROP TABLE clp_state; --', "k' OR '1'='1", "x'); DELETE FROM clp_state; --"]
    await adapter.save("victim", {"alive": True})
    for key in keys:
        await adapter.save(key, {"key": key})
        assert await adapter.load(key) == {"key": key}
        await adapter.delete(key)
    assert await adapter.load("k' OR '1'='1") is None
    assert await adapter.load("victim") == {"alive": True}
    await adapter.close()
    conn = sqlite3.connect(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"x", "clp_state"} <= tables
        assert conn.execute("SELECT id FROM x").fetchall() == [(1,)]
    finally:
        conn.close()


async def test_keys_are_stored_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    adapter = SQLiteAdapter(path)
    for key in NASTY_KEYS:
        await adapter.save(key, {"k": 1})
    await adapter.close()
    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT key FROM clp_state")}
    finally:
        conn.close()
    assert stored == set(NASTY_KEYS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"format": "clp/2", "data": {"state": {}}}', id="newer-format"),
        pytest.param("not json", id="garbage-text"),
        pytest.param(b"\xff\xfe\x00binary", id="garbage-blob"),
    ],
)
async def test_corrupt_row_is_corrupt_state(tmp_path: Path, raw: bytes | str) -> None:
    path = tmp_path / "bad.db"
    adapter = SQLiteAdapter(path)
    await adapter.save("k", {"ok": True})
    _raw_put(str(path), "k", raw, version=1)
    with pytest.raises(CorruptStateError, match="'k'"):
        await adapter.load("k")
    with pytest.raises(CorruptStateError):
        await adapter.load_versioned("k")
    await adapter.close()


async def test_two_adapters_on_one_file_never_lose_an_increment(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SQLiteAdapter(path), SQLiteAdapter(path)
    version = await first.save_versioned("n", {"n": 0}, 0)
    assert await second.load_versioned("n") == ({"n": 0}, version)
    with pytest.raises(ConflictError):
        await second.save_versioned("n", {"n": "stale"}, 0)

    async def add(adapter: SQLiteAdapter, times: int) -> None:
        for _ in range(times):
            while True:
                document, version = await adapter.load_versioned("n")
                try:
                    await adapter.save_versioned("n", {"n": document["n"] + 1}, version)
                    break
                except ConflictError:
                    await asyncio.sleep(0)

    with bounded_default_executor(16):
        await asyncio.wait_for(asyncio.gather(add(first, 60), add(second, 60), add(first, 60)), 60)
    assert await second.load("n") == {"n": 180}
    await first.close()
    await second.close()


async def test_adapter_reconnects_after_close(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "re.db")
    await adapter.save("k", {"x": 1})
    await adapter.close()
    assert await SQLiteAdapter(tmp_path / "re.db").load("k") == {"x": 1}


async def test_missing_parent_folder_is_created(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "a" / "b" / "deep.db")
    await adapter.save("k", {"x": 1})
    await adapter.close()
    assert (tmp_path / "a" / "b" / "deep.db").is_file()


# -- URLs ------------------------------------------------------------------------------


async def test_sqlite_url_three_slashes_is_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    adapter = resolve_storage("sqlite:///rel.db")
    assert isinstance(adapter, SQLiteAdapter)
    assert adapter.path == "rel.db"
    assert not os.path.isabs(adapter.path)
    await adapter.save("k", {"x": 1})
    await adapter.close()
    assert (tmp_path / "rel.db").is_file()


async def test_sqlite_url_relative_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    adapter = resolve_storage("sqlite:///data/app.db")
    assert adapter.path == os.path.join("data", "app.db")
    await adapter.save("k", {"x": 1})
    await adapter.close()
    assert (tmp_path / "data" / "app.db").is_file()


def test_sqlite_url_four_slashes_is_absolute() -> None:
    adapter = resolve_storage("sqlite:////abs/x.db")
    assert isinstance(adapter, SQLiteAdapter)
    assert adapter.path == "/abs/x.db"


async def test_sqlite_url_absolute_writes_there(tmp_path: Path) -> None:
    adapter = resolve_storage(f"sqlite:///{tmp_path}/abs.db")  # tmp_path starts with "/"
    assert adapter.path == str(tmp_path / "abs.db")
    await adapter.save("k", {"x": 1})
    await adapter.close()
    assert await SQLiteAdapter(tmp_path / "abs.db").load("k") == {"x": 1}


def test_sqlite_url_percent_encoded(tmp_path: Path) -> None:
    adapter = resolve_storage(f"sqlite:///{tmp_path}/my%20app.db")
    assert adapter.path == str(tmp_path / "my app.db")


async def test_sqlite_url_in_memory() -> None:
    adapter = resolve_storage("sqlite:///:memory:")
    assert adapter.path == ":memory:"
    await adapter.save("k", {"x": 1})
    assert await adapter.load("k") == {"x": 1}
    await adapter.close()


async def test_connections_opening_a_new_file_at_once_do_not_fail(tmp_path: Path) -> None:
    """Switching a new file to WAL fails at once with "database is locked" while another
    connection sets it up; the adapter retries instead of failing the first load."""
    for attempt in range(20):
        adapters = [SQLiteAdapter(tmp_path / f"race{attempt}.db") for _ in range(4)]
        try:
            assert await asyncio.gather(*(a.load("k") for a in adapters)) == [None] * 4
        finally:
            for adapter in adapters:
                await adapter.close()
