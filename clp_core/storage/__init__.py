"""Storage adapters and resolution of storage URLs through plugins."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..errors import StorageError
from .base import Document, StorageAdapter, VersionedStorage
from .filesystem import FileSystemAdapter
from .localstorage import LocalStorageAdapter
from .memory import MemoryAdapter
from .sqlite import SQLiteAdapter

# Which distribution to install for a scheme no installed plugin registers.
KNOWN_SCHEMES = {
    "redis": "clp-redis",
    "rediss": "clp-redis",
    "postgresql": "clp-postgres",
    "postgres": "clp-postgres",
    "mongodb": "clp-mongo",
    "mongodb+srv": "clp-mongo",
}


def storage_schemes() -> dict[str, Any]:
    """``{scheme: factory}`` from every plugin's ``register_storage`` hook."""
    from ..plugins import registration_manager

    schemes: dict[str, Any] = {}
    for contributed in registration_manager().hook.register_storage():
        schemes.update(contributed or {})
    return schemes


def resolve_storage(storage: Any) -> Any:
    """An adapter instance as is; a URL through the plugin that registered its scheme."""
    if storage is None:
        return MemoryAdapter()
    if not isinstance(storage, str):
        for method in ("load", "save", "delete"):
            if not callable(getattr(storage, method, None)):
                raise StorageError(f"storage object has no {method}() method", backend=type(storage).__name__)
        return storage
    scheme = urllib.parse.urlsplit(storage).scheme
    if not scheme:
        raise StorageError(f"storage URL {storage!r} has no scheme (memory://, file://, sqlite://...)", backend="url")
    factory = storage_schemes().get(scheme)
    if factory is None:
        hint = KNOWN_SCHEMES.get(scheme)
        advice = f"install {hint}" if hint else "no installed plugin registers it"
        raise StorageError(f"unknown storage scheme {scheme!r}: {advice}", backend=scheme)
    return factory(storage)


__all__ = [
    "Document", "StorageAdapter", "VersionedStorage", "MemoryAdapter", "FileSystemAdapter", "LocalStorageAdapter",
    "SQLiteAdapter", "resolve_storage", "storage_schemes",
]
