"""Failures, on private ``redis-server`` processes the tests own (never the shared server):
a server killed between commits, killed during a commit, too slow to answer, or absent; then
restarted on the same port. A failed commit raises StorageError naming redis and leaves the
runtime's state as it was; once the server is back, the next commit goes through."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter

import clp_core as clp
from clp_core.errors import ConflictError, StorageError
from clp_core.testing.contracts import counter_contract as counter


def runtime_on(server_url: str, mode: str, **url_query: Any) -> clp.Runtime:
    query = "".join(f"&{k}={v}" for k, v in url_query.items())
    target = f"{server_url}?prefix=fail:{query}"
    if mode == "storage":
        return clp.create_runtime(counter(), storage=target, storage_key="counter")
    return clp.create_runtime(counter(), event_store=target, storage_key="counter", snapshot_every=1000)


async def stored_state(server_url: str, mode: str) -> Any:
    """What the server holds for the runtime's key, read by a fresh runtime."""
    fresh = runtime_on(server_url, mode)
    try:
        async with fresh:
            return fresh.get_state()
    finally:
        if fresh.event_store is not None:
            await fresh.event_store.close()


async def close(runtime: clp.Runtime) -> None:
    await runtime.close()
    if runtime.event_store is not None:
        await runtime.event_store.close()


def assert_names_redis(error: StorageError) -> None:
    assert error.backend.startswith("redis"), error.backend
    assert str(error).startswith(f"[{error.backend}]")
    assert not isinstance(error, ConflictError)


MODES = pytest.mark.parametrize("mode", ["storage", "event_store"])


@MODES
async def test_server_killed_between_commits_then_restarted(private_redis: Any, mode: str) -> None:
    runtime = runtime_on(private_redis.url, mode)
    try:
        async with runtime:
            for _ in range(2):
                await runtime.execute("increment", {"amount": 5})
            assert runtime.get_state("count") == 10
            log_length = len(runtime.get_log())

            private_redis.kill()
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                await runtime.execute("increment", {"amount": 1})
            assert time.monotonic() - started < 5, "a dead server should fail the commit quickly"
            assert_names_redis(info.value)
            assert runtime.get_state() == {"count": 10}, "a failed commit changed the runtime's state"
            failed = runtime.get_log()[-1]
            assert failed.phase == "commit" and failed.error and not failed.transition_result.permitted
            assert len(runtime.get_log()) == log_length + 2  # the dispatch and the failed commit

            with pytest.raises(StorageError):  # still down: still refused, still unchanged
                await runtime.execute("increment", {"amount": 1})
            assert runtime.get_state() == {"count": 10}

            private_redis.start()  # same port, empty (no persistence): the state it held is gone
            entry = await runtime.execute("increment", {"amount": 1})
            assert entry.transition_result.permitted
            # the commit found the key gone (a version conflict), re-hydrated from the server's
            # (empty) state and committed on it: memory and server agree again
            assert runtime.get_state() == {"count": 1}
            assert await stored_state(private_redis.url, mode) == runtime.get_state()
            await runtime.execute("increment", {"amount": 1})
            assert await stored_state(private_redis.url, mode) == runtime.get_state() == {"count": 2}
    finally:
        await close(runtime)


@MODES
async def test_server_killed_during_a_commit(private_redis: Any, mode: str) -> None:
    runtime = runtime_on(private_redis.url, mode)
    admin = aioredis.from_url(private_redis.url)
    try:
        async with runtime:
            await runtime.execute("increment", {"amount": 3})
            await admin.client_pause(10_000, all=True)  # the commit's command waits unanswered...
            commit = asyncio.ensure_future(runtime.execute("increment", {"amount": 4}))
            await asyncio.sleep(0.3)
            assert not commit.done()
            private_redis.kill()  # ...and the connection drops under it
            with pytest.raises(StorageError) as info:
                await commit
            assert_names_redis(info.value)
            assert runtime.get_state() == {"count": 3}

            private_redis.start()
            await runtime.execute("increment", {"amount": 1})
            assert await stored_state(private_redis.url, mode) == runtime.get_state()
    finally:
        await admin.aclose()
        await close(runtime)


@MODES
async def test_a_server_too_slow_to_answer_is_a_timeout(private_redis: Any, mode: str) -> None:
    runtime = runtime_on(private_redis.url, mode, socket_timeout=0.2)
    admin = aioredis.from_url(private_redis.url)
    try:
        async with runtime:
            await runtime.execute("increment", {"amount": 3})
            await admin.client_pause(1_500, all=True)  # (a paused server cannot be unpaused early)
            started = time.monotonic()
            with pytest.raises(StorageError, match=r"(?i)timeout") as info:
                await runtime.execute("increment", {"amount": 4})
            assert time.monotonic() - started < 1.4
            assert_names_redis(info.value)
            assert runtime.get_state() == {"count": 3}
            await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - started)))

            # whether or not the timed-out write reached Redis, the next commit converges on
            # what Redis holds (a conflict makes it re-hydrate first)
            await runtime.execute("increment", {"amount": 1})
            stored = await stored_state(private_redis.url, mode)
            assert stored == runtime.get_state()
            assert stored["count"] in (4, 8)
    finally:
        await admin.aclose()
        await close(runtime)


@MODES
async def test_no_server_at_all_fails_hydration(unused_port: int, mode: str) -> None:
    runtime = runtime_on(f"redis://127.0.0.1:{unused_port}/0", mode)
    try:
        with pytest.raises(StorageError) as info:
            async with runtime:
                pass
        assert_names_redis(info.value)
        assert runtime.get_state() == {}
    finally:
        await close(runtime)


async def test_adapter_calls_fail_cleanly_and_recover(private_redis: Any) -> None:
    adapter = RedisAdapter(private_redis.url, prefix="raw:")
    try:
        version = await adapter.save_versioned("k", {"n": 1}, 0)
        private_redis.kill()
        for call in (adapter.load_versioned("k"), adapter.save_versioned("k", {"n": 2}, version),
                     adapter.save("k", {"n": 2}), adapter.delete("k")):
            with pytest.raises(StorageError) as info:
                await call
            assert_names_redis(info.value)
        private_redis.start()
        assert await adapter.load_versioned("k") == (None, 0)  # the new server is empty
        assert await adapter.save_versioned("k", {"n": 3}, 0) == 1  # scripts reloaded (NOSCRIPT)
    finally:
        await adapter.close()
