"""Conformance cases for ``keys(prefix="")``, the optional listing of a storage adapter's keys;
mixed into :class:`clp_core.testing.storage.StorageAdapterSuite`, skipped for adapters without it.

Every case works under a prefix of its own, so adapters on a shared table or database list
their other keys too without failing the test.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

NASTY_SUFFIXES = ("plain", "a/b", "a%2Fb", "..", ".hidden", "it's", "'; DROP TABLE x; --", "back\\slash",
                  "tab\tand\nnewline", "*?[x]", "%_", "Key", "key", "é", "e\u0301", "ключ-🔑", "x" * 1000)


class KeyListingCases:
    """``await adapter.keys(prefix)``: the saved keys starting with ``prefix``, sorted."""

    @staticmethod
    def _require_keys(adapter: Any) -> None:
        if not callable(getattr(adapter, "keys", None)):
            pytest.skip(f"{type(adapter).__name__} cannot list its keys (optional)")

    async def test_keys_lists_saved_keys_under_a_prefix(self, adapter: Any) -> None:
        self._require_keys(adapter)
        prefix = f"clp-keys-{uuid.uuid4().hex}:"
        keys = [prefix + suffix for suffix in NASTY_SUFFIXES]
        for key in keys:
            await adapter.save(key, {"key": key})
        await adapter.save(f"other-{uuid.uuid4().hex}", {"n": 1})
        assert await adapter.keys(prefix) == sorted(keys)
        assert await adapter.keys(prefix + "a") == sorted(k for k in keys if k.startswith(prefix + "a"))
        assert set(keys) <= set(await adapter.keys())
        for key in keys:
            await adapter.delete(key)

    async def test_keys_leaves_out_deleted_keys_and_escapes_patterns(self, adapter: Any) -> None:
        self._require_keys(adapter)
        prefix = f"clp-keys-{uuid.uuid4().hex}"
        await adapter.save(prefix + ":kept", {"n": 1})
        await adapter.save(prefix + ":gone", {"n": 2})
        await adapter.save(prefix + "X:like", {"n": 3})  # matched by a LIKE "_" or a glob "?"
        await adapter.delete(prefix + ":gone")
        assert await adapter.keys(prefix + ":") == [prefix + ":kept"]
        assert await adapter.keys(prefix + "?") == []
        assert await adapter.keys(prefix + "_") == []
        assert await adapter.keys(prefix + "*") == []
        assert await adapter.keys(f"clp-keys-{uuid.uuid4().hex}") == []
        for key in (prefix + ":kept", prefix + "X:like"):
            await adapter.delete(key)
