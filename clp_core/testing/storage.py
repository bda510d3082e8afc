"""A conformance suite for storage adapters, built in or third party, run under pytest.

Subclass :class:`StorageAdapterSuite` in a test module and say how to build the adapter::

    from clp_core.testing.storage import StorageAdapterSuite

    class TestMyAdapter(StorageAdapterSuite):
        async def make_adapter(self):
            return MyAdapter(self.tmp_path / "store")      # self.tmp_path: a fresh folder

        async def write_raw(self, adapter, key, raw):      # optional: enables the corruption tests
            ...                                            # store ``raw`` bytes as key's stored value

The tests are plain ``async def`` methods (pytest-asyncio in auto mode). Every test gets a
fresh adapter from ``make_adapter()``, closed afterwards. Versioned-save tests run when the
adapter has ``load_versioned``/``save_versioned`` and are skipped otherwise; the corruption
tests are skipped unless ``write_raw`` is implemented; the ``keys(prefix)`` listing tests
(:mod:`clp_core.testing.listing`) run when the adapter has ``keys``. The versioned-save cases
are in :mod:`clp_core.testing.versioned`, the unstorable and corrupt value cases in
:mod:`clp_core.testing.corruption`, mixed into the suite as the listing ones are.

Class attributes a subclass may change: ``large_value_size`` (characters of the large string,
10 MB by default) and ``concurrency_timeout`` (seconds the concurrent-writer tests may take).
"""

from __future__ import annotations

import abc
import datetime as _dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .corruption import CorruptionCases
from .executor import bounded_default_executor
from .listing import KeyListingCases
from .patching import PatchingCases
from .versioned import VersionedSaveCases

__all__ = ["NASTY_KEYS", "StorageAdapterSuite", "bounded_default_executor"]


#: Keys every adapter must store, load and delete separately, whatever they contain.
NASTY_KEYS: tuple[str, ...] = (
    "plain",
    "clp:counter",
    "a/b",
    "a%2Fb",
    "/leading/slash",
    "..",
    ".",
    "../escape",
    "../../etc/passwd",
    "a/../b",
    ".hidden",
    "it's",
    'say "hi"',
    "'; DROP TABLE x; --",
    '"; DROP TABLE clp_state; --',
    "back\\slash",
    "tab\tand\nnewline",
    "with space",
    "Key",
    "key",
    "ключ-キー-🔑",
    "é",
    "e\u0301",  # the same text as "é" once normalised (NFD): must stay a different key
    "x" * 1000,
    "x" * 999 + "y",
    "é" * 1000,
    "🔑" * 1000,
)


def _nested_state() -> dict[str, Any]:
    return {
        "count": 42,
        "ratio": 0.25,
        "negative": -7,
        "big": 2**53 + 1,
        "flag": True,
        "off": False,
        "nothing": None,
        "empty_dict": {},
        "empty_list": [],
        "user": {
            "profile": {"name": "Zoë Ångström 王小明 🚀", "tags": ["\u03b1", "\u03b2", "\u03b3"]},
            "born": _dt.date(1990, 2, 28),
            "seen": _dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
            "seen_utc": _dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=_dt.UTC),
            "seen_offset": _dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=_dt.timezone(_dt.timedelta(hours=-5, minutes=-30))),
        },
        "items": [
            {"done": False, "title": "first", "due": _dt.date(2030, 1, 1)},
            {"done": True, "title": "second\nline\t\"quoted\" \\ back", "due": None},
            [1, [2, [3, []]]],
        ],
        "quotes": "it's \"quoted\" '; DROP TABLE x; --",
        "control": "\x00\x01\x1f",
        "unicode_keys": {"ключ": 1, "キー": 2, "🔑": 3, "e\u0301": 4, "é": 5},
    }


def _assert_same(actual: Any, expected: Any, where: str = "document") -> None:
    """Equal, and of the same types all the way down (a date must not come back a string,
    a datetime must keep its time zone, an int must not become a float)."""
    assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, _dt.datetime):
        assert actual == expected and actual.utcoffset() == expected.utcoffset(), f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


class StorageAdapterSuite(KeyListingCases, VersionedSaveCases, PatchingCases, CorruptionCases, abc.ABC):
    """Tests every storage adapter must pass. Subclass it as ``Test...`` and implement
    :meth:`make_adapter` (and, to run the corruption tests, :meth:`write_raw`)."""

    large_value_size: int = 10_000_000
    concurrency_timeout: float = 15.0
    tmp_path: Path

    # -- what a subclass provides ---------------------------------------------------------
    @abc.abstractmethod
    async def make_adapter(self) -> Any:
        """A fresh adapter for one test (``self.tmp_path`` is an empty folder of its own)."""

    #: Optional: ``async def write_raw(self, adapter, key, raw: bytes)`` stores ``raw`` as the
    #: stored form of ``key``, bypassing the adapter's encoding (turns the corruption tests on).
    write_raw: Any = None

    # -- fixtures ----------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _clp_suite_paths(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    @pytest.fixture
    async def adapter(self, _clp_suite_paths: None) -> AsyncIterator[Any]:
        adapter = await self.make_adapter()
        try:
            yield adapter
        finally:
            await adapter.close()

    # -- round trips ------------------------------------------------------------------
    async def test_round_trip_nested_state(self, adapter: Any) -> None:
        document = {"state": _nested_state(), "idempotency": {"k1": {"phase": "commit"}}}
        await adapter.save("doc", document)
        loaded = await adapter.load("doc")
        _assert_same(loaded, document)

    async def test_round_trip_large_value(self, adapter: Any) -> None:
        pattern = "0123456789 large value, é, 王, 🚀 | "
        big = (pattern * (self.large_value_size // len(pattern) + 1))[: self.large_value_size]
        await adapter.save("large", {"blob": big, "after": "still here"})
        loaded = await adapter.load("large")
        assert loaded is not None
        assert len(loaded["blob"]) == len(big)
        assert loaded["blob"] == big
        assert loaded["after"] == "still here"

    async def test_saved_and_loaded_documents_are_not_shared(self, adapter: Any) -> None:
        document: dict[str, Any] = {"state": {"items": [1, 2], "user": {"name": "a"}}}
        await adapter.save("k", document)
        document["state"]["items"].append(3)
        document["state"]["user"]["name"] = "changed after save"
        first = await adapter.load("k")
        assert first == {"state": {"items": [1, 2], "user": {"name": "a"}}}
        first["state"]["items"].clear()
        assert await adapter.load("k") == {"state": {"items": [1, 2], "user": {"name": "a"}}}

    async def test_missing_key_loads_none(self, adapter: Any) -> None:
        assert await adapter.load("never-saved") is None
        await adapter.save("other", {"x": 1})
        assert await adapter.load("never-saved") is None

    async def test_overwrite_replaces_whole_document(self, adapter: Any) -> None:
        await adapter.save("k", {"a": 1, "big": "x" * 100_000, "nested": {"keep": False}})
        await adapter.save("k", {"b": 2})
        assert await adapter.load("k") == {"b": 2}
        await adapter.save("k", {"b": 3, "c": [1]})
        assert await adapter.load("k") == {"b": 3, "c": [1]}

    async def test_delete(self, adapter: Any) -> None:
        await adapter.save("gone", {"x": 1})
        await adapter.save("kept", {"y": 2})
        await adapter.delete("gone")
        assert await adapter.load("gone") is None
        assert await adapter.load("kept") == {"y": 2}
        await adapter.save("gone", {"x": 3})
        assert await adapter.load("gone") == {"x": 3}

    async def test_delete_missing_key_is_fine(self, adapter: Any) -> None:
        await adapter.delete("never-saved")
        await adapter.save("k", {"x": 1})
        await adapter.delete("k")
        await adapter.delete("k")
        assert await adapter.load("k") is None

    # -- keys ------------------------------------------------------------------------
    async def test_awkward_keys_round_trip_and_stay_distinct(self, adapter: Any) -> None:
        for i, key in enumerate(NASTY_KEYS):
            await adapter.save(key, {"i": i, "key": key})
        for i, key in enumerate(NASTY_KEYS):
            assert await adapter.load(key) == {"i": i, "key": key}, f"key {key[:60]!r} came back wrong"

    async def test_awkward_keys_delete_only_themselves(self, adapter: Any) -> None:
        for i, key in enumerate(NASTY_KEYS):
            await adapter.save(key, {"i": i})
        deleted = NASTY_KEYS[::2]
        for key in deleted:
            await adapter.delete(key)
        for i, key in enumerate(NASTY_KEYS):
            expected = None if key in deleted else {"i": i}
            assert await adapter.load(key) == expected, f"key {key[:60]!r}"

    # -- closing -----------------------------------------------------------------------
    async def test_close_twice_is_safe(self, adapter: Any) -> None:
        await adapter.save("k", {"x": 1})
        await adapter.close()
        await adapter.close()

    async def test_close_unused_adapter(self) -> None:
        adapter = await self.make_adapter()
        await adapter.close()
        await adapter.close()
