"""FileSystemAdapter: the conformance suite, plus what only a folder of files can get wrong."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clp_core.errors import CorruptStateError, StorageError
from clp_core.resolve import resolve_storage
from clp_core.storage import FileSystemAdapter
from clp_core.storage.filesystem import STALE_TEMP_AGE, key_to_filename, remove_stale_temp_files, temp_name
from clp_core.testing.storage import NASTY_KEYS, StorageAdapterSuite, bounded_default_executor


class TestFileSystemAdapter(StorageAdapterSuite):
    async def make_adapter(self) -> FileSystemAdapter:
        return FileSystemAdapter(self.tmp_path / "store")

    async def write_raw(self, adapter: FileSystemAdapter, key: str, raw: bytes) -> None:
        adapter.directory.mkdir(parents=True, exist_ok=True)
        (adapter.directory / key_to_filename(key)).write_bytes(raw)


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


ESCAPING_KEYS = (
    "../../etc/passwd",
    "../outside",
    "..",
    ".",
    "/etc/passwd",
    "/tmp/abs",
    "a/../../b",
    "sub/dir/file",
    "..\\..\\windows",
    "%2e%2e%2fescape",
    "nul\x00byte",
    "x" * 1000,
)


async def test_keys_never_escape_the_folder(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "store"
    adapter = FileSystemAdapter(store)
    keys = list(dict.fromkeys(ESCAPING_KEYS + NASTY_KEYS))
    for i, key in enumerate(keys):
        await adapter.save(key, {"i": i})
    for i, key in enumerate(keys):
        assert await adapter.load(key) == {"i": i}
    everything = _files_under(tmp_path)
    outside = [p for p in everything if p != store.parent and p != store and store not in p.parents]
    assert outside == [], f"files created outside the store folder: {outside}"
    nested = [p for p in store.iterdir() if p.is_dir()]
    assert nested == [], f"keys created sub-folders: {nested}"
    data_files = [p for p in store.iterdir() if p.name.endswith(".json")]
    assert len(data_files) == len(keys), "two keys share a file, or a key has several"
    for key in keys:
        await adapter.delete(key)
    assert [p for p in store.iterdir() if p.name.endswith(".json")] == []


def test_file_names_are_safe_and_short() -> None:
    for key in ESCAPING_KEYS + NASTY_KEYS:
        name = key_to_filename(key)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith("."), name
        assert name not in (".", "..")
        # room left for the ".<name>.<pid>.<id>.tmp" temp file and the ".lock" file
        assert len(name.encode()) <= 255 - 40, len(name.encode())


def test_empty_key_is_refused() -> None:
    with pytest.raises(StorageError):
        key_to_filename("")


async def test_hashed_long_key_cannot_collide_with_a_short_key(tmp_path: Path) -> None:
    """A long key is stored as ``<first 100 quoted chars>~<sha256>``; a short key spelled
    exactly that way must still get a file of its own."""
    adapter = FileSystemAdapter(tmp_path)
    long_key = "k" * 1000
    lookalike = "k" * 100 + "~" + hashlib.sha256(long_key.encode()).hexdigest()
    await adapter.save(long_key, {"who": "long"})
    await adapter.save(lookalike, {"who": "lookalike"})
    assert await adapter.load(long_key) == {"who": "long"}
    assert await adapter.load(lookalike) == {"who": "lookalike"}


def _stray_files(store: Path) -> list[str]:
    return [p.name for p in store.iterdir() if not (p.name.endswith(".json") or p.name.endswith(".json.lock"))]


async def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    for i in range(20):
        await adapter.save("k", {"i": i, "pad": "x" * (1000 * i)})
    # a few concurrent saves per key (many would hit the thread-pool deadlock the suite checks)
    with bounded_default_executor(32):
        await asyncio.wait_for(asyncio.gather(*(adapter.save(f"key-{i % 3}", {"i": i}) for i in range(9))), 30)
    version = (await adapter.load_versioned("v"))[1]
    for _ in range(10):
        version = await adapter.save_versioned("v", {"n": version}, version)
    assert _stray_files(tmp_path) == []
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


async def test_failed_write_keeps_old_value_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save("k", {"old": True})

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="No space left"):
        await adapter.save("k", {"new": True})
    with pytest.raises(StorageError):
        await adapter.save_versioned("k", {"new": True}, 1)
    monkeypatch.undo()
    assert await adapter.load("k") == {"old": True}
    assert await adapter.load_versioned("k") == ({"old": True}, 1)
    assert _stray_files(tmp_path) == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"format": "clp/2", "data": {"version": 1, "document": {"state": {}}}}', id="newer-format"),
        pytest.param(b'{"format": "clp/0", "data": {"version": 1, "document": {"state": {}}}}', id="older-format"),
        pytest.param(b'{"data": {"version": 1, "document": {}}}', id="no-format"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", id="garbage"),
        pytest.param(b'{"format": "clp/1", "data": {"document": {"state": {}}}}', id="no-version"),
        pytest.param(b'{"format": "clp/1", "data": {"version": 1}}', id="no-document"),
        pytest.param(b'{"format": "clp/1", "data": {"version": "one", "document": {}}}', id="bad-version"),
        pytest.param(b'{"format": "clp/1", "data": [1]}', id="data-not-object"),
        pytest.param(b'{"format": "clp/1", "data": {"version": 1, "document": null}}', id="document-null"),
        pytest.param(b'{"format": "clp/1", "data": {"version": 1, "document": [1]}}', id="document-array"),
        pytest.param(b'{"format": "clp/1", "data": {"version": 0, "document": {}}}', id="version-zero"),
        pytest.param(b'{"format": "clp/1", "data": {"version": 1, "document": {"x": NaN}}}', id="nan"),
    ],
)
async def test_unreadable_file_is_corrupt_state(tmp_path: Path, raw: bytes) -> None:
    adapter = FileSystemAdapter(tmp_path)
    (tmp_path / key_to_filename("k")).write_bytes(raw)
    with pytest.raises(CorruptStateError):
        await adapter.load("k")
    with pytest.raises(CorruptStateError):
        await adapter.load_versioned("k")
    # a save must not silently replace data it cannot read
    assert (tmp_path / key_to_filename("k")).read_bytes() == raw


async def test_unknown_format_error_names_the_version(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    (tmp_path / key_to_filename("k")).write_text('{"format": "clp/7", "data": {"version": 1, "document": {}}}')
    with pytest.raises(CorruptStateError, match="clp/7"):
        await adapter.load("k")


async def test_two_adapters_on_one_folder_share_versions(tmp_path: Path) -> None:
    first, second = FileSystemAdapter(tmp_path), FileSystemAdapter(tmp_path)
    version = await first.save_versioned("k", {"n": 1}, 0)
    assert await second.load_versioned("k") == ({"n": 1}, version)

    async def add(adapter: FileSystemAdapter, times: int) -> None:
        for _ in range(times):
            while True:
                document, version = await adapter.load_versioned("k")
                try:
                    await adapter.save_versioned("k", {"n": document["n"] + 1}, version)
                    break
                except StorageError:
                    await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(add(first, 50), add(second, 50)), 60)
    assert await first.load("k") == {"n": 101}


async def test_cancelled_save_waiting_for_the_lock_does_not_wedge_the_key(tmp_path: Path) -> None:
    """A save cancelled (a request timeout, say) while another process holds the key's lock
    must not leave the lock taken once that process lets go."""
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save("k", {"n": 0})
    lock_path = tmp_path / (key_to_filename("k") + ".lock")
    with bounded_default_executor(8):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" holds the lock
        try:
            waiting = asyncio.ensure_future(adapter.save("k", {"n": "cancelled"}))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(adapter.save("k", {"n": 1}), 5)
        except TimeoutError:
            pytest.fail("the key's lock stayed taken after a cancelled save")
    assert await adapter.load("k") == {"n": 1}


# -- URLs ------------------------------------------------------------------------------


def test_file_url_absolute_dir(tmp_path: Path) -> None:
    adapter = resolve_storage(f"file://{tmp_path}/store")
    assert isinstance(adapter, FileSystemAdapter)
    assert Path(adapter.directory) == tmp_path / "store"


def test_file_url_root_style() -> None:
    adapter = resolve_storage("file:///dir")
    assert isinstance(adapter, FileSystemAdapter)
    assert Path(adapter.directory) == Path("/dir")


def test_file_url_percent_encoded_path(tmp_path: Path) -> None:
    adapter = resolve_storage(f"file://{tmp_path}/my%20store")
    assert Path(adapter.directory) == tmp_path / "my store"


def test_file_url_with_localhost_host(tmp_path: Path) -> None:
    """RFC 8089: ``file://localhost/path`` is the same file as ``file:///path``."""
    adapter = resolve_storage(f"file://localhost{tmp_path}")
    assert Path(adapter.directory) == tmp_path


async def test_file_url_adapter_writes_into_that_folder(tmp_path: Path) -> None:
    adapter = resolve_storage(f"file://{tmp_path}/via-url")
    await adapter.save("k", {"x": 1})
    assert (tmp_path / "via-url" / key_to_filename("k")).is_file()
    assert await FileSystemAdapter(tmp_path / "via-url").load("k") == {"x": 1}


# -- leftover temp files ---------------------------------------------------------------------
def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftover(directory: Path, key: str, pid: int, age: float = 0.0) -> Path:
    path = directory / f".{key_to_filename(key)}.{pid}.{secrets.token_hex(8)}.tmp"
    path.write_text('{"format": "clp/1", "data": {"version": 9, "document": {"half": "writ')
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def test_temp_names_are_recognisable() -> None:
    name = temp_name(key_to_filename("order:42"))
    assert name.startswith(".order%3A42.json.") and name.endswith(".tmp")
    assert f".{os.getpid()}." in name
    assert name != temp_name(key_to_filename("order:42"))


async def test_leftover_of_a_killed_process_is_removed_on_first_use(tmp_path: Path) -> None:
    dead = _leftover(tmp_path, "k", _dead_pid())
    adapter = FileSystemAdapter(tmp_path)
    assert await adapter.load("k") is None
    assert not dead.exists()
    await adapter.save("k", {"ok": True})
    assert await adapter.load("k") == {"ok": True}


async def test_leftover_is_removed_on_save(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save("k", {"n": 1})
    adapter._swept_at = None  # the last sweep was long enough ago
    dead = _leftover(tmp_path, "k", _dead_pid())
    await adapter.save_versioned("k", {"n": 2}, 1)
    assert not dead.exists()


async def test_temp_files_of_live_processes_stay_unless_too_old(tmp_path: Path) -> None:
    live = _leftover(tmp_path, "a", os.getppid())
    mine = _leftover(tmp_path, "b", os.getpid())
    old = _leftover(tmp_path, "c", os.getppid(), age=STALE_TEMP_AGE + 60)
    other = tmp_path / ".unrelated.123.tmp"
    other.write_text("not ours")
    notes = tmp_path / "notes.txt"
    notes.write_text("not ours")
    await FileSystemAdapter(tmp_path).save("k", {"x": 1})
    assert live.exists() and mine.exists()
    assert not old.exists()
    assert other.exists() and notes.exists()


def test_remove_stale_temp_files_reports_what_it_removed(tmp_path: Path) -> None:
    dead = _leftover(tmp_path, "k", _dead_pid())
    assert remove_stale_temp_files(tmp_path) == [dead]
    assert remove_stale_temp_files(tmp_path / "missing") == []
