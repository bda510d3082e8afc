"""Conformance cases for versioned saves (``load_versioned``/``save_versioned``), concurrent
writers included; mixed into :class:`clp_core.testing.storage.StorageAdapterSuite`, skipped
for adapters without them.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from clp_core.errors import ConflictError

from .executor import bounded_default_executor


class VersionedSaveCases:
    """``load_versioned(key) -> (document, version)`` and ``save_versioned(key, document,
    expected_version) -> new version``, which raises :class:`ConflictError` on a stale version."""

    concurrency_timeout: float  # seconds the concurrent-writer cases may take (set by the suite)

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _require_versioned(adapter: Any) -> None:
        methods = (getattr(adapter, "load_versioned", None), getattr(adapter, "save_versioned", None))
        if not all(callable(method) for method in methods):
            pytest.skip(f"{type(adapter).__name__} has no versioned saves (load_versioned/save_versioned)")

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
