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
(:mod:`clp_core.testing.listing`) run when the adapter has ``keys``.

Class attributes a subclass may change: ``large_value_size`` (characters of the large string,
10 MB by default) and ``concurrency_timeout`` (seconds the concurrent-writer tests may take).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import datetime as _dt
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clp_core.errors import ConflictError, CorruptStateError, StateValueError

from .listing import KeyListingCases

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


class _DaemonThreadPool(concurrent.futures.ThreadPoolExecutor):
    """At most ``max_workers`` calls at once, each on a daemon thread.

    Used as the loop's default executor in the concurrency tests: it bounds the threads as a
    real pool does (so an adapter that blocks pool threads while waiting for a lock shows its
    deadlock), yet a call stuck forever cannot keep pytest from exiting.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self._slots = threading.BoundedSemaphore(max_workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            with self._slots:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        threading.Thread(target=run, name="clp-suite-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # stuck daemon threads are abandoned, never joined


@contextlib.contextmanager
def bounded_default_executor(max_workers: int) -> Iterator[None]:
    """Run the block with the running loop's default executor limited to ``max_workers``."""
    loop = asyncio.get_running_loop()
    previous = getattr(loop, "_default_executor", None)
    loop.set_default_executor(_DaemonThreadPool(max_workers))
    try:
        yield
    finally:
        if previous is not None:
            loop.set_default_executor(previous)
        elif hasattr(loop, "_default_executor"):
            loop._default_executor = None


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


class StorageAdapterSuite(KeyListingCases, abc.ABC):
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

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _require_versioned(adapter: Any) -> None:
        methods = (getattr(adapter, "load_versioned", None), getattr(adapter, "save_versioned", None))
        if not all(callable(method) for method in methods):
            pytest.skip(f"{type(adapter).__name__} has no versioned saves (load_versioned/save_versioned)")

    async def _write_raw_or_skip(self, adapter: Any, key: str, raw: bytes) -> None:
        if self.write_raw is None:
            pytest.skip(f"{type(self).__name__} does not implement write_raw(); corruption tests skipped")
        await self.write_raw(adapter, key, raw)

    async def _increment_concurrently(self, adapter: Any, key: str, writers: int, rounds: int) -> list[int]:
        """``writers`` tasks each add 1, ``rounds`` times, by read / versioned save / retry."""
        versions: list[int] = []

        async def writer() -> None:
            for _ in range(rounds):
                for _attempt in range(10_000):
                    document, version = await adapter.load_versioned(key)
                    count = 0 if document is None else document["count"]
                    await asyncio.sleep(0)  # let other writers read the same version in between
                    try:
                        new_version = await adapter.save_versioned(key, {"count": count + 1}, version)
                    except ConflictError:
                        await asyncio.sleep(random.uniform(0, 0.002))
                        continue
                    versions.append(new_version)
                    break
                else:
                    pytest.fail("a writer never got a versioned save through in 10,000 attempts")

        await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(writers))), self.concurrency_timeout)
        return versions

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

    # -- versioned saves ---------------------------------------------------------------
    async def test_versioned_missing_key_is_version_zero(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        assert await adapter.load_versioned("never-saved") == (None, 0)

    async def test_versioned_save_and_load(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        v1 = await adapter.save_versioned("k", {"n": 1}, 0)
        assert isinstance(v1, int) and v1 > 0
        assert await adapter.load_versioned("k") == ({"n": 1}, v1)
        v2 = await adapter.save_versioned("k", {"n": 2}, v1)
        assert v2 > v1
        assert await adapter.load_versioned("k") == ({"n": 2}, v2)
        assert await adapter.load("k") == {"n": 2}

    async def test_versioned_save_with_wrong_version_conflicts(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        v1 = await adapter.save_versioned("k", {"n": 1}, 0)
        with pytest.raises(ConflictError):
            await adapter.save_versioned("k", {"n": "stale"}, 0)
        with pytest.raises(ConflictError):
            await adapter.save_versioned("k", {"n": "future"}, v1 + 5)
        assert await adapter.load_versioned("k") == ({"n": 1}, v1)

    async def test_versioned_save_of_missing_key_expects_zero(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        with pytest.raises(ConflictError):
            await adapter.save_versioned("absent", {"n": 1}, 3)
        assert await adapter.load_versioned("absent") == (None, 0)

    async def test_plain_save_advances_the_version(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        _, version = await adapter.load_versioned("k")
        await adapter.save("k", {"n": "plain"})
        with pytest.raises(ConflictError):
            await adapter.save_versioned("k", {"n": "stale"}, version)
        document, after = await adapter.load_versioned("k")
        assert document == {"n": "plain"}
        assert after != version

    async def test_versioned_concurrent_writers_never_lose_an_increment(self, adapter: Any) -> None:
        self._require_versioned(adapter)
        writers, rounds = 8, 15
        with bounded_default_executor(32):
            versions = await self._increment_concurrently(adapter, "counter", writers, rounds)
        document, version = await adapter.load_versioned("counter")
        assert document == {"count": writers * rounds}
        assert len(versions) == len(set(versions)) == writers * rounds, "two writers were given the same version"
        assert version == max(versions)

    async def test_versioned_writers_outnumbering_worker_threads_do_not_deadlock(self, adapter: Any) -> None:
        """Many writers on one key in one process (say one runtime per web request), more
        than the loop's worker threads: an adapter must not park every pool thread on a lock."""
        self._require_versioned(adapter)
        writers, rounds = 16, 3
        with bounded_default_executor(4):
            try:
                await self._increment_concurrently(adapter, "counter", writers, rounds)
            except TimeoutError:
                pytest.fail(
                    f"{writers} concurrent writers with 4 worker threads did not finish in "
                    f"{self.concurrency_timeout} s (deadlock: pool threads blocked waiting for a lock?)"
                )
            assert await adapter.load("counter") == {"count": writers * rounds}

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

    # -- closing -----------------------------------------------------------------------
    async def test_close_twice_is_safe(self, adapter: Any) -> None:
        await adapter.save("k", {"x": 1})
        await adapter.close()
        await adapter.close()

    async def test_close_unused_adapter(self) -> None:
        adapter = await self.make_adapter()
        await adapter.close()
        await adapter.close()
