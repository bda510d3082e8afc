"""Fixtures of the clp-redis tests: the shared Redis (skipped, or failed under
``--require-services``, when it is down), a key prefix of each test's own (its keys deleted
afterwards), and private ``redis-server`` processes the failure tests may kill."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from clp_core.testing.pytest_plugin import service_unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


def count_commands(client: aioredis.Redis) -> list[tuple[Any, ...]]:
    """Record every command ``client`` sends from now on, as its connections send them (one per
    round trip: no pipelines are used here), whether through ``execute_command`` or straight on a
    pooled connection (``clp_redis._client.ScriptRunner``)."""
    sent: list[tuple[Any, ...]] = []
    pool = client.connection_pool
    original = pool.get_connection

    def counted(conn: Any) -> Any:
        if not hasattr(conn, "_counted_into"):
            send = conn.send_command

            async def counting(*command: Any, **options: Any) -> Any:
                conn._counted_into.append(command)
                return await send(*command, **options)
            conn.send_command = counting
        conn._counted_into = sent
        return conn

    async def get_connection(*args: Any, **kwargs: Any) -> Any:
        return counted(await original(*args, **kwargs))

    # the connections out already (ScriptRunner keeps one between calls) are counted too
    for conn in [*pool._available_connections, *pool._in_use_connections]:
        counted(conn)
    pool.get_connection = get_connection  # type: ignore[method-assign]
    return sent


@pytest.fixture
async def shared_redis(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """A client of the shared server at 127.0.0.1:6379 (the test is skipped when it is down)."""
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        service_unavailable(request.config, "Redis at 127.0.0.1:6379")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(shared_redis: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    value = f"clp-redis-test:{uuid.uuid4().hex}:"
    yield value
    await delete_prefix(shared_redis, value)


async def delete_prefix(client: aioredis.Redis, value: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{value}*", count=1000)]
    for start in range(0, len(keys), 500):
        await client.delete(*keys[start:start + 500])


# -- private servers --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` this test owns, on a port of its own, without persistence."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def unused_port() -> int:
    """A local port nobody listens on."""
    return free_port()


@pytest.fixture
def private_redis(request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    """A started private server, killed at the end of the test (never the shared one)."""
    if shutil.which("redis-server") is None:
        service_unavailable(request.config, "the redis-server binary (for the failure tests)")
    server = PrivateRedis(free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()
