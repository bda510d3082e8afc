"""Files in one folder, one JSON file per key, written atomically (temp, fsync, rename).

Temp files are named ``.<file>.<pid>.<random>.tmp``. A process killed mid-save leaves one
behind; adapters remove such leftovers when first used and then at most once a minute: those
whose owning process is gone, and any older than :data:`STALE_TEMP_AGE` seconds (a pid can be
reused, and means nothing on a shared network folder).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import secrets
import time
import urllib.parse
import weakref
from pathlib import Path
from typing import ClassVar

import aiofiles
import aiofiles.os

from .. import codec
from ..errors import ConflictError, CorruptStateError, StorageError
from .base import Document
from .sqlite import missing_database, refuse_writes

_MAX_NAME = 200

#: Seconds after which a temp file is a leftover whatever process it names.
STALE_TEMP_AGE = 3600.0
_SWEEP_EVERY = 60.0
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
    """One ``<quoted key>.json`` per key under ``directory`` (created if missing).

    Versioned saves hold an ``fcntl`` lock on a ``.lock`` file per key, so processes on one
    machine sharing the folder never lose an update.

    ``read_only=True`` (URL option ``?mode=ro``): the folder must exist (else a
    :class:`StorageError`, "no such database"); nothing is created or swept, and
    ``save``/``save_versioned``/``delete`` are refused.
    """

    name = "file"

    def __init__(self, directory: str | os.PathLike[str], *, stale_temp_age: float = STALE_TEMP_AGE,
                 read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.stale_temp_age = stale_temp_age
        self.read_only = read_only
        self._swept_at: float | None = None
        if read_only:
            refuse_writes(self, ("save", "save_versioned", "delete"), str(self.directory))

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

    async def _read(self, key: str) -> tuple[Document | None, int]:
        path = self._path(key)
        try:
            async with aiofiles.open(path, "rb") as f:
                raw = await f.read()
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}", backend=self.name) from exc
        data = codec.decode(raw, backend=self.name, key=key)
        if not isinstance(data, dict) or "document" not in data or "version" not in data:
            raise CorruptStateError(f"stored value for key {key!r} lacks document/version", backend=self.name)
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored value for key {key!r} has a malformed version", backend=self.name)
        return codec.check_document(data["document"], key=key, backend=self.name), version

    async def _write(self, key: str, document: Document, version: int) -> None:
        path = self._path(key)
        encoded = codec.encode({"version": version, "document": document, "key": key}).encode()
        tmp = path.with_name(temp_name(path.name))
        try:
            await aiofiles.os.makedirs(self.directory, exist_ok=True)
            async with aiofiles.open(tmp, "wb") as f:
                await f.write(encoded)
                await f.flush()
                await asyncio.to_thread(os.fsync, f.fileno())
            await aiofiles.os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StorageError(f"cannot write {path}: {exc}", backend=self.name) from exc

    async def load(self, key: str) -> Document | None:
        await self._sweep()
        return (await self._read(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        await self._sweep()
        return await self._read(key)

    async def save(self, key: str, document: Document) -> None:
        await self._sweep()
        async with _FileLock(self._path(key)):
            _, version = await self._read(key)
            await self._write(key, document, version + 1)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        await self._sweep()
        async with _FileLock(self._path(key)):
            _, version = await self._read(key)
            if version != expected_version:
                raise ConflictError(f"key {key!r} is at version {version}, not {expected_version}", backend=self.name)
            await self._write(key, document, version + 1)
            return version + 1

    async def delete(self, key: str) -> None:
        async with _FileLock(self._path(key)):
            try:
                await aiofiles.os.remove(self._path(key))
            except FileNotFoundError:
                pass
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
        pass


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
