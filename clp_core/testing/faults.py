"""A TCP fault proxy for tests of network storage adapters (built in or third party).

:class:`FaultProxy` listens on ``127.0.0.1`` (a free port) and forwards each connection to a
real server. Its mode can be switched at any time, and applies to open connections as well
as new ones:

``forward()``
    Pass bytes both ways (the default).
``delay(seconds)``
    Forward requests at once but hold every reply chunk ``seconds`` first (a slow server).
``drop_replies(probability=1.0, seed=None)``
    Forward requests, so the server applies them, but throw the replies away: the client
    never hears back and times out (the *unknown outcome* case). With ``probability < 1``
    each reply is dropped at random (``seed`` makes it repeatable). Once a connection has
    lost a reply it stays silent (its protocol stream would be out of step otherwise).
``reset()``
    Abort open connections now (TCP RST) and abort new ones as soon as they are accepted.
``stall()``
    Accept connections but forward nothing, either way, until the mode changes (a hung
    server). Held bytes then go on under the new mode.

Use it as an async context manager; on exit every connection, task and socket it made is
closed::

    async with FaultProxy.for_url("redis://127.0.0.1:6379/0") as proxy:
        adapter = RedisAdapter(proxy.url_for("redis://127.0.0.1:6379/0"))
        proxy.drop_replies()
        ...                      # a save reaches Redis, the client times out

Memory is bounded: at most ``max_connections`` open connections (more are aborted), one
chunk of ``chunk_size`` bytes held per direction; a stalled direction stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import urllib.parse
from typing import Any

import attrs

__all__ = ["DEFAULT_PORTS", "FaultProxy", "ProxyStats"]

FORWARD, DELAY, DROP_REPLIES, RESET, STALL = "forward", "delay", "drop_replies", "reset", "stall"

#: Ports assumed for URLs that name none.
DEFAULT_PORTS = {
    "redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432, "mongodb": 27017,
    "mysql": 3306, "http": 80, "https": 443,
}


@attrs.define
class ProxyStats:
    """Counters, for asserting what went through (``proxy.stats``)."""

    connections: int = 0  # accepted in all
    refused: int = 0  # aborted on accept (reset mode, or over max_connections)
    resets: int = 0  # open connections aborted by reset()
    requests: int = 0  # chunks forwarded client -> server
    replies: int = 0  # chunks forwarded server -> client
    dropped_replies: int = 0  # reply chunks thrown away


@attrs.define(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    silent: bool = False  # a reply was dropped: drop every later one too

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # linger 0: close sends RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    """A TCP proxy in front of ``target_host:target_port`` whose faults tests switch on."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        max_connections: int = 64,
        chunk_size: int = 65536,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = int(target_port)
        self.host = host
        self.port = port  # the real port once started
        self.max_connections = max_connections
        self.chunk_size = chunk_size
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self._random = random.Random(seed)
        self._mode = FORWARD
        self._delay = 0.0
        self._probability = 1.0
        self._changed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def for_url(cls, url: str, **options: Any) -> FaultProxy:
        """A proxy in front of the server a URL names (``redis://host:6379/0``...)."""
        parts = urllib.parse.urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        if parts.hostname is None or port is None:
            raise ValueError(f"URL {url!r} names no host and port")
        return cls(parts.hostname, port, **options)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening, abort every connection and wait for their tasks. Safe twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- where clients connect ---------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (user, path, query kept)."""
        if self._server is None:
            raise RuntimeError("start the proxy first (async with FaultProxy(...) as proxy)")
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # -- modes ---------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def _set(self, mode: str) -> None:
        self._mode = mode
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def forward(self) -> None:
        self._set(FORWARD)

    def delay(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, not {seconds!r}")
        self._delay = float(seconds)
        self._set(DELAY)

    def drop_replies(self, probability: float = 1.0, *, seed: int | None = None) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, not {probability!r}")
        if seed is not None:
            self._random.seed(seed)
        self._probability = float(probability)
        self._set(DROP_REPLIES)

    def reset(self) -> None:
        self._set(RESET)
        for connection in list(self._connections):
            self.stats.resets += 1
            connection.abort()

    def stall(self) -> None:
        self._set(STALL)

    async def _unstalled(self) -> str:
        while self._mode == STALL:
            await self._changed.wait()
        return self._mode

    # -- connections ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(writer)
        self._connections.add(connection)
        self.stats.connections += 1
        try:
            if len(self._connections) > self.max_connections or self._mode == RESET:
                self.stats.refused += 1
                return
            if await self._unstalled() == RESET:
                self.stats.refused += 1
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port), self.connect_timeout)
            except (TimeoutError, OSError):
                return
            connection.upstream = up_writer
            pipes = [
                asyncio.ensure_future(self._pipe(connection, reader, up_writer, reply=False)),
                asyncio.ensure_future(self._pipe(connection, up_reader, writer, reply=True)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            connection.abort()
            self._connections.discard(connection)
            self._tasks.discard(task)

    async def _pipe(self, connection: _Connection, source: asyncio.StreamReader,
                    target: asyncio.StreamWriter, *, reply: bool) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await source.read(self.chunk_size)
                if not data:
                    return
                mode = await self._unstalled()
                if mode == RESET:
                    return
                if reply:
                    if mode == DELAY and self._delay:
                        await asyncio.sleep(self._delay)
                    if connection.silent or (mode == DROP_REPLIES and self._random.random() < self._probability):
                        connection.silent = True
                        self.stats.dropped_replies += 1
                        continue
                    self.stats.replies += 1
                else:
                    self.stats.requests += 1
                target.write(data)
                await target.drain()
