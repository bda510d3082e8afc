"""Diff-sized saves on Redis: a commit appends one ``p:<version>`` field and leaves the base
``d`` untouched; a compaction or a whole save replaces the hash; resent appends apply once;
hashes written before patches still load and take patches; malformed patch fields are corrupt.
(The behaviour every adapter shares is ``clp_core.testing.patching``, run by the suite in
test_redis_adapter.py.)"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter

import clp_core as clp
from clp_core import codec
from clp_core.errors import ConflictError, CorruptStateError
from clp_core.plugin_api import Patch, PatchLog, Write
from clp_core.testing.patching import big_document

from .conftest import REDIS_URL, count_commands


@pytest.fixture
async def adapter(prefix: str) -> Any:
    adapter = RedisAdapter(REDIS_URL, prefix=prefix)
    yield adapter
    await adapter.close()


def count(n: int) -> Write:
    return Write(Patch(((("state", "count"), n),)).encode(), compacts=False)


async def fields(client: aioredis.Redis, adapter: RedisAdapter, key: str) -> dict[bytes, bytes]:
    return await client.hgetall(adapter.redis_key(key))  # type: ignore[no-any-return]


async def based(adapter: RedisAdapter, key: str) -> int:
    return await adapter.save_versioned(key, big_document(), 0)


# -- layout -------------------------------------------------------------------------------------
async def test_a_patch_is_one_field_and_the_base_is_untouched(adapter: RedisAdapter,
                                                               shared_redis: aioredis.Redis) -> None:
    version = await based(adapter, "k")
    base = (await fields(shared_redis, adapter, "k"))[b"d"]
    for n in (1, 2):
        version = await adapter.save_logged("k", count(n), version)
    raw = await fields(shared_redis, adapter, "k")
    assert set(raw) == {b"d", b"b", b"v", b"t", b"p:2", b"p:3"}
    assert (raw[b"d"], raw[b"b"], raw[b"v"]) == (base, b"1", b"3")
    assert raw[b"p:3"] == count(2).text.encode()
    log = PatchLog()
    assert await adapter.load_logged("k", log) == (big_document(2), 3)
    assert (log.base_bytes, log.patches, log.patch_bytes) == (len(base), 2, len(raw[b"p:2"]) + len(raw[b"p:3"]))

    version = await adapter.save_logged("k", Write(codec.encode(big_document(5)), compacts=True), version)
    raw = await fields(shared_redis, adapter, "k")
    assert set(raw) == {b"d", b"b", b"v", b"t"} and raw[b"b"] == raw[b"v"] == b"4"
    await adapter.save_logged("k", count(6), version)
    await adapter.save("k", big_document(7))  # a plain save drops the patches too
    raw = await fields(shared_redis, adapter, "k")
    assert set(raw) == {b"d", b"b", b"v", b"t"} and raw[b"b"] == raw[b"v"] == b"6"
    assert await adapter.load_versioned("k") == (big_document(7), 6)


async def test_an_append_sends_the_patch_not_the_document(adapter: RedisAdapter) -> None:
    version = await based(adapter, "k")
    version = await adapter.save_logged("k", count(1), version)  # the script is loaded
    sent = count_commands(adapter.client)
    write = count(2)
    await adapter.save_logged("k", write, version)
    sizes = [sum(len(a) if isinstance(a, bytes) else len(str(a)) for a in command) for command in sent]
    assert len(sizes) == 1 and sizes[0] < len(write.text) + 200


async def test_a_patch_of_a_missing_key_conflicts_and_creates_nothing(adapter: RedisAdapter,
                                                                      shared_redis: aioredis.Redis) -> None:
    with pytest.raises(ConflictError, match="no stored document"):
        await adapter.save_logged("k", count(1), 0)
    assert await shared_redis.exists(adapter.redis_key("k")) == 0


# -- resends ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["patch", "base"])
async def test_a_resent_append_or_compaction_applies_once(adapter: RedisAdapter, shared_redis: aioredis.Redis,
                                                          kind: str) -> None:
    version = await based(adapter, "k")
    text = count(1).text if kind == "patch" else codec.encode(big_document(1))
    args = [version, text.encode(), uuid.uuid4().hex, "", kind]
    key = [adapter.redis_key("k")]
    assert await adapter._save_versioned(keys=key, args=args) == [1, 2]
    before = await fields(shared_redis, adapter, "k")
    assert await adapter._save_versioned(keys=key, args=args) == [1, 2]  # the resend
    assert await fields(shared_redis, adapter, "k") == before
    assert await adapter.load_versioned("k") == (big_document(1), 2)
    other = [version, text.encode(), uuid.uuid4().hex, "", kind]
    assert await adapter._save_versioned(keys=key, args=other) == [0, 2]  # another writer conflicts
    await adapter.save_logged("k", count(3), 2)
    assert await adapter._save_versioned(keys=key, args=args) == [0, 3]  # not once someone else wrote


# -- TTL ----------------------------------------------------------------------------------------
async def test_an_append_resets_the_expiry_or_persists_the_key(prefix: str, shared_redis: aioredis.Redis) -> None:
    expiring, forever = RedisAdapter(REDIS_URL, prefix=prefix, ttl=60), RedisAdapter(REDIS_URL, prefix=prefix)
    key = expiring.redis_key("k")
    try:
        version = await based(expiring, "k")
        await shared_redis.pexpire(key, 5_000)
        version = await expiring.save_logged("k", count(1), version)
        assert 55_000 < await shared_redis.pttl(key) <= 60_000, "an append must reset the expiry"
        await forever.save_logged("k", count(2), version)
        assert await shared_redis.pttl(key) == -1, "an append without a ttl must persist the key"
    finally:
        await expiring.close()
        await forever.close()


# -- hashes written before patches ---------------------------------------------------------------
async def test_a_hash_without_a_base_version_loads_and_takes_patches(adapter: RedisAdapter,
                                                                     shared_redis: aioredis.Redis) -> None:
    redis_key = adapter.redis_key("old")
    base = codec.encode(big_document())
    await shared_redis.hset(redis_key, mapping={"d": base, "v": 3, "t": uuid.uuid4().hex})
    log = PatchLog()
    assert await adapter.load_logged("old", log) == (big_document(), 3)
    assert (log.base_bytes, log.patches) == (len(base), 0)
    assert await adapter.save_logged("old", count(4), 3) == 4
    raw = await fields(shared_redis, adapter, "old")
    assert (raw[b"b"], raw[b"v"], raw[b"d"]) == (b"3", b"4", base.encode()) and b"p:4" in raw
    assert await adapter.load_logged("old", log) == (big_document(4), 4)
    assert log.patches == 1


# -- values this adapter did not write ----------------------------------------------------------
def _envelope(data: Any) -> str:
    return codec.encode(data)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        pytest.param({"b": "one"}, "base version of key 'k' is not a number", id="bad-base"),
        pytest.param({"b": "3"}, r"base version of key 'k' \(3\) is not between", id="base-after-version"),
        pytest.param({"b": "-1"}, "is not between", id="negative-base"),
        pytest.param({"b": "0", "p:2": "x"}, "lacks the patch of version 1", id="missing-patch"),
        pytest.param({"p:2": "not json"}, "not valid JSON", id="patch-not-json"),
        pytest.param({"p:2": _envelope({"set": 5, "unset": []})}, "patch of key 'k' is malformed",
                     id="patch-malformed"),
        pytest.param({"p:2": _envelope({"set": [[["state", "count", "deeper"], 1]], "unset": []})},
                     "does not fit its document", id="patch-does-not-fit"),
        pytest.param({"p:2": b"\xff\xfe"}, "not UTF-8", id="patch-not-utf8"),
    ],
)
async def test_malformed_patch_fields_are_corrupt(adapter: RedisAdapter, shared_redis: aioredis.Redis,
                                                  extra: dict[str, Any], problem: str) -> None:
    mapping = {"d": codec.encode(big_document()), "v": "2", "b": "1", "t": "x", **extra}
    await shared_redis.hset(adapter.redis_key("k"), mapping=mapping)  # type: ignore[arg-type]
    with pytest.raises(CorruptStateError, match=problem):
        await adapter.load_versioned("k")


@pytest.mark.parametrize("base", ["one", "5", "-1", "1.5"])
async def test_an_append_over_an_unreadable_base_version_is_corrupt(adapter: RedisAdapter,
                                                                    shared_redis: aioredis.Redis,
                                                                    base: str) -> None:
    await shared_redis.hset(adapter.redis_key("k"), mapping={"d": "x", "v": "2", "b": base})
    with pytest.raises(CorruptStateError, match="base version"):
        await adapter.save_logged("k", count(1), 2)
    assert set(await fields(shared_redis, adapter, "k")) == {b"d", b"v", b"b"}


# -- the runtime --------------------------------------------------------------------------------
def counter() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
    )


#: about 250 KB: every commit's patch (the count and the last 32 intent ids) fits under it
BIG_STATE = {"count": 0, "items": {f"k{i}": "x" * 40 for i in range(5000)}}


def runtime_on(prefix: str) -> clp.Runtime:
    return clp.create_runtime(counter(), storage=f"{REDIS_URL}?prefix={prefix}", storage_key="big",
                              initial_state=BIG_STATE, config={"disable": ["*"]})


async def test_runtimes_on_a_big_state_append_patches_and_lose_no_commit(prefix: str,
                                                                         shared_redis: aioredis.Redis) -> None:
    runtimes = [runtime_on(prefix) for _ in range(3)]

    async def work(runtime: clp.Runtime) -> None:
        for _ in range(15):
            await runtime.execute("increment", {})
            await asyncio.sleep(0)

    try:
        await runtimes[0].execute("increment", {})  # the first save writes the base
        await asyncio.wait_for(asyncio.gather(*(work(r) for r in runtimes)), 60)
    finally:
        for runtime in runtimes:
            await runtime.close()
    raw = await shared_redis.hgetall(f"{prefix}big".encode())
    assert raw[b"v"] == b"46" and raw[b"b"] == b"1", "a commit rewrote the base"
    assert sorted(f for f in raw if f.startswith(b"p:")) == sorted(b"p:%d" % n for n in range(2, 47))
    async with runtime_on(prefix) as check:
        assert check.get_state("count") == 46
