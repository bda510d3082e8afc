"""In-memory storage (the default): documents kept encoded, so callers share nothing.

Saves go through the same codec as the durable backends, so what they refuse (non-finite
numbers, lone surrogates, values that are not JSON or dates, over-deep nesting) is refused
here too, as a :class:`~clp_core.errors.StateValueError`, instead of passing in tests and
failing in production."""

from __future__ import annotations

from .. import codec
from ..errors import ConflictError
from .base import Document


class MemoryAdapter:
    """Keeps documents in this process only; a fresh adapter starts empty."""

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, int]] = {}

    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        stored = self._data.get(key)
        if stored is None:
            return None, 0
        return codec.decode_document(stored[0], backend=self.name, key=key), stored[1]

    async def save(self, key: str, document: Document) -> None:
        version = self._data.get(key, ("", 0))[1]
        self._data[key] = (codec.encode(document), version + 1)

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        encoded = codec.encode(document)
        current = self._data.get(key, ("", 0))[1]
        if current != expected_version:
            raise ConflictError(f"key {key!r} is at version {current}, not {expected_version}", backend=self.name)
        self._data[key] = (encoded, current + 1)
        return current + 1

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted."""
        return sorted(k for k in self._data if k.startswith(prefix))

    async def close(self) -> None:
        pass
