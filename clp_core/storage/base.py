"""The storage protocol: async ``load``/``save``/``delete`` of JSON documents by key.

Adapters that can compare-and-set also implement :class:`VersionedStorage`, so several
processes sharing one key never lose an update.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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
