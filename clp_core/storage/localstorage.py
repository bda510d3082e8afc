"""The browser's ``localStorage``, for Python running in a page under Pyodide.

Each key is one ``localStorage`` item, ``<prefix><key>``, whose value is the codec's JSON
envelope around ``{"version": n, "document": ...}``. Nothing from the browser is imported
when this module is: ``js.localStorage`` is looked up when an adapter is made, so the module
imports (and the adapter can be tested with any object that has ``getItem``/``setItem``/
``removeItem``) in plain CPython.

Versioned saves are exact within one page: a page runs Python on one thread and these
methods never yield between the read and the write, so a read-compare-write is atomic there.
Across tabs of the same origin they are not (see docs/localstorage.md).
"""

from __future__ import annotations

import sys
import urllib.parse
from typing import Protocol

from .. import codec
from ..errors import ConflictError, CorruptStateError, StorageError
from .base import Document

BACKEND = "localstorage"


class WebStorage(Protocol):
    """What the adapter needs of ``window.localStorage`` (the Web Storage API)."""

    def getItem(self, key: str) -> str | None: ...

    def setItem(self, key: str, value: str) -> None: ...

    def removeItem(self, key: str) -> None: ...


def browser_local_storage() -> WebStorage:
    """The page's ``window.localStorage``; :class:`StorageError` where there is none."""
    if sys.platform != "emscripten":
        raise StorageError(
            "LocalStorageAdapter needs Python running in a browser under Pyodide (js.localStorage); "
            f"this is {sys.platform!r}. Pass storage= an object with getItem/setItem/removeItem "
            "to use it elsewhere",
            backend=BACKEND,
        )
    try:
        import js  # type: ignore[import-not-found]  # Pyodide's module of the JavaScript globals
    except ImportError as exc:
        raise StorageError(f"LocalStorageAdapter cannot import Pyodide's js module: {exc}", backend=BACKEND) from exc
    try:
        storage = getattr(js, "localStorage", None)
    except Exception as exc:  # a SecurityError when the page may not use storage (blocked cookies, sandbox)
        raise StorageError(f"the browser refused access to localStorage: {exc}", backend=BACKEND) from exc
    if storage is None:
        raise StorageError(
            "there is no localStorage here (a web worker, or Pyodide under Node.js): "
            "run in a page's main thread or pass storage=",
            backend=BACKEND,
        )
    return storage  # type: ignore[no-any-return,unused-ignore]  # js is untyped


def _is_js_null(value: object) -> bool:
    """Pyodide 0.27 and later give JavaScript's ``null`` (a missing item) as ``pyodide.ffi.jsnull``."""
    if isinstance(value, str) or sys.platform != "emscripten":
        return False
    try:
        from pyodide.ffi import jsnull  # type: ignore[import-not-found]
    except ImportError:
        return False
    return value is jsnull


class LocalStorageAdapter:
    """Documents in ``localStorage`` under ``prefix + key`` (``"clp:"`` by default).

    ``storage`` replaces ``js.localStorage`` (for tests, or ``js.sessionStorage``). Errors of
    the browser (quota exceeded, storage disabled) become :class:`StorageError`; a value that
    is not a CLP envelope is a :class:`CorruptStateError`, never empty state.
    """

    name = BACKEND

    def __init__(self, prefix: str = "clp:", *, storage: WebStorage | None = None) -> None:
        if not isinstance(prefix, str):
            raise StorageError(f"prefix must be a string, got {type(prefix).__name__}", backend=BACKEND)
        self.prefix = prefix
        self.storage: WebStorage = browser_local_storage() if storage is None else storage
        for method in ("getItem", "setItem", "removeItem"):
            if not callable(getattr(self.storage, method, None)):
                raise StorageError(f"storage object has no {method}() method", backend=BACKEND)

    @classmethod
    def from_url(cls, url: str) -> LocalStorageAdapter:
        """``localstorage://`` (prefix ``clp:``) or ``localstorage://?prefix=myapp:``."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
        prefixes = query.get("prefix")
        return cls() if not prefixes else cls(prefixes[-1])

    # -- reading and writing one item ---------------------------------------------------
    def _item(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise StorageError(f"storage key must be a non-empty string, got {key!r}", backend=BACKEND)
        return self.prefix + key

    def _read(self, key: str) -> tuple[Document | None, int]:
        item = self._item(key)
        try:
            raw = self.storage.getItem(item)
        except Exception as exc:
            raise StorageError(f"localStorage.getItem({item!r}) failed: {exc}", backend=BACKEND) from exc
        if raw is None or _is_js_null(raw):
            return None, 0
        if not isinstance(raw, str):
            raise CorruptStateError(f"stored value for key {key!r} is not a string", backend=BACKEND)
        data = codec.decode(raw, backend=BACKEND, key=key)
        if not isinstance(data, dict) or "document" not in data or "version" not in data:
            raise CorruptStateError(f"stored value for key {key!r} lacks document/version", backend=BACKEND)
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored value for key {key!r} has a malformed version", backend=BACKEND)
        document = data["document"]
        if document is not None:
            codec.check_document(document, key=key, backend=BACKEND)
        return document, version

    def _write(self, key: str, document: Document, version: int) -> None:
        item = self._item(key)
        encoded = codec.encode({"version": version, "document": document})
        try:
            self.storage.setItem(item, encoded)
        except Exception as exc:  # QuotaExceededError (about 5 MB per origin), storage disabled...
            raise StorageError(
                f"localStorage.setItem({item!r}) of {len(encoded)} characters failed "
                f"(quota exceeded or storage disabled?): {exc}",
                backend=BACKEND,
            ) from exc

    # -- the storage protocol (no await between a read and its write: atomic in one page) --
    async def load(self, key: str) -> Document | None:
        return self._read(key)[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return self._read(key)

    async def save(self, key: str, document: Document) -> None:
        _, version = self._read(key)
        self._write(key, document, version + 1)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        _, version = self._read(key)
        if version != expected_version:
            raise ConflictError(f"key {key!r} is at version {version}, not {expected_version}", backend=BACKEND)
        self._write(key, document, version + 1)
        return version + 1

    async def delete(self, key: str) -> None:
        item = self._item(key)
        try:
            self.storage.removeItem(item)
        except Exception as exc:
            raise StorageError(f"localStorage.removeItem({item!r}) failed: {exc}", backend=BACKEND) from exc

    async def close(self) -> None:
        pass


__all__ = ["LocalStorageAdapter", "WebStorage", "browser_local_storage"]
