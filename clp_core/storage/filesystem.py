"""Files in one folder, one JSON file per key, written atomically (temp, fsync, rename).

Temp files are named ``.<file>.<pid>.<random>.tmp``. A process killed mid-save leaves one
behind; adapters remove such leftovers when first used and then at most once a minute: those
whose owning process is gone, and any older than :data:`STALE_TEMP_AGE` seconds (a pid can be
reused, and means nothing on a shared network folder).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import os
import re
import secrets
import threading
import time
import urllib.parse
import weakref
from pathlib import Path
from typing import ClassVar

import aiofiles.os
import attrs

from .. import codec
from ..errors import ConflictError, CorruptStateError, StorageError
from . import filelog
from .base import Document, refuse_writes
from .filelog import OpenFile, Seen, after_base, encode_record, parse_records, read_from, stat, unlink, write_all
from .patch import PatchLog, Write, enveloped, patched_document
from .sqlite import missing_database

_MAX_NAME = 200

#: Seconds after which a temp file is a leftover whatever process it names.
STALE_TEMP_AGE = 3600.0
_SWEEP_EVERY = 60.0
_READ_TRIES = 100  # reads of a key's files, replaced meanwhile each time, before giving up
_SEEN_KEYS = 64  # keys whose files an adapter keeps open (saves then skip reading them again)
_TEMP = re.compile(r"\.(?P<file>.+)\.(?P<pid>[0-9]{1,10})\.(?P<tag>[0-9a-f]{1,32})\.tmp")


def temp_name(filename: str) -> str:
    """The temp file a save of ``filename`` writes first: ``.<filename>.<pid>.<random>.tmp``."""
    return f".{filename}.{os.getpid()}.{secrets.token_hex(8)}.tmp"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists (another user's), or cannot tell: leave it to the age bound
    return True


def remove_stale_temp_files(directory: str | os.PathLike[str], *, max_age: float = STALE_TEMP_AGE) -> list[Path]:
    """Remove this adapter's leftover temp files in ``directory``: those whose process is gone
    and those older than ``max_age`` seconds. Other files are never touched. Returns the
    removed paths."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    with entries:
        for entry in entries:
            match = _TEMP.fullmatch(entry.name)
            if match is None:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if age < max_age and _alive(int(match["pid"])):
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def key_to_filename(key: str) -> str:
    """A file name that stays inside the folder whatever the key (``/``, ``..``, NUL...)."""
    if not isinstance(key, str) or not key:
        raise StorageError(f"storage key must be a non-empty string, got {key!r}", backend="file")
    quoted = urllib.parse.quote(key, safe="").replace("~", "%7E")  # "~" marks hashed names
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) > _MAX_NAME:
        digest = hashlib.sha256(key.encode()).hexdigest()
        quoted = f"{quoted[:100]}~{digest}"
    return quoted + ".json"


class FileSystemAdapter:
    """One ``<quoted key>.json`` per key under ``directory`` (created if missing), and, once
    the key's document is patched, the appended patches after it in ``<file>.patches`` (see
    :mod:`clp_core.storage.filelog`).

    Every save holds an ``fcntl`` lock on a ``.lock`` file per key, so processes on one
    machine sharing the folder never lose an update; loads take no lock (they read the file
    and its patches again if the file was replaced meanwhile).

    ``read_only=True`` (URL option ``?mode=ro``): the folder must exist (else a
    :class:`StorageError`, "no such database"); nothing is created or swept, and
    ``save``/``save_versioned``/``save_logged``/``delete`` are refused.
    """

    name = "file"

    def __init__(self, directory: str | os.PathLike[str], *, stale_temp_age: float = STALE_TEMP_AGE,
                 read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.stale_temp_age = stale_temp_age
        self.read_only = read_only
        self._swept_at: float | None = None
        self._seen: collections.OrderedDict[str, Seen] = collections.OrderedDict()
        self._seen_lock = threading.Lock()
        if read_only:
            refuse_writes(self, str(self.directory))

    async def _sweep(self) -> None:
        """Remove leftover temp files on first use, then at most once a minute (read-only:
        check that the folder exists)."""
        if self.read_only:
            if not self.directory.is_dir():
                raise missing_database(str(self.directory), self.name)
            return
        now = time.monotonic()
        if self._swept_at is not None and now - self._swept_at < _SWEEP_EVERY:
            return
        self._swept_at = now
        await asyncio.to_thread(remove_stale_temp_files, self.directory, max_age=self.stale_temp_age)

    def _path(self, key: str) -> Path:
        return self.directory / key_to_filename(key)

    def _decode(self, raw: bytes, key: str) -> tuple[Document, int]:
        data = codec.decode(raw, backend=self.name, key=key)
        if not isinstance(data, dict) or "document" not in data or "version" not in data:
            raise CorruptStateError(f"stored value for key {key!r} lacks document/version", backend=self.name)
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored value for key {key!r} has a malformed version", backend=self.name)
        return codec.check_document(data["document"], key=key, backend=self.name), version

    def _read_files(self, key: str) -> tuple[bytes, bytes] | None:
        """The key's file and its patch log as they were at one moment (None: no file)."""
        path = self._path(key)
        for _ in range(_READ_TRIES):
            try:
                base = OpenFile(os.open(path, os.O_RDONLY))
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc}", backend=self.name) from exc
            try:
                raw = read_from(base.fd, 0)
                try:
                    with open(f"{path}.patches", "rb") as f:
                        log = f.read()
                except FileNotFoundError:
                    log = b""
                if base.names(stat(path)):
                    return raw, log
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc}", backend=self.name) from exc
        raise StorageError(f"{path} was replaced on each of {_READ_TRIES} reads", backend=self.name)

    async def load(self, key: str) -> Document | None:
        return (await self.load_logged(key, PatchLog()))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return await self.load_logged(key, PatchLog())

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        await self._sweep()
        files = await asyncio.to_thread(self._read_files, key)
        if files is None:
            log.loaded(0, ())
            return None, 0
        document, version = self._decode(files[0], key)
        records, _ = parse_records(files[1], key=key, backend=self.name)
        patches = after_base(records, version, version, key=key, backend=self.name)
        patched_document(files[0], [text for _, text in patches], log, key=key, backend=self.name, document=document)
        return document, patches[-1][0] if patches else version

    async def save(self, key: str, document: Document) -> None:
        await self._save(key, document, None, None)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        return await self._save(key, document, None, expected_version)

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        return await self._save(key, None, write, expected_version)

    async def _save(self, key: str, document: Document | None, write: Write | None, expected: int | None) -> int:
        await self._sweep()
        async with _FileLock(self._path(key)):  # held until the thread is done, even when cancelled
            try:
                return await filelog.in_thread_to_the_end(self._store, key, document, write, expected)
            except OSError as exc:
                raise StorageError(f"save of {key!r} under {self.directory} failed: {exc}", backend=self.name) from exc

    def _store(self, key: str, document: Document | None, write: Write | None, expected: int | None) -> int:
        """Under the key's lock: compare-and-set on the head version (any when ``expected`` is
        None), then append ``write`` or write a new base (``document``, or ``write`` compacting)."""
        with self._seen_lock:
            seen = self._seen.pop(key, None)
        seen = self._head(key, seen)
        head = 0 if seen is None else seen.head
        if seen is not None:
            self._keep(key, seen)
        if expected is not None and head != expected:
            raise ConflictError(f"key {key!r} is at version {head}, not {expected}", backend=self.name)
        if write is not None and not write.compacts:
            if seen is None:
                raise ConflictError(f"key {key!r} has no stored document to patch", backend=self.name)
            self._keep(key, self._append(key, seen, write.text))
            return head + 1
        fields = {"version": head + 1, "document": document, "key": key}
        text = (codec.encode(fields) if write is None  # else its text spliced in, not decoded and encoded again
                else enveloped(write.text, fields, "document", key=key, backend=self.name))
        log = f"{self._path(key)}.patches"
        if seen is None:
            unlink(log)  # left by a delete cut short: no patches of a new document
        base = self._write(key, text.encode())
        if seen is not None and seen.log is not None:
            unlink(log)  # after the new base: a writer killed in between leaves patches it skips
        self._keep(key, Seen(base, head + 1, head=head + 1))
        return head + 1

    def _head(self, key: str, seen: Seen | None) -> Seen | None:
        """``seen`` brought up to date with the key's files (None: no file)."""
        path = self._path(key)
        now = stat(path)
        if now is None:
            return None
        if seen is None or not seen.base.names(now):
            try:
                base = OpenFile(os.open(path, os.O_RDONLY))
                _, version = self._decode(read_from(base.fd, 0), key)
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc}", backend=self.name) from exc
            seen = Seen(base, version, head=version)
        log = stat(f"{path}.patches")
        if log is None:
            return Seen(seen.base, seen.version, head=seen.version)
        if seen.log is None or not seen.log.names(log):
            try:
                seen = Seen(seen.base, seen.version, OpenFile(os.open(f"{path}.patches", os.O_RDWR | os.O_APPEND)),
                            head=seen.version)
            except OSError as exc:
                raise StorageError(f"cannot read {path}.patches: {exc}", backend=self.name) from exc
        assert seen.log is not None
        records, used = parse_records(read_from(seen.log.fd, seen.offset), key=key, backend=self.name)
        patches = after_base(records, seen.version, seen.head, key=key, backend=self.name)
        return attrs.evolve(seen, offset=seen.offset + used, head=patches[-1][0] if patches else seen.head)

    def _append(self, key: str, seen: Seen, text: str) -> Seen:
        log_path = f"{self._path(key)}.patches"
        record = encode_record(seen.head + 1, text)
        try:
            if seen.log is None:
                seen = attrs.evolve(seen, log=OpenFile(os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)),
                                    offset=0)
            assert seen.log is not None
            if os.fstat(seen.log.fd).st_size > seen.offset:
                os.ftruncate(seen.log.fd, seen.offset)  # a record cut short: never acknowledged
            try:
                write_all(seen.log.fd, record)
                os.fsync(seen.log.fd)
            except OSError:
                os.ftruncate(seen.log.fd, seen.offset)
                raise
        except OSError as exc:
            raise StorageError(f"cannot append to {log_path}: {exc}", backend=self.name) from exc
        return attrs.evolve(seen, offset=seen.offset + len(record), head=seen.head + 1)

    def _keep(self, key: str, seen: Seen) -> None:
        with self._seen_lock:
            self._seen[key] = seen
            while len(self._seen) > _SEEN_KEYS:
                self._seen.popitem(last=False)

    def _write(self, key: str, encoded: bytes) -> OpenFile:
        """Write the key's file atomically (temp file, fsync, rename); returns it, open."""
        path = self._path(key)
        tmp = path.with_name(temp_name(path.name))
        fd = -1
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            write_all(fd, encoded)
            os.fsync(fd)
            os.replace(tmp, path)
            return OpenFile(fd)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            unlink(tmp)
            raise StorageError(f"cannot write {path}: {exc}", backend=self.name) from exc

    async def delete(self, key: str) -> None:
        async with _FileLock(self._path(key)):  # held until the thread is done, even when cancelled
            await filelog.in_thread_to_the_end(self._delete, key)

    def _delete(self, key: str) -> None:
        with self._seen_lock:
            self._seen.pop(key, None)
        path = self._path(key)
        try:
            unlink(path)  # first: a delete cut short leaves patches without a file, which nothing reads
            unlink(f"{path}.patches")
        except OSError as exc:
            raise StorageError(f"cannot delete key {key!r}: {exc}", backend=self.name) from exc

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted: file names are unquoted; a long
        key's hashed name is read for the ``key`` the file records (files written before it did
        are left out)."""
        return sorted(k for k in await asyncio.to_thread(self._keys) if k.startswith(prefix))

    def _keys(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.directory}: {exc}", backend=self.name) from exc
        found = []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue  # temp and lock files
            stem = name[: -len(".json")]
            if "~" not in stem:
                found.append(urllib.parse.unquote(stem))
                continue
            try:
                data = codec.decode((self.directory / name).read_bytes(), backend=self.name, key=stem)
            except (OSError, CorruptStateError):
                continue
            if isinstance(data, dict) and isinstance(data.get("key"), str):
                found.append(data["key"])
        return found

    async def close(self) -> None:
        with self._seen_lock:
            self._seen.clear()  # closes the files held open


_LOCK_POLL = (0.0005, 0.05)  # first and longest wait between tries of a taken file lock


class _FileLock:
    """An exclusive ``flock`` on ``<file>.lock``.

    Writers of this process queue on an ``asyncio.Lock`` per file first; the file lock is then
    tried without blocking and retried with back-off, so no thread ever waits on it and a
    cancelled waiter leaves nothing behind.
    """

    _local: ClassVar[weakref.WeakValueDictionary[str, asyncio.Lock]] = weakref.WeakValueDictionary()

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        key = str(self.path)
        lock = self._local.get(key)
        if lock is None:
            lock = self._local[key] = asyncio.Lock()
        self.local = lock
        self.fd: int | None = None

    async def __aenter__(self) -> None:
        await self.local.acquire()
        try:
            await aiofiles.os.makedirs(self.path.parent, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            delay = _LOCK_POLL[0]
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _LOCK_POLL[1])
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError):
                raise StorageError(f"cannot lock {self.path}: {exc}", backend="file") from exc
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        self.local.release()
