"""The storage protocol: async ``load``/``save``/``delete`` of JSON documents by key.

Adapters that can compare-and-set also implement :class:`VersionedStorage`, so several
processes sharing one key never lose an update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import StorageError

if TYPE_CHECKING:
    from .patch import PatchLog, Write

Document = dict[str, Any]


@runtime_checkable
class StorageAdapter(Protocol):
    """Where a runtime keeps its document (state plus idempotency records) between runs."""

    name: str

    async def load(self, key: str) -> Document | None:
        """The stored document, or ``None`` if the key was never saved (or was deleted)."""

    async def save(self, key: str, document: Document) -> None:
        """Store ``document`` under ``key``, replacing what was there, atomically."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    async def close(self) -> None:
        """Release connections and files; the adapter is not used afterwards."""


@runtime_checkable
class VersionedStorage(Protocol):
    """Compare-and-set saves: a save succeeds only if nobody wrote since the read."""

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        """The document and its version (0 when missing)."""

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        """Store if the current version is ``expected_version``; return the new version.

        Raises :class:`clp_core.errors.ConflictError` otherwise.
        """


@runtime_checkable
class PatchingStorage(Protocol):
    """Diff-sized saves (see :mod:`clp_core.storage.patch`): a commit appends a patch to the
    stored base document instead of rewriting it; :meth:`load_versioned` returns the base
    with its patches applied, and ``save``/``save_versioned`` write a new base, dropping them."""

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        """:meth:`VersionedStorage.load_versioned`, also telling ``log`` the sizes read
        (``log.loaded(base size, patch sizes)``)."""

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        """If the current version is ``expected_version``, store ``write.text`` as version
        ``expected_version + 1``: appended as a patch, or (``write.compacts``) as the new base,
        the patches dropped; return the new version. Raises
        :class:`clp_core.errors.ConflictError` otherwise. The caller calls ``log.done(write)``."""


def provides(obj: Any, protocol: type) -> bool:
    """``isinstance(obj, protocol)`` for :class:`VersionedStorage` and :class:`PatchingStorage`
    (every method present, none ``None``), without typing's walk of the protocol's members on
    every call: creating a runtime makes two such checks."""
    return all(getattr(obj, name, None) is not None for name in _MEMBERS[protocol])


_MEMBERS: dict[type, tuple[str, ...]] = {
    protocol: tuple(name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value))
    for protocol in (VersionedStorage, PatchingStorage)
}


#: What a read-only open refuses: the write methods an adapter or an event store may have.
WRITE_METHODS = ("save", "save_versioned", "save_logged", "delete", "append", "save_snapshot", "prune")


def refuse_writes(obj: Any, where: str, methods: Iterable[str] = WRITE_METHODS) -> None:
    """What a read-only open does: each of ``methods`` that ``obj`` has raises a
    :class:`StorageError` saying ``where`` is open read-only, with nothing sent."""
    backend = str(getattr(obj, "name", type(obj).__name__))

    def refuse(method: str) -> Callable[..., Any]:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise StorageError(f"{where} is open read-only: {method}() refused", backend=backend,
                               outcome="not_applied")
        return refused

    for method in methods:
        if hasattr(obj, method):
            setattr(obj, method, refuse(method))
