"""In-memory storage (the default): documents kept encoded, so callers share nothing.

Saves go through the same codec as the durable backends, so what they refuse (non-finite
numbers, lone surrogates, values that are not JSON or dates, over-deep nesting) is refused
here too, as a :class:`~clp_core.errors.StateValueError`, instead of passing in tests and
failing in production. It keeps patches like the durable backends (a base document and the
encoded patches after it): the reference implementation of :class:`PatchingStorage`."""

from __future__ import annotations

import attrs

from .. import codec
from ..errors import ConflictError
from .base import Document
from .patch import PatchLog, Write, patched_document


@attrs.define
class _Stored:
    base: str
    version: int
    patches: list[str] = attrs.Factory(list)


class MemoryAdapter:
    """Keeps documents in this process only; a fresh adapter starts empty."""

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, _Stored] = {}

    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return await self.load_logged(key, PatchLog())

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        stored = self._data.get(key)
        if stored is None:
            log.loaded(0, ())
            return None, 0
        return patched_document(stored.base, stored.patches, log, key=key, backend=self.name), stored.version

    async def save(self, key: str, document: Document) -> None:
        version = self._version(key)
        self._data[key] = _Stored(codec.encode(document), version + 1)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        return await self.save_logged(key, Write(codec.encode(document), compacts=True), expected_version)

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        current = self._version(key)
        if current != expected_version:
            raise ConflictError(f"key {key!r} is at version {current}, not {expected_version}", backend=self.name)
        stored = self._data.get(key)
        if stored is None and not write.compacts:
            raise ConflictError(f"key {key!r} has no stored document to patch", backend=self.name)
        if write.compacts or stored is None:
            self._data[key] = _Stored(write.text, current + 1)
        else:
            stored.patches.append(write.text)
            stored.version = current + 1
        return current + 1

    def _version(self, key: str) -> int:
        stored = self._data.get(key)
        return 0 if stored is None else stored.version

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted."""
        return sorted(k for k in self._data if k.startswith(prefix))

    async def close(self) -> None:
        pass
