"""Conformance cases for diff-sized saves (:class:`~clp_core.storage.base.PatchingStorage`);
mixed into :class:`clp_core.testing.storage.StorageAdapterSuite`, skipped for adapters
without ``load_logged``/``save_logged``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from clp_core.errors import ConflictError
from clp_core.storage.base import PatchingStorage
from clp_core.storage.patch import MIN_PATCHED_BYTES, Patch, PatchLog, Write


def big_document(count: int = 0) -> dict[str, Any]:
    """A document large enough to be patched (over :data:`MIN_PATCHED_BYTES`)."""
    return {"state": {"count": count, "items": {f"k{i}": "x" * 40 for i in range(MIN_PATCHED_BYTES // 40)},
                      "list": [1, 2, 3]}, "intents": []}


def compact_next(runtime: Any) -> None:
    """Make ``runtime``'s next commit write its whole document, as when its patches have
    outgrown their base (the adapter must keep patches, and the document be big enough)."""
    log = runtime._persistence._log
    log.patch_bytes = log.base_bytes


def _patch(**sets: Any) -> Patch:
    return Patch(tuple((("state", *path.split(".")), value) for path, value in sets.items()))


class PatchingCases:
    """``load_logged``/``save_logged``: patches append after a base, compaction replaces it,
    every write is a compare-and-set, and the whole-document methods drop the patches."""

    concurrency_timeout: float  # seconds the concurrent-writer case may take (set by the suite)

    @staticmethod
    def _require_patching(adapter: Any) -> None:
        if not isinstance(adapter, PatchingStorage):
            pytest.skip(f"{type(adapter).__name__} keeps no patches (load_logged/save_logged)")

    async def _based(self, adapter: Any, key: str) -> tuple[PatchLog, int]:
        log = PatchLog()
        version = await adapter.save_logged(key, log.prepare(lambda: big_document(), None), 0)
        document, loaded = await adapter.load_logged(key, log)
        assert document == big_document() and loaded == version == 1
        assert log.base_bytes >= MIN_PATCHED_BYTES and log.patches == 0
        return log, version

    async def test_patches_apply_in_order_on_load(self, adapter: Any) -> None:
        self._require_patching(adapter)
        log, version = await self._based(adapter, "patched")
        for n in range(1, 4):
            write = log.prepare(big_document, _patch(count=n, **{f"items.new{n}": [n]}))
            assert not write.compacts
            version = await adapter.save_logged("patched", write, version)
            log.done(write)
        removal = Patch(unset=(("state", "items", "k0"), ("state", "list")))
        version = await adapter.save_logged("patched", Write(removal.encode(), compacts=False), version)
        expected = big_document(3)
        expected["state"]["items"].update(new1=[1], new2=[2], new3=[3])
        del expected["state"]["items"]["k0"], expected["state"]["list"]
        fresh = PatchLog()
        assert await adapter.load_logged("patched", fresh) == (expected, 5)
        assert await adapter.load_versioned("patched") == (expected, 5)
        assert await adapter.load("patched") == expected
        assert fresh.patches == 4 and fresh.base_bytes == log.base_bytes

    async def test_stale_patch_and_stale_compaction_conflict(self, adapter: Any) -> None:
        self._require_patching(adapter)
        log, version = await self._based(adapter, "stale")
        newer = await adapter.save_logged("stale", Write(_patch(count=1).encode(), compacts=False), version)
        for write in (Write(_patch(count=99).encode(), compacts=False),
                      log.prepare(lambda: big_document(99), None)):
            with pytest.raises(ConflictError):
                await adapter.save_logged("stale", write, version)
        assert await adapter.load_versioned("stale") == (big_document(1), newer)

    async def test_compaction_and_whole_saves_drop_the_patches(self, adapter: Any) -> None:
        self._require_patching(adapter)
        log, version = await self._based(adapter, "compacted")
        version = await adapter.save_logged("compacted", Write(_patch(count=1).encode(), compacts=False), version)
        version = await adapter.save_logged("compacted", log.prepare(lambda: big_document(7), None), version)
        fresh = PatchLog()
        assert await adapter.load_logged("compacted", fresh) == (big_document(7), 3)
        assert fresh.patches == 0
        # a patch after compaction applies to the new base only
        version = await adapter.save_logged("compacted", Write(_patch(count=8).encode(), compacts=False), version)
        version = await adapter.save_versioned("compacted", {"state": {"whole": True}}, version)
        assert await adapter.load_versioned("compacted") == ({"state": {"whole": True}}, 5)
        await adapter.save("compacted", big_document(1))
        assert (await adapter.load("compacted")) == big_document(1)

    async def test_delete_drops_the_patches(self, adapter: Any) -> None:
        self._require_patching(adapter)
        _, version = await self._based(adapter, "deleted")
        await adapter.save_logged("deleted", Write(_patch(count=1).encode(), compacts=False), version)
        await adapter.delete("deleted")
        assert await adapter.load_versioned("deleted") == (None, 0)
        await adapter.save_versioned("deleted", {"state": {}}, 0)
        assert await adapter.load_versioned("deleted") == ({"state": {}}, 1)

    async def test_a_whole_write_says_whether_patches_follow_the_base(self, adapter: Any) -> None:
        """``Write.over_patches``: false when the writer knows the base stands alone (an adapter
        may then skip dropping patches), true once it wrote a patch; either way the key reads
        back as written, and a patch after a compaction applies to the new base alone."""
        self._require_patching(adapter)
        log, version = await self._based(adapter, "knows")
        for count, patch in ((1, None), (2, _patch(count=2)), (3, None), (4, _patch(count=4))):
            write = log.prepare(lambda: big_document(count), patch)  # noqa: B023 - used at once
            assert write.compacts == (patch is None)
            if patch is None:
                assert write.over_patches == (count == 3), f"count {count}: {log}"
            version = await adapter.save_logged("knows", write, version)
            log.done(write)
            assert await adapter.load_versioned("knows") == (big_document(count), version)

    async def test_concurrent_patch_writers_never_lose_an_increment(self, adapter: Any) -> None:
        self._require_patching(adapter)
        await self._based(adapter, "contended")
        writers, rounds = 4, 15

        async def writer() -> None:
            log = PatchLog()
            for _ in range(rounds):
                while True:
                    document, version = await adapter.load_logged("contended", log)
                    count = document["state"]["count"] + 1
                    await asyncio.sleep(0)
                    document["state"]["count"] = count
                    write = log.prepare(lambda: document, _patch(count=count))  # noqa: B023 - used at once
                    try:
                        await adapter.save_logged("contended", write, version)
                    except ConflictError:
                        await asyncio.sleep(random.uniform(0, 0.002))
                        continue
                    log.done(write)
                    break

        await asyncio.wait_for(asyncio.gather(*(writer() for _ in range(writers))), self.concurrency_timeout)
        document, version = await adapter.load_versioned("contended")
        assert document["state"]["count"] == writers * rounds and version == 1 + writers * rounds

    async def test_runtime_commits_on_a_big_state_survive_a_reload(self, adapter: Any) -> None:
        """Random writes (set, unset, deep merge, array operations) through runtimes sharing
        the adapter, and a compaction every ten commits: what a fresh runtime loads equals the
        live state after every commit."""
        self._require_patching(adapter)
        import clp_core as clp

        rng = random.Random(7)

        def effects(ctx: Any) -> dict[str, Any]:
            n = ctx.intent.payload["n"]
            choice = n % 8
            if choice == 6:
                return {f"top{rng.randrange(5)}": {"n": n}}
            if choice == 7:
                return {f"top{rng.randrange(5)}": clp.ops.unset()}
            if choice == 0:
                return {f"items.k{rng.randrange(300)}": n}
            if choice == 1:
                return {f"items.k{rng.randrange(300)}": clp.ops.unset()}
            if choice == 2:
                return {"deep": {"a": {f"b{n % 5}": {"n": n}}}}
            if choice == 3:
                return {"list": clp.ops.push(n, {"n": n})}
            if choice == 4:
                return {"list": clp.ops.splice(0, 1)}
            return {f"list.{0}": n} if ctx.state.get("list") else {"list": [n]}

        contract = clp.create_contract(
            intents={"write": {"inputs": {"n": "number"}}}, transitions={"write": {"effects": effects}})
        initial = big_document()["state"]
        runtime = clp.create_runtime(contract, storage=adapter, storage_key="patched-runtime",
                                     initial_state=initial)
        for n in range(60):
            if n % 10 == 5:  # the next commit writes the whole document (kept texts, after the first)
                compact_next(runtime)
            await runtime.execute("write", {"n": n})
            reader = clp.create_runtime(contract, storage=adapter, storage_key="patched-runtime",
                                        initial_state={})
            await reader.hydrate()
            assert reader.get_state() == runtime.get_state(), f"after commit {n}"
            await reader.close()
        _, log_version = await adapter.load_versioned("patched-runtime")
        assert log_version == 60
