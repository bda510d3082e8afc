"""clp_core.testing.faults: each mode of the fault proxy, against the shared Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clp_core.testing.faults import FaultProxy
from clp_core.testing.pytest_plugin import service_unavailable

aioredis = pytest.importorskip("redis.asyncio")
redis_exceptions = pytest.importorskip("redis.exceptions")

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def direct(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        service_unavailable(request.config, "Redis at 127.0.0.1:6379")
    yield client
    await client.aclose()


@pytest.fixture
async def key(direct: Any) -> AsyncIterator[str]:
    name = f"clp-faults-test:{uuid.uuid4().hex}"
    yield name
    await direct.delete(name)


@pytest.fixture
async def proxy(direct: Any) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(REDIS_URL, seed=1) as running:
        yield running


def client_via(proxy: FaultProxy, timeout: float = 0.3) -> Any:
    """A redis-py client through the proxy that neither retries nor waits long."""
    return aioredis.from_url(proxy.url_for(REDIS_URL), socket_timeout=timeout, socket_connect_timeout=timeout,
                             retry_on_timeout=False, retry=None)


async def test_forward_passes_commands(proxy: FaultProxy, direct: Any, key: str) -> None:
    client = client_via(proxy)
    try:
        await client.set(key, b"v")
        assert await client.get(key) == b"v"
    finally:
        await client.aclose()
    assert await direct.get(key) == b"v"
    assert proxy.stats.requests >= 2 and proxy.stats.replies >= 2
    assert proxy.host == "127.0.0.1" and proxy.port not in (0, 6379)


async def test_delay_holds_replies(proxy: FaultProxy, key: str) -> None:
    client = client_via(proxy, timeout=2)
    try:
        await client.ping()
        proxy.delay(0.3)
        started = time.monotonic()
        await client.set(key, b"late")
        assert time.monotonic() - started >= 0.3
        proxy.delay(1.0)
        short = client_via(proxy, timeout=0.2)
        try:
            with pytest.raises(redis_exceptions.TimeoutError):
                await short.get(key)
        finally:
            await short.aclose()
    finally:
        await client.aclose()


async def test_drop_replies_applies_the_write_but_the_client_times_out(
        proxy: FaultProxy, direct: Any, key: str) -> None:
    client = client_via(proxy)
    try:
        await client.ping()
        proxy.drop_replies()
        started = time.monotonic()
        with pytest.raises(redis_exceptions.TimeoutError):
            await client.set(key, b"landed")
        assert time.monotonic() - started < 2
    finally:
        await client.aclose()
    assert await direct.get(key) == b"landed", "the server should have applied the SET"
    assert proxy.stats.dropped_replies >= 1


async def _drop_pattern(seed: int, trials: int = 12) -> list[bool]:
    """Which of ``trials`` PINGs, each on a connection of its own, lost its reply."""
    async with FaultProxy.for_url(REDIS_URL) as proxy:
        proxy.drop_replies(0.5, seed=seed)
        pattern = []
        for _ in range(trials):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                try:
                    pattern.append(await asyncio.wait_for(reader.readline(), 0.1) != b"+PONG\r\n")
                except TimeoutError:
                    pattern.append(True)
            finally:
                writer.close()
        return pattern


async def test_random_drops_follow_the_seed(direct: Any) -> None:
    first = await _drop_pattern(seed=42)
    assert first == await _drop_pattern(seed=42)
    assert True in first and False in first


async def test_reset_aborts_open_and_new_connections(proxy: FaultProxy, key: str) -> None:
    client = client_via(proxy)
    try:
        await client.set(key, b"1")
        proxy.reset()
        with pytest.raises(redis_exceptions.ConnectionError):
            await client.get(key)
        other = client_via(proxy)
        try:
            with pytest.raises(redis_exceptions.ConnectionError):
                await other.get(key)
        finally:
            await other.aclose()
        assert proxy.stats.resets >= 1 and proxy.stats.refused >= 1
        proxy.forward()
        assert await client.get(key) == b"1"
    finally:
        await client.aclose()


async def test_stall_forwards_nothing_until_the_mode_changes(proxy: FaultProxy, direct: Any, key: str) -> None:
    proxy.stall()
    client = client_via(proxy, timeout=0.2)
    try:
        with pytest.raises(redis_exceptions.TimeoutError):
            await client.set(key, b"held")
        assert await direct.get(key) is None, "a stalled proxy must not forward the request"
        assert proxy.stats.requests == 0
    finally:
        await client.aclose()
    proxy.forward()
    client = client_via(proxy)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_too_many_connections_are_aborted(direct: Any) -> None:
    async with FaultProxy.for_url(REDIS_URL, max_connections=1) as proxy:
        first = client_via(proxy)
        second = client_via(proxy)
        try:
            await first.ping()
            with pytest.raises(redis_exceptions.ConnectionError):
                await second.ping()
        finally:
            await first.aclose()
            await second.aclose()


async def test_close_releases_port_tasks_and_connections(direct: Any) -> None:
    proxy = FaultProxy.for_url(REDIS_URL)
    async with proxy:
        client = client_via(proxy)
        await client.ping()
        proxy.stall()
        stuck = asyncio.ensure_future(client_via(proxy, timeout=5).ping())
        await asyncio.sleep(0.1)
        assert proxy._tasks
    assert not proxy._tasks and not proxy._connections
    with pytest.raises(OSError):
        await asyncio.open_connection(proxy.host, proxy.port)
    with pytest.raises(redis_exceptions.RedisError):  # its connection was aborted
        await stuck
    await client.aclose()
    await proxy.close()  # twice is fine


async def test_url_for_keeps_user_path_and_query(proxy: FaultProxy) -> None:
    url = proxy.url_for("postgresql://app:secret@db.example:5432/prod?command_timeout=2")
    assert url == f"postgresql://app:secret@127.0.0.1:{proxy.port}/prod?command_timeout=2"
    assert proxy.url_for("redis://localhost/1") == f"redis://127.0.0.1:{proxy.port}/1"


def test_url_for_needs_a_started_proxy() -> None:
    with pytest.raises(RuntimeError):
        FaultProxy("127.0.0.1", 6379).url_for(REDIS_URL)


def test_bad_mode_arguments_are_refused() -> None:
    proxy = FaultProxy("127.0.0.1", 6379)
    with pytest.raises(ValueError):
        proxy.delay(-1)
    with pytest.raises(ValueError):
        proxy.drop_replies(1.5)
    assert proxy.mode == "forward"
