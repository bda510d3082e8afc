"""Timeouts (URL options with a 5 s bound by default) and StorageError.outcome, shown with
clp_core.testing.faults.FaultProxy in front of the shared Redis (keys under a prefix of each
test's own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter, RedisEventStore
from clp_redis._client import Timeouts

import clp_core as clp
from clp_core.errors import ConfigError, StorageError
from clp_core.testing.contracts import counter_contract as counter
from clp_core.testing.events import make_event
from clp_core.testing.faults import FaultProxy

REDIS_URL = "redis://127.0.0.1:6379/0"
MODES = pytest.mark.parametrize("mode", ["storage", "event_store"])


@pytest.fixture
async def proxy(shared_redis: aioredis.Redis) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(REDIS_URL) as running:
        yield running


def runtime_on(url: str, mode: str) -> clp.Runtime:
    if mode == "storage":
        return clp.create_runtime(counter(), storage=url, storage_key="counter")
    return clp.create_runtime(counter(), event_store=url, storage_key="counter", snapshot_every=1000)


async def close(runtime: clp.Runtime) -> None:
    await runtime.close()
    if runtime.event_store is not None:
        await runtime.event_store.close()


def test_default_timeouts_bound_one_failed_operation_to_five_seconds() -> None:
    t = Timeouts()
    assert t.operation_timeout <= 5
    assert (t.retries + 1) * max(t.timeout, t.connect_timeout) + t.retries * 0.2 <= 5


def test_url_timeout_options_reach_the_client() -> None:
    adapter = RedisAdapter(f"{REDIS_URL}?timeout=2&connect_timeout=0.5&retries=1&operation_timeout=4")
    kwargs = adapter.client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == 0.5
    assert "socket_timeout" in kwargs and kwargs["socket_timeout"] is None  # clp_redis bounds each attempt
    assert adapter.timeouts == Timeouts(timeout=2, connect_timeout=0.5, retries=1, operation_timeout=4)
    store = RedisEventStore(REDIS_URL, timeout=3)
    assert store.timeouts.timeout == 3


@pytest.mark.parametrize("query", ["timeout=abc", "timeout=0", "connect_timeout=-1", "retries=x",
                                   "operation_timeout=nan", "retries=-1"])
def test_bad_timeout_options_are_config_errors(query: str) -> None:
    with pytest.raises(ConfigError, match=query.split("=")[0]):
        RedisAdapter(f"{REDIS_URL}?{query}")


@MODES
async def test_a_commit_against_a_stalled_server_fails_within_the_default_bound(
        proxy: FaultProxy, prefix: str, mode: str) -> None:
    runtime = runtime_on(proxy.url_for(f"{REDIS_URL}?prefix={prefix}"), mode)
    try:
        async with runtime:
            await runtime.execute("increment", {"amount": 2})
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                await runtime.execute("increment", {"amount": 1})
            elapsed = time.monotonic() - started
            assert elapsed < 5.5, f"a stalled server held the commit {elapsed:.1f} s"
            assert info.value.backend.startswith("redis")
            assert info.value.outcome == "unknown"
            assert runtime.get_state() == {"count": 2}
            proxy.forward()
    finally:
        proxy.forward()
        await close(runtime)


async def test_url_timeouts_shorten_the_bound(proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.2&retries=1"))
    try:
        await adapter.save("k", {"x": 1})
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"after 2 attempts: TimeoutError: no reply within timeout=0\.2 s"):
            await adapter.save("k", {"x": 2})
        assert time.monotonic() - started < 1.0
        proxy.forward()
        await adapter.save("k", {"x": 3})  # the timed-out connections were closed: no stale reply is read
        assert await adapter.load("k") == {"x": 3}
    finally:
        proxy.forward()
        await adapter.close()


async def test_operation_timeout_caps_the_whole_operation(proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=5&operation_timeout=0.3"))
    try:
        await adapter.save("k", {"x": 1})
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"operation_timeout=0\.3") as info:
            await adapter.save("k", {"x": 2})
        assert time.monotonic() - started < 1.0
        assert info.value.outcome == "unknown"
    finally:
        proxy.forward()
        await adapter.close()


async def test_a_lost_reply_is_an_unknown_outcome_although_the_write_landed(
        proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.3"))
    direct = RedisAdapter(f"{REDIS_URL}?prefix={prefix}")
    try:
        await adapter.save_versioned("k", {"x": 1}, 0)
        proxy.drop_replies()
        with pytest.raises(StorageError) as info:
            await adapter.save_versioned("k", {"x": 2}, 1)
        assert info.value.outcome == "unknown", "the retries must not hide that the first attempt landed"
        assert await direct.load_versioned("k") == ({"x": 2}, 2)
    finally:
        proxy.forward()
        await adapter.close()
        await direct.close()


async def test_a_reply_lost_once_is_retried_without_applying_twice(proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.3&retries=1"))
    try:
        await adapter.save_versioned("k", {"x": 1}, 0)
        proxy.drop_replies()
        # the first attempt lands and its reply is lost (that connection stays silent); then
        # the proxy forwards again, so the retry, on a new connection, recognises its own
        # write: success at version 2, not a conflict, and nothing applied twice
        async def let_the_retry_through() -> None:
            while not proxy.stats.dropped_replies:
                await asyncio.sleep(0.005)
            proxy.forward()

        helper = asyncio.ensure_future(let_the_retry_through())
        assert await adapter.save_versioned("k", {"x": 2}, 1) == 2
        await helper
        assert await adapter.load_versioned("k") == ({"x": 2}, 2)
    finally:
        proxy.forward()
        await adapter.close()


@MODES
async def test_a_refused_connection_is_not_applied(unused_port: int, mode: str) -> None:
    runtime = runtime_on(f"redis://127.0.0.1:{unused_port}/0", mode)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            async with runtime:
                pass
        assert time.monotonic() - started < 2
        assert info.value.outcome == "not_applied"
        assert info.value.backend.startswith("redis")
    finally:
        await close(runtime)


async def test_a_reset_connection_is_an_unknown_outcome(proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.5"))
    try:
        await adapter.save("k", {"x": 1})
        proxy.reset()
        with pytest.raises(StorageError) as info:
            await adapter.save("k", {"x": 2})
        assert info.value.outcome == "unknown"
    finally:
        proxy.forward()
        await adapter.close()


async def test_a_client_passed_in_keeps_its_own_retries_and_never_claims_not_applied(unused_port: int) -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{unused_port}/0", socket_connect_timeout=0.2)
    adapter = RedisAdapter(client=client)
    try:
        with pytest.raises(StorageError) as info:
            await adapter.save("k", {"x": 1})
        assert info.value.outcome == "unknown"
    finally:
        await client.aclose()


# -- time running out before the command is written ----------------------------------------------
def writer_on(url: str, write: str) -> tuple[RedisAdapter | RedisEventStore, Callable[[], Awaitable[Any]], bytes]:
    """A store on ``url``, one write of the kind ``write`` to it, and the Redis key it writes."""
    if write == "append":
        store = RedisEventStore(url)
        return store, lambda: store.append(make_event("agg", 1), 0), store.stream_key("agg")
    adapter = RedisAdapter(url)
    if write == "versioned save":  # EVALSHA on a pooled connection (ScriptRunner)
        return adapter, lambda: adapter.save_versioned("k", {"x": 1}, 0), adapter.redis_key("k")
    return adapter, lambda: adapter.save("k", {"x": 1}), adapter.redis_key("k")  # through redis-py


@pytest.mark.parametrize("write", ["versioned save", "save", "append"])
async def test_time_running_out_while_connecting_is_not_applied(
        proxy: FaultProxy, prefix: str, shared_redis: aioredis.Redis, write: str) -> None:
    # timeout < connect_timeout: the proxy accepts each TCP connection and then stalls, so every
    # attempt is cut short by its own bound while its connection waits for the handshake's
    # replies, before the write is sent
    url = proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.2&connect_timeout=1&retries=1")
    store, do_write, key = writer_on(url, write)
    try:
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"after 2 attempts: TimeoutError: no reply within timeout=0\.2 s "
                                               r"while connecting \(this attempt sent nothing\)") as info:
            await do_write()
        assert time.monotonic() - started < 1.0
        assert info.value.outcome == "not_applied"
        assert proxy.stats.connections == 2 and proxy.stats.requests == 0  # two handshakes, nothing forwarded
        proxy.forward()
        await asyncio.sleep(0.05)
        assert not await shared_redis.exists(key)
        await do_write()  # the cut connections were closed: the next write goes through
        assert await shared_redis.exists(key)
    finally:
        proxy.forward()
        await store.close()


async def test_operation_timeout_running_out_while_connecting_is_not_applied(proxy: FaultProxy, prefix: str) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=5&connect_timeout=2"
                                         "&operation_timeout=0.3"))
    try:
        proxy.stall()
        with pytest.raises(StorageError, match=r"operation_timeout=0\.3") as info:
            await adapter.save_versioned("k", {"x": 1}, 0)
        assert info.value.outcome == "not_applied"
        assert proxy.stats.requests == 0
    finally:
        proxy.forward()
        await adapter.close()


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_reply_stalled_after_sending_stays_unknown_when_timeout_is_below_connect_timeout(
        proxy: FaultProxy, prefix: str, retries: int) -> None:
    adapter = RedisAdapter(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.2&connect_timeout=1"
                                         f"&retries={retries}"))
    try:
        await adapter.save_versioned("k", {"x": 1}, 0)  # the connection is open
        proxy.stall()
        with pytest.raises(StorageError) as info:
            await adapter.save_versioned("k", {"x": 2}, 1)
        # the first attempt wrote its EVALSHA (the proxy holds it); any retry, on a new
        # connection, is cut short while connecting: the first decides, the write may land
        assert info.value.outcome == "unknown"
        if retries:
            assert str(info.value).endswith("after 3 attempts: TimeoutError: no reply within timeout=0.2 s "
                                            "while connecting (this attempt sent nothing)")
        else:
            assert str(info.value).endswith("TimeoutError: no reply within timeout=0.2 s")
    finally:
        proxy.forward()
        await adapter.close()


@MODES
async def test_a_commit_cut_short_while_reconnecting_is_not_applied(proxy: FaultProxy, prefix: str, mode: str) -> None:
    runtime = runtime_on(proxy.url_for(f"{REDIS_URL}?prefix={prefix}&timeout=0.2&connect_timeout=1&retries=1"),
                         mode)
    try:
        async with runtime:
            await runtime.execute("increment", {"amount": 2})
            proxy.reset()  # the open connections drop...
            await asyncio.sleep(0.05)
            proxy.stall()  # ...and new ones hang in their handshake
            with pytest.raises(StorageError) as info:
                await runtime.execute("increment", {"amount": 1})
            assert info.value.outcome == "not_applied"
            assert runtime.get_state() == {"count": 2}
            proxy.forward()
            await runtime.execute("increment", {"amount": 1})
            assert runtime.get_state() == {"count": 3}
    finally:
        proxy.forward()
        await close(runtime)
