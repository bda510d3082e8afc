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

from clp_core import codec
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.resolve import resolve_storage
from clp_core.storage import FileSystemAdapter, filesystem
from clp_core.storage.filelog import encode_record, parse_records
from clp_core.storage.filesystem import STALE_TEMP_AGE, key_to_filename, remove_stale_temp_files, temp_name
from clp_core.storage.patch import Patch, PatchLog, Write
from clp_core.testing.patching import big_document
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


# -- diff-sized saves: the patch log next to the key's file ----------------------------------


def _count(n: int) -> Write:
    return Write(Patch(((("state", "count"), n),)).encode(), compacts=False)


async def _patched(adapter: FileSystemAdapter, key: str, patches: int) -> int:
    """big_document() as the base, then ``patches`` patches of the count."""
    version = await adapter.save_logged(key, Write(codec.encode(big_document()), compacts=True), 0)
    for n in range(1, patches + 1):
        version = await adapter.save_logged(key, _count(n), version)
    return version


def _log(directory: Path, key: str) -> Path:
    return directory / (key_to_filename(key) + ".patches")


async def test_an_append_adds_a_record_and_leaves_the_file(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    version = await _patched(adapter, "k", 0)
    base = tmp_path / key_to_filename("k")
    before = (base.stat().st_ino, base.read_bytes())
    for n in range(1, 4):
        version = await adapter.save_logged("k", _count(n), version)
    assert (base.stat().st_ino, base.read_bytes()) == before
    records, used = parse_records(_log(tmp_path, "k").read_bytes(), key="k", backend="file")
    assert [v for v, _ in records] == [2, 3, 4] and used == _log(tmp_path, "k").stat().st_size
    assert _log(tmp_path, "k").stat().st_size < 3 * 200
    assert await FileSystemAdapter(tmp_path).load_versioned("k") == (big_document(3), 4)
    assert await adapter.keys() == ["k"]
    # compaction writes a new file and removes the log
    await adapter.save_logged("k", Write(codec.encode(big_document(7)), compacts=True), version)
    assert not _log(tmp_path, "k").exists()
    assert await adapter.load_versioned("k") == (big_document(7), 5)


@pytest.mark.parametrize("cut", [1, 3, 9, 40], ids=["in-version", "in-length", "in-text", "before-newline"])
async def test_a_record_cut_short_is_not_there_and_the_next_append_cuts_it_off(tmp_path: Path, cut: int) -> None:
    """A writer killed mid-append (never acknowledged) leaves part of a record: loads stop
    before it, and the next append replaces it."""
    adapter = FileSystemAdapter(tmp_path)
    version = await _patched(adapter, "k", 2)
    record = encode_record(version + 1, _count(99).text)
    with _log(tmp_path, "k").open("ab") as f:
        f.write(record[:cut] if cut < 40 else record[:-1])
    fresh = FileSystemAdapter(tmp_path)
    assert await fresh.load_versioned("k") == (big_document(2), version)
    assert await fresh.save_logged("k", _count(3), version) == version + 1
    assert await FileSystemAdapter(tmp_path).load_versioned("k") == (big_document(3), version + 1)
    records, used = parse_records(_log(tmp_path, "k").read_bytes(), key="k", backend="file")
    assert [v for v, _ in records] == [2, 3, 4] and used == _log(tmp_path, "k").stat().st_size
    # an adapter that appended before the cut record was written cuts it off too
    with _log(tmp_path, "k").open("ab") as f:
        f.write(b"5\t12\t{\"form")
    assert await fresh.save_logged("k", _count(4), version + 1) == version + 2
    assert await FileSystemAdapter(tmp_path).load_versioned("k") == (big_document(4), version + 2)


async def test_patches_left_from_before_the_file_are_skipped(tmp_path: Path) -> None:
    """A writer killed between writing the new file and removing the old log leaves patches
    of older versions behind: skipped, and appended after."""
    adapter = FileSystemAdapter(tmp_path)
    version = await _patched(adapter, "k", 3)
    left = _log(tmp_path, "k").read_bytes()
    version = await adapter.save_logged("k", Write(codec.encode(big_document(9)), compacts=True), version)
    _log(tmp_path, "k").write_bytes(left)
    log = PatchLog()
    assert await FileSystemAdapter(tmp_path).load_logged("k", log) == (big_document(9), version)
    assert log.patches == 0
    version = await adapter.save_logged("k", _count(10), version)
    assert await FileSystemAdapter(tmp_path).load_versioned("k") == (big_document(10), version)


async def test_a_delete_cut_short_leaves_patches_a_new_document_never_sees(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    await _patched(adapter, "k", 3)
    (tmp_path / key_to_filename("k")).unlink()  # killed after removing the file, before the log
    assert await adapter.load_versioned("k") == (None, 0)
    with pytest.raises(ConflictError):
        await adapter.save_logged("k", _count(1), 0)
    assert await adapter.save_versioned("k", {"state": {"new": True}}, 0) == 1
    assert not _log(tmp_path, "k").exists()
    assert await adapter.load_versioned("k") == ({"state": {"new": True}}, 1)


async def test_a_load_reads_again_when_the_file_is_replaced_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base and log are read without a lock: a compaction (and an append after it) between
    reading one and the other is seen, and both are read again."""
    adapter, other = FileSystemAdapter(tmp_path), FileSystemAdapter(tmp_path)
    version = await _patched(adapter, "k", 3)
    original = filesystem.read_from
    replaced: list[int] = []

    def read_from(fd: int, offset: int) -> bytes:
        raw = original(fd, offset)
        if not replaced:  # another process compacts and appends, once
            replaced.append(fd)
            other._store("k", big_document(20), None, version)
            other._store("k", None, _count(21), version + 1)
        return raw

    monkeypatch.setattr(filesystem, "read_from", read_from)
    assert await adapter.load_versioned("k") == (big_document(21), version + 2)


async def test_a_malformed_log_is_corrupt(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    await _patched(adapter, "k", 1)
    log = _log(tmp_path, "k")
    whole = log.read_bytes()
    for bad in (b"x\t3\tabc\n" + b"0" * 30, b"3\t2\tabc\n", encode_record(4, _count(4).text)):
        log.write_bytes(whole + bad)
        with pytest.raises(CorruptStateError, match="patch log of key 'k'"):
            await adapter.load("k")
        with pytest.raises(CorruptStateError):
            await adapter.save_logged("k", _count(2), 2)
    log.write_bytes(whole + encode_record(3, "not json"))
    with pytest.raises(CorruptStateError):
        await adapter.load("k")


async def test_a_file_of_the_previous_version_loads_and_takes_patches(tmp_path: Path) -> None:
    key = "order/42"
    raw = codec.encode({"version": 5, "document": big_document(), "key": key}).encode()  # as 0.x wrote it
    (tmp_path / key_to_filename(key)).write_bytes(raw)
    adapter = FileSystemAdapter(tmp_path)
    assert await adapter.load_versioned(key) == (big_document(), 5)
    assert await adapter.save_logged(key, _count(1), 5) == 6
    assert (tmp_path / key_to_filename(key)).read_bytes() == raw
    reader = FileSystemAdapter(tmp_path, read_only=True)
    assert await reader.load_versioned(key) == (big_document(1), 6)
    with pytest.raises(StorageError, match="read-only"):
        await reader.save_logged(key, _count(2), 6)


async def test_two_adapters_appending_in_turn_see_each_other(tmp_path: Path) -> None:
    """Each adapter remembers how far it read a key's log; what another appended since is read
    before its next compare-and-set."""
    first, second = FileSystemAdapter(tmp_path), FileSystemAdapter(tmp_path)
    version = await _patched(first, "k", 1)
    for n in range(2, 8):
        writer = first if n % 2 else second
        with pytest.raises(ConflictError):
            await writer.save_logged("k", _count(n), version - 1)
        version = await writer.save_logged("k", _count(n), version)
    version = await second.save_logged("k", Write(codec.encode(big_document(8)), compacts=True), version)
    with pytest.raises(ConflictError):
        await first.save_logged("k", _count(9), version - 1)
    version = await first.save_logged("k", _count(9), version)
    assert await second.load_versioned("k") == (big_document(9), version)


async def test_a_cancelled_save_keeps_the_key_locked_until_its_thread_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compare-and-append runs in a thread that a cancellation cannot stop: the next
    writer of the key must wait for it, or both append the same version."""
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save_versioned("k", {"n": 0}, 0)
    spans: list[tuple[str, float, float]] = []
    real = adapter._store

    def slow_store(*args: object) -> int:
        started = time.monotonic()
        time.sleep(0.2)
        try:
            return real(*args)  # type: ignore[arg-type]
        finally:
            spans.append((str(args[3]), started, time.monotonic()))

    monkeypatch.setattr(adapter, "_store", slow_store)
    first = asyncio.create_task(adapter.save_versioned("k", {"n": 1}, 1))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(ConflictError):  # the cancelled save landed first: version 1 is gone
        await adapter.save_versioned("k", {"n": 2}, 1)
    (_, _, first_end), (_, second_start, _) = spans
    assert second_start >= first_end, "the second save ran beside the cancelled one's thread"
    assert await adapter.load_versioned("k") == ({"n": 1}, 2)


async def test_a_cancelled_delete_keeps_the_key_locked_until_its_thread_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that came after a cancelled delete must not be unlinked by the delete's thread."""
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save_versioned("k", {"n": 0}, 0)
    real = adapter._delete

    def slow_delete(key: str) -> None:
        time.sleep(0.2)
        real(key)

    monkeypatch.setattr(adapter, "_delete", slow_delete)
    deleting = asyncio.create_task(adapter.delete("k"))
    await asyncio.sleep(0.05)
    deleting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await deleting
    await adapter.save_versioned("k", {"n": "after"}, 0)  # the key is gone: a new first version
    assert await adapter.load_versioned("k") == ({"n": "after"}, 1)


async def test_an_os_error_inside_a_save_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = FileSystemAdapter(tmp_path)
    await adapter.save_versioned("k", {"n": 0}, 0)

    def refused(path: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(filesystem, "stat", refused)
    with pytest.raises(StorageError, match=r"save of 'k'.*Permission denied"):
        await adapter.save_versioned("k", {"n": 1}, 1)
