"""The built-in storage plugin: ``memory://``, ``file:///dir``, ``sqlite:///path.db`` and, under
Pyodide, ``localstorage://``; memory and SQLite event stores."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..errors import StorageError
from ..events import MemoryEventStore
from ..hookspecs import hookimpl
from .filesystem import FileSystemAdapter
from .localstorage import LocalStorageAdapter
from .memory import MemoryAdapter
from .sqlite import SQLiteAdapter
from .sqlite_events import SQLiteEventStore

name = "clp-storage"


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = "" if parts.netloc == "localhost" else parts.netloc  # file://localhost/x is this machine
    return urllib.parse.unquote(host + parts.path)


def sqlite_path(url: str) -> str:
    """``sqlite:///app.db`` is relative, ``sqlite:////abs/app.db`` absolute (as SQLAlchemy)."""
    path = _path(url)
    return path[1:] if path.startswith("/") else path


def read_only(url: str) -> bool:
    """Whether ``url`` asks for a read-only open: the query option ``mode=ro`` (``mode=rw``,
    the default, writes). Any other mode is a :class:`StorageError`."""
    modes = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("mode", [])
    for mode in modes:
        if mode not in ("ro", "rw"):
            raise StorageError(f"mode={mode!r} in {url!r}: use mode=ro (read-only) or mode=rw", backend="url")
    return "ro" in modes


@hookimpl
def register_event_stores() -> dict[str, Any]:
    return {
        "memory": lambda url: MemoryEventStore(),
        "sqlite": lambda url: SQLiteEventStore(sqlite_path(url), read_only=read_only(url)),
    }


@hookimpl
def register_storage() -> dict[str, Any]:
    return {
        "memory": lambda url: MemoryAdapter(),
        "file": lambda url: FileSystemAdapter(_path(url), read_only=read_only(url)),
        "sqlite": lambda url: SQLiteAdapter(sqlite_path(url), read_only=read_only(url)),
        "localstorage": LocalStorageAdapter.from_url,
    }
