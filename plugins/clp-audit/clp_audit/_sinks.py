"""Where audit records go: a rotating JSON Lines file, a ``logging`` logger, structlog."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import json
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import IO, Any, Protocol

from clp_core.plugin_api import ConfigError

__all__ = ["JsonlFileSink", "LoggingSink", "Sink", "StructlogSink", "encode"]


def _default(value: Any) -> Any:
    """JSON for what ``json`` does not know: dates as ISO 8601, the rest as plain as possible."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    return repr(value)  # an audit record is never dropped for a value it cannot encode


def encode(record: Mapping[str, Any]) -> str:
    """One JSON line (no newline) for a record."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default)


class Sink(Protocol):
    def enabled(self) -> bool:
        """Whether :meth:`emit` would write anything (lets the plugin skip encoding)."""

    def emit(self, record: Mapping[str, Any], line: str) -> None: ...

    def close(self) -> None: ...


class _RotatingFile:
    """Appends lines to one file, rotating by size like :class:`logging.handlers.RotatingFileHandler`
    (``path`` -> ``path.1`` -> ... -> ``path.<backup_count>``, the oldest dropped).

    One instance per file in a process (runtimes share it), guarded by a thread lock: a write is
    never interleaved with another or with a rotation. Writes are synchronous and flushed.
    """

    def __init__(self, path: Path, max_bytes: int, backup_count: int, fsync: bool) -> None:
        self.path, self.max_bytes, self.backup_count, self.fsync = path, max_bytes, backup_count, fsync
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None

    def write(self, line: str) -> None:
        data = line.encode("utf-8") + b"\n"
        with self._lock:
            file = self._open()
            size = file.tell()
            if self.max_bytes > 0 and self.backup_count > 0 and size > 0 and size + len(data) > self.max_bytes:
                self._rotate()
                file = self._open()
            file.write(data)
            file.flush()
            if self.fsync:
                os.fsync(file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for index in range(self.backup_count - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


_files: weakref.WeakValueDictionary[str, _RotatingFile] = weakref.WeakValueDictionary()
_files_lock = threading.Lock()


class JsonlFileSink:
    """A JSON Lines file, rotated at ``max_bytes`` keeping ``backup_count`` old files.

    ``max_bytes = 0`` never rotates; so does ``backup_count = 0`` (the stdlib's rule: an audit
    trail is not truncated in place). Sinks on the same path share one writer.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 0, backup_count: int = 5,
                 fsync: bool = False) -> None:
        resolved = Path(path).expanduser().resolve()
        with _files_lock:
            file = _files.get(str(resolved))
            if file is None:
                file = _files[str(resolved)] = _RotatingFile(resolved, max_bytes, backup_count, fsync)
            elif (file.max_bytes, file.backup_count, file.fsync) != (max_bytes, backup_count, fsync):
                raise ConfigError(f"clp-audit: {resolved} is already written with other rotation settings")
        self._file = file

    @property
    def path(self) -> Path:
        return self._file.path

    def enabled(self) -> bool:
        return True

    def emit(self, record: Mapping[str, Any], line: str) -> None:
        self._file.write(line)

    def close(self) -> None:
        self._file.close()  # reopened by the next write (another runtime may share the file)


class LoggingSink:
    """A ``logging`` logger: the message is the JSON line; ``record.clp_entry`` the dict."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(name)
        self.level = level

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(self.level)

    def emit(self, record: Mapping[str, Any], line: str) -> None:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "%s", line, extra={"clp_entry": dict(record)})

    def close(self) -> None:
        pass


class StructlogSink:
    """A structlog logger: event ``clp.audit`` with ``phase``, ``intent`` and the ``entry`` dict."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        try:
            import structlog
        except ImportError as exc:
            raise ConfigError("clp-audit: structlog is not installed (pip install 'clp-audit[structlog]')") from exc
        self.logger = structlog.get_logger(name)
        self.method = logging.getLevelName(level).lower()

    def enabled(self) -> bool:
        return True

    def emit(self, record: Mapping[str, Any], line: str) -> None:
        getattr(self.logger, self.method)(
            "clp.audit", phase=record.get("phase"), intent=record.get("intent_name"), entry=dict(record))

    def close(self) -> None:
        pass
