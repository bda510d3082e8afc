"""SQLiteAdapter: the conformance suite, WAL, SQL-safe keys, several adapters on one file, URLs,
and its patches (clp_patches)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clp_core import codec
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.resolve import resolve_storage
from clp_core.storage import SQLiteAdapter
from clp_core.storage.patch import Patch, PatchLog, Write
from clp_core.testing.patching import big_document
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


# -- diff-sized saves: patches in clp_patches, the base row untouched ---------------------------


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _query(path: Path, sql: str, *args: Any) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _count(n: int) -> Write:
    return Write(Patch(((("state", "count"), n),)).encode(), compacts=False)


async def _patched(adapter: SQLiteAdapter, key: str, patches: int, document: dict[str, Any] | None = None) -> int:
    """``document`` (big_document() by default) as the base, then ``patches`` patches of the count."""
    version = await adapter.save_logged(key, Write(codec.encode(document or big_document()), compacts=True), 0)
    for n in range(1, patches + 1):
        version = await adapter.save_logged(key, _count(n), version)
    return version


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_an_append_leaves_the_base_row_and_writes_a_page_or_two(tmp_path: Path) -> None:
    """A patch is one row of clp_patches: the base row (and the ~1 MB of overflow pages a
    json_set would rewrite) stays as it was, and the WAL grows by about a page per commit."""
    path = tmp_path / "append.db"
    adapter = SQLiteAdapter(path)
    document = {"state": {"count": 0, "items": {f"k{i}": "x" * 90 for i in range(10_000)}}}
    version = await adapter.save_logged("big", Write(codec.encode(document), compacts=True), 0)
    base = _query(path, "SELECT version, data FROM clp_state WHERE key = 'big'")
    await adapter.run(lambda c: c.execute("PRAGMA wal_autocheckpoint = 0"))
    await adapter.run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    commits = 50
    for n in range(1, commits + 1):
        version = await adapter.save_logged("big", _count(n), version)
    grown = _wal_bytes(path) / commits
    assert grown < 3 * 4120, f"{grown:.0f} bytes written per append"
    assert _query(path, "SELECT version, data FROM clp_state WHERE key = 'big'") == base
    assert _query(path, "SELECT COUNT(*), MIN(version), MAX(version) FROM clp_patches") == [(commits, 2, 51)]
    document["state"]["count"] = commits
    assert await SQLiteAdapter(path).load_versioned("big") == (document, 51)
    assert await adapter.keys() == ["big"]
    await adapter.close()


async def test_a_file_of_small_documents_has_no_patch_tables(tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    adapter = SQLiteAdapter(path)
    version = await adapter.save_versioned("small", {"state": {"n": 1}}, 0)
    await adapter.save_versioned("small", {"state": {"n": 2}}, version)
    assert _tables(path) == {"clp_state"}
    await _patched(adapter, "big", 1)
    assert _tables(path) == {"clp_state", "clp_patch_keys", "clp_patches"}
    await adapter.close()


async def test_compaction_and_delete_drop_the_patch_rows(tmp_path: Path) -> None:
    path = tmp_path / "drop.db"
    adapter = SQLiteAdapter(path)
    version = await _patched(adapter, "k", 3)
    await _patched(adapter, "other", 2)
    version = await adapter.save_logged("k", Write(codec.encode(big_document(9)), compacts=True), version)
    assert _query(path, "SELECT COUNT(*) FROM clp_patches") == [(2,)]  # other's
    await adapter.save_logged("k", _count(10), version)
    await adapter.delete("k")
    assert _query(path, "SELECT key FROM clp_patch_keys") == [("other",)]
    assert _query(path, "SELECT COUNT(*) FROM clp_patches") == [(2,)]
    assert await adapter.load_versioned("other") == (big_document(2), 3)
    await adapter.close()


async def test_a_file_of_the_previous_version_loads_and_takes_patches(tmp_path: Path) -> None:
    """A file holding only clp_state (written before patches existed) loads, also read-only,
    and the first patch adds the tables."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE clp_state (key TEXT PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL)")
        conn.execute("INSERT INTO clp_state VALUES ('k', 7, ?)", (codec.encode(big_document()),))
    conn.close()
    reader = SQLiteAdapter(path, read_only=True)
    assert await reader.load_versioned("k") == (big_document(), 7)
    adapter = SQLiteAdapter(path)
    log = PatchLog()
    assert await adapter.load_logged("k", log) == (big_document(), 7)
    assert await adapter.save_logged("k", _count(1), 7) == 8
    assert await adapter.load_versioned("k") == (big_document(1), 8)
    assert await reader.load_versioned("k") == (big_document(1), 8)  # the tables appeared after it opened
    await reader.close()
    await adapter.close()


async def test_a_read_only_open_reads_the_patches_and_refuses_appends(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    writer = SQLiteAdapter(path)
    version = await _patched(writer, "k", 2)
    reader = SQLiteAdapter(path, read_only=True)
    log = PatchLog()
    assert await reader.load_logged("k", log) == (big_document(2), version)
    assert log.patches == 2
    with pytest.raises(StorageError, match="read-only") as refused:
        await reader.save_logged("k", _count(3), version)
    assert refused.value.outcome == "not_applied"
    assert await writer.load_versioned("k") == (big_document(2), version)
    await reader.close()
    await writer.close()


async def test_a_writer_that_knows_nothing_of_patches_cannot_replace_a_patched_base(tmp_path: Path) -> None:
    """An older clp-core on the same file compares and sets the base row's version only: a
    trigger refuses its update while the key has patches (it would lose them), and its delete
    takes the patches along."""
    path = tmp_path / "mixed.db"
    adapter = SQLiteAdapter(path)
    version = await _patched(adapter, "k", 2)
    with pytest.raises(sqlite3.IntegrityError, match="has patches"):
        _query(path, "UPDATE clp_state SET data = ?, version = version + 1 WHERE key = 'k' AND version = 1",
               codec.encode({"state": {"stale": True}}))
    assert await adapter.load_versioned("k") == (big_document(2), version)
    _query(path, "DELETE FROM clp_state WHERE key = 'k'")
    assert _query(path, "SELECT COUNT(*) FROM clp_patches") == [(0,)]
    assert _query(path, "SELECT COUNT(*) FROM clp_patch_keys") == [(0,)]
    await adapter.save_versioned("k", {"state": {"fresh": True}}, 0)
    assert await adapter.load_versioned("k") == ({"state": {"fresh": True}}, 1)
    await adapter.close()


async def test_patch_rows_that_skip_a_version_or_do_not_parse_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    adapter = SQLiteAdapter(path)
    await _patched(adapter, "gap", 3)
    _query(path, "DELETE FROM clp_patches WHERE version = 3")
    with pytest.raises(CorruptStateError, match="skip version 3"):
        await adapter.load_versioned("gap")
    await _patched(adapter, "garbled", 1)
    _query(path, "UPDATE clp_patches SET data = 'not json' WHERE id = (SELECT MAX(id) FROM clp_patches)")
    with pytest.raises(CorruptStateError, match="garbled"):
        await adapter.load("garbled")
    await adapter.close()


async def test_no_slot_left_for_a_new_patched_key_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "slots.db"
    adapter = SQLiteAdapter(path)
    await _patched(adapter, "first", 1)
    _query(path, "INSERT INTO clp_patch_keys (slot, key) VALUES (?, 'taken')", (1 << 31) - 1)
    version = await _patched(adapter, "second", 0)
    with pytest.raises(StorageError, match="no slot left") as refused:
        await adapter.save_logged("second", _count(1), version)
    assert refused.value.outcome == "not_applied"
    assert await adapter.load_versioned("second") == (big_document(), version)
    assert _query(path, "SELECT COUNT(*) FROM clp_patch_keys WHERE key = 'second'") == [(0,)]
    await adapter.close()


# -- no statement a commit does not need ----------------------------------------------------------


async def _traced(adapter: SQLiteAdapter) -> list[str]:
    """The statements the adapter's connection runs from now on."""
    statements: list[str] = []
    await adapter.run(lambda c: c.set_trace_callback(statements.append))
    return statements


async def test_the_patch_tables_are_looked_up_until_found_then_never(tmp_path: Path) -> None:
    path = tmp_path / "lookup.db"
    adapter = SQLiteAdapter(path)
    statements = await _traced(adapter)
    version = await adapter.save_versioned("small", {"state": {"n": 1}}, 0)
    await adapter.load_versioned("small")
    assert sum("sqlite_master" in s for s in statements) == 2  # no tables yet: asked each time
    version = await _patched(adapter, "k", 2)
    statements.clear()
    log = PatchLog()
    assert await adapter.load_logged("k", log) == (big_document(2), version)
    version = await adapter.save_logged("k", _count(3), version)
    version = await adapter.save_logged("k", Write(codec.encode(big_document(4)), compacts=True), version)
    await adapter.load_versioned("small")
    assert [s for s in statements if "sqlite_master" in s] == []
    await adapter.close()
    statements = await _traced(adapter)  # a new connection asks again, once
    for _ in range(3):
        assert await adapter.load_versioned("k") == (big_document(4), version)
    assert sum("sqlite_master" in s for s in statements) == 1
    await adapter.close()


async def test_a_whole_write_deletes_patch_rows_only_when_patches_follow_the_base(tmp_path: Path) -> None:
    path = tmp_path / "whole.db"
    adapter = SQLiteAdapter(path)
    version = await _patched(adapter, "k", 2)
    statements = await _traced(adapter)
    log = PatchLog()
    await adapter.load_logged("k", log)
    write = log.prepare(lambda: big_document(5), None)
    assert write.over_patches
    version = await adapter.save_logged("k", write, version)
    log.done(write)
    deletes = [s for s in statements if s.startswith("DELETE FROM clp_patches")]
    assert len(deletes) == 1
    for n in (6, 7):  # no patch follows the base (the key keeps its slot)
        write = log.prepare(lambda: big_document(n), None)  # noqa: B023 - used at once
        assert not write.over_patches
        version = await adapter.save_logged("k", write, version)
        log.done(write)
    await adapter.save("k", big_document(8))
    version += 1
    assert [s for s in statements if s.startswith("DELETE FROM clp_patches")] == deletes
    assert _query(path, "SELECT key FROM clp_patch_keys") == [("k",)]
    assert await adapter.load_versioned("k") == (big_document(8), version)
    version = await adapter.save_logged("k", _count(9), version)
    assert await adapter.load_versioned("k") == (big_document(9), version)
    await adapter.close()


async def test_a_load_sees_the_patches_another_adapter_wrote_after_it_looked(tmp_path: Path) -> None:
    """Whether clp_patches exists is kept once seen, never while it is missing: another
    process may make it at any time, and its patches must be read (and compacted away)."""
    path = tmp_path / "shared.db"
    first, second = SQLiteAdapter(path), SQLiteAdapter(path)
    version = await first.save_logged("k", Write(codec.encode(big_document()), compacts=True), 0)
    assert await first.load_versioned("k") == (big_document(), version)  # looked: no tables
    for n in (1, 2):
        version = await second.save_logged("k", _count(n), version)  # makes the tables, then appends
    log = PatchLog()
    assert await first.load_logged("k", log) == (big_document(2), version)
    assert log.patches == 2
    with pytest.raises(ConflictError):
        await first.save_logged("k", _count(9), version - 1)
    version = await first.save_logged("k", _count(3), version)  # first knows of the tables now
    version = await second.save_logged("other", Write(codec.encode(big_document()), compacts=True), 0)
    version = await second.save_logged("other", _count(1), version)  # a key patched after first looked
    assert await first.load_versioned("other") == (big_document(1), version)
    version = await first.save_logged("other", Write(codec.encode(big_document(5)), compacts=True), version)
    assert await second.load_logged("other", log) == (big_document(5), version)
    assert log.patches == 0
    for adapter in (first, second):
        await adapter.close()


async def test_a_reopened_connection_asks_again_whether_the_patch_tables_exist(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    adapter = SQLiteAdapter(path)
    version = await _patched(adapter, "k", 1)
    assert await adapter.load_versioned("k") == (big_document(1), version)  # the tables seen
    await adapter.close()
    path.unlink()  # another file at the same path, without the patch tables
    await adapter.save_versioned("k", {"state": {"n": 1}}, 0)
    assert await adapter.load_versioned("k") == ({"state": {"n": 1}}, 1)
    await adapter.close()
