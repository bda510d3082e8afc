"""Turning storage and event-store URLs into objects, through the plugins that registered their
schemes (``register_storage``, ``register_event_stores``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from .errors import StorageError
from .events import EventStore
from .plugins import registered
from .storage.memory import MemoryAdapter

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
    return registered("register_storage")


def resolve_url(value: Any, *, hook: str, what: str, methods: tuple[str, ...]) -> Any:
    """An object with ``methods`` as is; a URL through the plugin that registered its scheme
    with ``hook``. What is wrong (a missing method, no scheme, an unknown scheme and the
    distribution to install for it) is a :class:`StorageError`."""
    if not isinstance(value, str):
        for method in methods:
            if not callable(getattr(value, method, None)):
                raise StorageError(f"{what} object has no {method}() method", backend=type(value).__name__)
        return value
    scheme = urllib.parse.urlsplit(value).scheme
    if not scheme:
        raise StorageError(f"{what} URL {value!r} has no scheme (memory://, file://, sqlite://...)", backend="url")
    factory = registered(hook).get(scheme)
    if factory is None:
        hint = KNOWN_SCHEMES.get(scheme)
        advice = f"install {hint}" if hint else "no installed plugin registers it"
        raise StorageError(f"unknown {what} scheme {scheme!r}: {advice}", backend=scheme)
    return factory(value)


def resolve_storage(storage: Any) -> Any:
    """An adapter instance as is (``None``: a new :class:`MemoryAdapter`); a URL through the
    plugin that registered its scheme."""
    if storage is None:
        return MemoryAdapter()
    return resolve_url(storage, hook="register_storage", what="storage", methods=("load", "save", "delete"))


def resolve_event_store(store: Any) -> EventStore:
    """An event store instance as is; a URL through the plugin that registered its scheme."""
    return resolve_url(store, hook="register_event_stores", what="event store",  # type: ignore[no-any-return]
                       methods=("append", "get_events", "load_snapshot", "save_snapshot"))
