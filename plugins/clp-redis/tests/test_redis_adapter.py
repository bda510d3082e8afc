"""RedisAdapter against the shared Redis: the storage conformance suite, then what only Redis
can get wrong (key layout, TTL, one round trip per call, idempotent resends, other types)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter
from clp_redis.adapter import SAVE_VERSIONED

from clp_core import codec
from clp_core.errors import ConfigError, ConflictError, CorruptStateError, StorageError
from clp_core.plugin_api import Patch, Write
from clp_core.plugins import plugin_statuses, process_config
from clp_core.resolve import resolve_storage
from clp_core.testing.storage import NASTY_KEYS, StorageAdapterSuite

from .conftest import count_commands

REDIS_URL = "redis://127.0.0.1:6379/0"


class TestRedisAdapter(StorageAdapterSuite):
    @pytest.fixture(autouse=True)
    def _redis_prefix(self, prefix: str) -> None:
        self.prefix = prefix

    async def make_adapter(self) -> RedisAdapter:
        return RedisAdapter(REDIS_URL, prefix=self.prefix)

    async def write_raw(self, adapter: RedisAdapter, key: str, raw: bytes) -> None:
        redis_key = adapter.redis_key(key)
        await adapter.client.delete(redis_key)
        await adapter.client.hset(redis_key, mapping={"v": 1, "d": raw})


@pytest.fixture
async def adapter(prefix: str) -> Any:
    adapter = RedisAdapter(REDIS_URL, prefix=prefix)
    yield adapter
    await adapter.close()


# -- layout ---------------------------------------------------------------------------------
async def test_keys_are_prefix_plus_key_verbatim(adapter: RedisAdapter, shared_redis: aioredis.Redis,
                                                 prefix: str) -> None:
    for key in NASTY_KEYS:
        await adapter.save(key, {"k": key})
    stored = {k async for k in shared_redis.scan_iter(match=f"{prefix}*", count=1000)}
    assert stored == {(prefix + key).encode() for key in NASTY_KEYS}
    raw = await shared_redis.hgetall((prefix + "plain").encode())
    assert set(raw) == {b"v", b"d", b"t", b"b"}
    assert raw[b"v"] == raw[b"b"] == b"1"
    assert codec.decode(raw[b"d"], backend="test", key="plain") == {"k": "plain"}


async def test_prefixes_keep_adapters_apart(prefix: str) -> None:
    first, second = RedisAdapter(REDIS_URL, prefix=prefix + "a:"), RedisAdapter(REDIS_URL, prefix=prefix + "b:")
    try:
        await first.save("k", {"who": "first"})
        assert await second.load("k") is None
        await second.save("k", {"who": "second"})
        assert await first.load("k") == {"who": "first"}
    finally:
        await first.close()
        await second.close()


# -- TTL ------------------------------------------------------------------------------------
async def test_ttl_is_applied_on_every_save(prefix: str, shared_redis: aioredis.Redis) -> None:
    adapter = RedisAdapter(REDIS_URL, prefix=prefix, ttl=60)
    key = (prefix + "k").encode()
    try:
        await adapter.save("k", {"n": 1})
        assert 55_000 < await shared_redis.pttl(key) <= 60_000
        await shared_redis.pexpire(key, 5_000)
        version = await adapter.save_versioned("k", {"n": 2}, 2 - 1)
        assert 55_000 < await shared_redis.pttl(key) <= 60_000, "a versioned save must reset the expiry"
        await shared_redis.pexpire(key, 5_000)
        await adapter.save("k", {"n": 3})
        assert 55_000 < await shared_redis.pttl(key) <= 60_000, "a plain save must reset the expiry"
        assert await adapter.load_versioned("k") == ({"n": 3}, version + 1)
    finally:
        await adapter.close()


async def test_without_ttl_keys_do_not_expire(adapter: RedisAdapter, shared_redis: aioredis.Redis,
                                              prefix: str) -> None:
    key = (prefix + "k").encode()
    await adapter.save("k", {"n": 1})
    assert await shared_redis.pttl(key) == -1
    await shared_redis.pexpire(key, 60_000)  # left by an adapter that had a ttl
    await adapter.save_versioned("k", {"n": 2}, 1)
    assert await shared_redis.pttl(key) == -1


async def test_expired_key_loads_as_missing(prefix: str) -> None:
    adapter = RedisAdapter(REDIS_URL, prefix=prefix, ttl=0.05)
    try:
        await adapter.save_versioned("k", {"n": 1}, 0)
        await asyncio.sleep(0.2)
        assert await adapter.load_versioned("k") == (None, 0)
        assert await adapter.save_versioned("k", {"n": 2}, 0) == 1
    finally:
        await adapter.close()


async def test_ttl_and_prefix_from_the_url(prefix: str, shared_redis: aioredis.Redis) -> None:
    adapter = resolve_storage(f"redis://127.0.0.1:6379/0?prefix={prefix}url:&ttl=30&socket_timeout=3")
    try:
        assert isinstance(adapter, RedisAdapter)
        assert (adapter.prefix, adapter.ttl) == (prefix + "url:", 30.0)
        await adapter.save("k", {"n": 1})
        assert 25_000 < await shared_redis.pttl((prefix + "url:k").encode()) <= 30_000
    finally:
        await adapter.close()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "60", True])
def test_invalid_ttl_is_refused(ttl: Any) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        RedisAdapter(REDIS_URL, ttl=ttl)


def test_invalid_urls_are_refused() -> None:
    with pytest.raises(ConfigError, match="Redis URL"):
        RedisAdapter("http://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="ttl"):
        RedisAdapter("redis://127.0.0.1:6379/0?ttl=soon")


# -- round trips ------------------------------------------------------------------------------
async def test_every_call_is_one_round_trip(adapter: RedisAdapter) -> None:
    await adapter.save("warm", {"x": 0})  # loads the scripts (SCRIPT LOAD after NOSCRIPT, once)
    await adapter.save_versioned("warm", {"x": 1}, 1)
    sent = count_commands(adapter.client)
    version = await adapter.save_versioned("k", {"n": 1}, 0)
    assert [c[0] for c in sent] == ["EVALSHA"]
    sent.clear()
    assert await adapter.load_versioned("k") == ({"n": 1}, version)
    assert [c[0] for c in sent] == ["HGETALL"]
    sent.clear()
    with pytest.raises(ConflictError):
        await adapter.save_versioned("k", {"n": 2}, 0)
    assert [c[0] for c in sent] == ["EVALSHA"]
    sent.clear()
    await adapter.save("k", {"n": 3})
    await adapter.delete("k")
    assert [c[0] for c in sent] == ["EVALSHA", "DEL"]


async def test_scripts_are_reloaded_after_a_script_flush(adapter: RedisAdapter,
                                                         shared_redis: aioredis.Redis) -> None:
    await adapter.save_versioned("k", {"n": 1}, 0)
    script = adapter.client.register_script(SAVE_VERSIONED)  # same body, same SHA
    await shared_redis.script_flush()  # as after a server restart
    assert not (await shared_redis.script_exists(script.sha))[0]
    assert await adapter.save_versioned("k", {"n": 2}, 1) == 2
    assert await adapter.load("k") == {"n": 2}


# -- resends ----------------------------------------------------------------------------------
async def test_a_resent_versioned_save_is_not_a_conflict(adapter: RedisAdapter) -> None:
    """The connection dropped after Redis wrote, and the client sends the same command again:
    the script sees its own token and reports success, at the version it wrote."""
    key = [adapter.redis_key("k")]
    args = [0, codec.encode({"n": 1}).encode(), uuid.uuid4().hex, ""]
    assert await adapter._save_versioned(keys=key, args=args) == [1, 1]
    assert await adapter._save_versioned(keys=key, args=args) == [1, 1]  # the resend
    assert await adapter.load_versioned("k") == ({"n": 1}, 1)
    other = [0, codec.encode({"n": "other"}).encode(), uuid.uuid4().hex, ""]
    assert await adapter._save_versioned(keys=key, args=other) == [0, 1]  # another writer conflicts
    await adapter.save("k", {"n": 2})
    assert await adapter._save_versioned(keys=key, args=args) == [0, 2]  # not once someone else wrote


async def test_a_resent_plain_save_does_not_bump_the_version_twice(adapter: RedisAdapter) -> None:
    key = [adapter.redis_key("k")]
    args = [codec.encode({"n": 1}).encode(), uuid.uuid4().hex, ""]
    assert await adapter._save(keys=key, args=args) == 1
    assert await adapter._save(keys=key, args=args) == 1
    assert await adapter.load_versioned("k") == ({"n": 1}, 1)


# -- values Redis holds that this adapter did not write ------------------------------------------
async def test_a_key_of_another_type_is_corrupt_and_left_alone(adapter: RedisAdapter,
                                                               shared_redis: aioredis.Redis) -> None:
    redis_key = adapter.redis_key("list")
    await shared_redis.rpush(redis_key, "someone else's")
    for call in (adapter.load("list"), adapter.load_versioned("list"), adapter.save("list", {"x": 1}),
                 adapter.save_versioned("list", {"x": 1}, 0),
                 adapter.save_logged("list", Write(Patch().encode(), compacts=False), 0)):
        with pytest.raises(CorruptStateError, match="'list'"):
            await call
    assert await shared_redis.lrange(redis_key, 0, -1) == [b"someone else's"]
    await adapter.delete("list")
    assert await adapter.load("list") is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"v": "one", "d": codec.encode({})}, "not a number", id="bad-version"),
        pytest.param({"d": codec.encode({})}, "version", id="no-version"),
        pytest.param({"v": "1"}, "data", id="no-data"),
    ],
)
async def test_malformed_hash_is_corrupt(adapter: RedisAdapter, shared_redis: aioredis.Redis,
                                         fields: dict[str, str], problem: str) -> None:
    await shared_redis.hset(adapter.redis_key("k"), mapping=fields)  # type: ignore[arg-type]
    with pytest.raises(CorruptStateError, match=problem):
        await adapter.load_versioned("k")


@pytest.mark.parametrize("version", ["one", "1.5"])
async def test_versioned_save_over_an_unreadable_version_is_corrupt(adapter: RedisAdapter,
                                                                    shared_redis: aioredis.Redis,
                                                                    version: str) -> None:
    await shared_redis.hset(adapter.redis_key("k"), mapping={"v": version, "d": "x"})
    with pytest.raises(CorruptStateError, match="version"):
        await adapter.save_versioned("k", {"n": 1}, 0)
    assert await shared_redis.hget(adapter.redis_key("k"), "d") == b"x"


# -- several adapters, clients, closing ----------------------------------------------------------
async def test_two_adapters_never_lose_an_increment(prefix: str) -> None:
    first, second = RedisAdapter(REDIS_URL, prefix=prefix), RedisAdapter(REDIS_URL, prefix=prefix)

    async def add(adapter: RedisAdapter, times: int) -> None:
        for _ in range(times):
            while True:
                document, version = await adapter.load_versioned("n")
                try:
                    await adapter.save_versioned("n", {"n": (document or {"n": 0})["n"] + 1}, version)
                    break
                except ConflictError:
                    await asyncio.sleep(0)

    try:
        await asyncio.wait_for(asyncio.gather(add(first, 50), add(second, 50), add(first, 50)), 60)
        assert await second.load_versioned("n") == ({"n": 150}, 150)
    finally:
        await first.close()
        await second.close()


async def test_a_client_passed_in_is_used_and_not_closed(prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    adapter = RedisAdapter(prefix=prefix, client=client)
    try:
        await adapter.save("k", {"x": 1})
        await adapter.close()
        assert await client.ping()
        assert await RedisAdapter(REDIS_URL, prefix=prefix, client=client).load("k") == {"x": 1}
    finally:
        await client.aclose()


async def test_close_closes_the_pool(prefix: str, shared_redis: aioredis.Redis) -> None:
    name = f"clp-redis-test-{uuid.uuid4().hex}"
    adapter = RedisAdapter(REDIS_URL, prefix=prefix, client_name=name)
    await asyncio.gather(*(adapter.save(f"k{i}", {"i": i}) for i in range(5)))
    assert await connections_named(shared_redis, name) > 1
    await adapter.close()
    assert await eventually_zero(lambda: connections_named(shared_redis, name))


async def connections_named(client: aioredis.Redis, name: str) -> int:
    return sum(1 for c in await client.client_list() if c.get("name") == name)


async def eventually_zero(count: Any) -> bool:
    for _ in range(50):
        if await count() == 0:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_unreachable_server_is_a_storage_error_without_the_password(unused_port: int) -> None:
    adapter = RedisAdapter(f"redis://:hunter2@127.0.0.1:{unused_port}/0")
    try:
        for call in (adapter.load("k"), adapter.save("k", {}), adapter.save_versioned("k", {}, 0),
                     adapter.delete("k")):
            with pytest.raises(StorageError) as info:
                await call
            assert info.value.backend == "redis"
            assert "[redis]" in str(info.value) and "'k'" in str(info.value)
            assert "hunter2" not in str(info.value)
            assert not isinstance(info.value, CorruptStateError | ConflictError)
    finally:
        await adapter.close()


# -- discovery ----------------------------------------------------------------------------------
def test_discovered_through_its_entry_point() -> None:
    status = {s.name: s for s in plugin_statuses(process_config())}["clp-redis"]
    assert (status.distribution, status.version) == ("clp-redis", "0.2.0")
    assert status.enabled and status.error is None
    assert {"register_storage", "register_event_stores"} <= set(status.hooks)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://example.invalid:6380/1"])
async def test_urls_resolve_to_the_adapter(url: str) -> None:
    adapter = resolve_storage(url)
    assert isinstance(adapter, RedisAdapter) and adapter.prefix == "clp:" and adapter.ttl is None
    await adapter.close()


async def test_keys_leaves_out_an_event_store_sharing_the_prefix(adapter: RedisAdapter, prefix: str) -> None:
    from clp_redis import RedisEventStore

    from clp_core.testing.events import make_event

    store = RedisEventStore(REDIS_URL, prefix=prefix + "events:")
    try:
        await store.append(make_event("agg", 1), 0)
        await adapter.save("doc", {"n": 1})
        assert await adapter.keys() == ["doc"]
        assert await adapter.keys("events:") == []
    finally:
        await store.close()


async def test_versioned_saves_keep_one_connection_between_calls_and_give_it_back(prefix: str) -> None:
    """ScriptRunner: back-to-back saves reuse one held connection (no pool round trip);
    concurrent saves take more from the pool; close() returns them all."""
    adapter = RedisAdapter(f"redis://127.0.0.1:6379/0?prefix={prefix}")
    pool = adapter.client.connection_pool
    taken = 0
    original = pool.get_connection

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal taken
        taken += 1
        return await original(*args, **kwargs)

    pool.get_connection = counting  # type: ignore[method-assign]
    version = 0
    for n in range(5):
        version = await adapter.save_versioned("k", {"n": n}, version)
    assert taken == 1 and len(pool._in_use_connections) == 1  # the held one

    async def writer(key: str) -> None:
        saved = 0
        for n in range(5):
            saved = await adapter.save_versioned(key, {"n": n}, saved)

    await asyncio.gather(*(writer(f"w{i}") for i in range(4)))
    assert taken > 1
    assert [await adapter.load_versioned(f"w{i}") for i in range(4)] == [({"n": 4}, 5)] * 4
    await adapter.close()
    assert len(pool._in_use_connections) == 0


async def test_a_bounded_pool_is_not_starved_by_the_held_connection(prefix: str) -> None:
    adapter = RedisAdapter(f"redis://127.0.0.1:6379/0?prefix={prefix}&max_connections=1&retries=0")
    try:
        version = await adapter.save_versioned("k", {"n": 1}, 0)
        assert await adapter.load_versioned("k") == ({"n": 1}, version)
        assert await adapter.save_versioned("k", {"n": 2}, version) == version + 1
    finally:
        await adapter.close()


async def test_a_bounded_pool_holds_no_connection_for_the_other_calls(prefix: str) -> None:
    """Loads go through redis-py's pool, not the held connection: with max_connections=2 a
    held one would leave two concurrent loads one connection (MaxConnectionsError)."""
    adapter = RedisAdapter(f"redis://127.0.0.1:6379/0?prefix={prefix}&max_connections=2&retries=0")
    try:
        version = await adapter.save_versioned("k", {"n": 1}, 0)
        assert adapter._direct is not None and adapter._direct._held is None
        loads = await asyncio.gather(*(adapter.load_versioned("k") for _ in range(2)))
        assert loads == [({"n": 1}, version)] * 2
    finally:
        await adapter.close()


async def test_a_pool_out_of_connections_is_not_applied(prefix: str) -> None:
    adapter = RedisAdapter(f"redis://127.0.0.1:6379/0?prefix={prefix}&max_connections=1&retries=0")
    try:
        results = await asyncio.gather(*(adapter.save(f"k{i}", {"n": i}) for i in range(3)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, StorageError)]
        assert refused and all(r.outcome == "not_applied" for r in refused), results
    finally:
        await adapter.close()


async def test_a_held_connection_the_server_closed_is_reopened_before_sending(
        prefix: str, shared_redis: aioredis.Redis) -> None:
    adapter = RedisAdapter(f"redis://127.0.0.1:6379/0?prefix={prefix}&retries=0")
    try:
        version = await adapter.save_versioned("k", {"n": 1}, 0)
        held = adapter._direct._held  # type: ignore[union-attr]
        assert held is not None
        await held.send_command("CLIENT", "ID")
        client_id = await held.read_response()
        await shared_redis.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.05)
        # no retry allowed: the commit succeeds only if the dead socket is noticed before sending
        assert await adapter.save_versioned("k", {"n": 2}, version) == version + 1
    finally:
        await adapter.close()
