"""Conformance cases for what no backend can store and for corrupt stored values; mixed into
:class:`clp_core.testing.storage.StorageAdapterSuite`. The corruption cases are skipped
unless the suite implements ``write_raw``.
"""

from __future__ import annotations

from typing import Any

import pytest

from clp_core.errors import CorruptStateError, StateValueError


class CorruptionCases:
    """An unstorable document is refused with nothing written; a corrupt stored value loads as
    :class:`CorruptStateError` naming the key, and leaves the other keys alone."""

    #: ``async def write_raw(self, adapter, key, raw: bytes)``, or None (set by the suite)
    write_raw: Any

    # -- helpers ----------------------------------------------------------------------
    async def _write_raw_or_skip(self, adapter: Any, key: str, raw: bytes) -> None:
        if self.write_raw is None:
            pytest.skip(f"{type(self).__name__} does not implement write_raw(); corruption tests skipped")
        await self.write_raw(adapter, key, raw)

    # -- what no backend can store ----------------------------------------------------
    @pytest.mark.parametrize(
        "document",
        [
            pytest.param({"s": "lone \ud800 surrogate"}, id="lone-surrogate"),
            pytest.param({"n": float("nan")}, id="nan"),
            pytest.param({"n": float("inf")}, id="infinity"),
            pytest.param({"o": object()}, id="not-json"),
        ],
    )
    async def test_unstorable_document_is_refused_and_nothing_is_written(
            self, adapter: Any, document: dict[str, Any]) -> None:
        await adapter.save("unstorable", {"before": True})
        with pytest.raises(StateValueError):
            await adapter.save("unstorable", document)
        if callable(getattr(adapter, "save_versioned", None)):
            with pytest.raises(StateValueError):
                await adapter.save_versioned("unstorable", document, 1)
        assert await adapter.load("unstorable") == {"before": True}

    # -- corruption --------------------------------------------------------------------
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b"\x00\xff\xfe not json at all", id="garbage"),
            pytest.param(b"", id="empty"),
            pytest.param(b'{"format": "clp/1", "data": {"sta', id="truncated"),
            pytest.param(b"null", id="null"),
            pytest.param(b"[1, 2, 3]", id="array"),
            pytest.param(b'{"state": {"count": 1}}', id="no-envelope"),
            pytest.param(b'{"format": "clp/999", "data": {"state": {}}}', id="unknown-format"),
            pytest.param(b'{"format": "clp/1", "data": {"n": NaN}}', id="nan"),
            pytest.param(b'{"format": "clp/1", "data": {"n": Infinity}}', id="infinity"),
            pytest.param(b'{"format": "clp/1", "data": {"n": -Infinity}}', id="minus-infinity"),
            pytest.param(b'{"format": "clp/1", "data": {"n": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
                         id="over-deep"),
            pytest.param(b'{"format": "clp/1", "data": null}', id="data-null"),
            pytest.param(b'{"format": "clp/1", "data": [1, 2]}', id="data-array"),
            pytest.param(b'{"format": "clp/1", "data": 7}', id="data-number"),
            pytest.param(b'{"format": "clp/1", "data": "text"}', id="data-string"),
        ],
    )
    async def test_corrupt_stored_value_raises_corrupt_state_error(self, adapter: Any, raw: bytes) -> None:
        key = "corrupt:key"
        await self._write_raw_or_skip(adapter, key, raw)
        with pytest.raises(CorruptStateError) as info:
            await adapter.load(key)
        assert key in str(info.value), f"the error should name the key: {info.value}"
        if callable(getattr(adapter, "load_versioned", None)):
            with pytest.raises(CorruptStateError):
                await adapter.load_versioned(key)

    async def test_corrupt_value_does_not_affect_other_keys(self, adapter: Any) -> None:
        await adapter.save("good", {"ok": True})
        await self._write_raw_or_skip(adapter, "bad", b"{{{")
        assert await adapter.load("good") == {"ok": True}
        with pytest.raises(CorruptStateError):
            await adapter.load("bad")
