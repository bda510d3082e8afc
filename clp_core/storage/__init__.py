"""Storage adapters: the protocol and the built-in memory, file, SQLite and localStorage ones.

URLs are resolved to adapters by :mod:`clp_core.resolve`."""

from __future__ import annotations

from .base import Document, StorageAdapter, VersionedStorage
from .filesystem import FileSystemAdapter
from .localstorage import LocalStorageAdapter
from .memory import MemoryAdapter
from .sqlite import SQLiteAdapter

__all__ = [
    "Document", "StorageAdapter", "VersionedStorage", "MemoryAdapter", "FileSystemAdapter", "LocalStorageAdapter",
    "SQLiteAdapter",
]
