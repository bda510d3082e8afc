"""Turning storage and event-store URLs into objects, through the plugins that registered their
schemes (``register_storage``, ``register_event_stores``)."""

from __future__ import annotations

import inspect
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


#: The URL option that asks a factory for a read-only open (``sqlite:///app.db?mode=ro``).
READ_ONLY_OPTION = ("mode", "ro")


def with_read_only(url: str) -> str:
    """``url`` with the read-only option ``mode=ro`` in its query (once). The rest of the URL
    is kept as written (``sqlite:////abs.db`` keeps its four slashes)."""
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k != "mode"]
    return f"{base}?{urllib.parse.urlencode([*kept, READ_ONLY_OPTION])}"


def resolve_url(value: Any, *, hook: str, what: str, methods: tuple[str, ...], read_only: bool = False) -> Any:
    """An object with ``methods`` as is; a URL through the plugin that registered its scheme
    with ``hook``. What is wrong (a missing method, no scheme, an unknown scheme and the
    distribution to install for it) is a :class:`StorageError`.

    ``read_only``: the URL gets the option ``mode=ro`` before it goes to the factory, and the
    object made must say ``read_only = True`` (a plugin that ignores the option is an error,
    never a silently writable open). An object passed in must say it too."""
    if not isinstance(value, str):
        for method in methods:
            if not callable(getattr(value, method, None)):
                raise StorageError(f"{what} object has no {method}() method", backend=type(value).__name__)
        if read_only and getattr(value, "read_only", False) is not True:
            raise StorageError(f"{what} object is not read-only (pass read_only=True to it)",
                               backend=type(value).__name__)
        return value
    scheme = urllib.parse.urlsplit(value).scheme
    if not scheme:
        raise StorageError(f"{what} URL {value!r} has no scheme (memory://, file://, sqlite://...)", backend="url")
    factory = registered(hook).get(scheme)
    if factory is None:
        raise StorageError(f"unknown {what} scheme {scheme!r}: {missing_scheme_advice(scheme)}", backend=scheme)
    if not read_only:
        return factory(value)
    made = factory(with_read_only(value))
    if getattr(made, "read_only", False) is not True:
        close = getattr(made, "close", None)
        if close is not None and not inspect.iscoroutinefunction(close):
            close()
        raise StorageError(f"the {what} plugin for {scheme}:// cannot open read-only", backend=scheme)
    return made


def missing_scheme_advice(scheme: str) -> str:
    """What to do about a scheme no enabled plugin registers: install the plugin, or enable the
    installed one and say what disabled it."""
    from .plugins import disabled_reason

    plugin = KNOWN_SCHEMES.get(scheme)
    if plugin is None:
        return "no installed plugin registers it"
    reason = disabled_reason(plugin)
    if reason is not None:
        return f"{plugin} is installed but {reason}; enable it (CLP_PLUGINS={plugin} or enable = [\"{plugin}\"])"
    return f"install {plugin} (pip install {plugin})"


def resolve_storage(storage: Any, *, read_only: bool = False) -> Any:
    """An adapter instance as is (``None``: a new :class:`MemoryAdapter`); a URL through the
    plugin that registered its scheme. ``read_only``: open it read-only (URL option
    ``mode=ro``): nothing is created, writes are refused."""
    if storage is None:
        return MemoryAdapter()
    return resolve_url(storage, hook="register_storage", what="storage", methods=("load", "save", "delete"),
                       read_only=read_only)


def resolve_event_store(store: Any, *, read_only: bool = False) -> EventStore:
    """An event store instance as is; a URL through the plugin that registered its scheme
    (``read_only``: as for :func:`resolve_storage`)."""
    return resolve_url(store, hook="register_event_stores", what="event store",  # type: ignore[no-any-return]
                       methods=("append", "get_events", "load_snapshot", "save_snapshot"), read_only=read_only)
