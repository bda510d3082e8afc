"""Test helpers: a private PostgreSQL cluster a test owns (to stop and restart it), and a TCP
proxy that counts round trips and can lose a reply.

Neither touches a server it did not start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any


def find_server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (PATH first, then Debian's layout)."""
    initdb = shutil.which("initdb")
    if initdb:
        folder = Path(initdb).resolve().parent  # /usr/local/bin/initdb may be a symlink
        if os.access(folder / "postgres", os.X_OK):
            return folder
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(os.path.join(candidate, tool), os.X_OK) for tool in ("initdb", "postgres")):
            return Path(candidate)
    return None


def run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to the end on a loop of its own in another thread: usable from sync
    code whether or not the calling thread has an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def fetch(dsn: str, query: str, *args: Any) -> list[Any]:
    """The rows of ``query`` on a connection of its own (opened and closed here)."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def fetch_value(dsn: str, query: str, *args: Any) -> Any:
    """The first column of the first row of ``query`` (``None`` when there is no row)."""
    rows = await fetch(dsn, query, *args)
    return rows[0][0] if rows else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A throwaway cluster: ``initdb`` into a fresh folder, ``postgres`` as a child process on
    a free port of 127.0.0.1 (its socket in the same folder), trust authentication.

    PostgreSQL refuses to run as root, so under root the folder is given to the ``postgres``
    OS user and the server runs as that user. :meth:`stop` and :meth:`start` may be called
    again and again (same port, same data); :meth:`destroy` stops it and removes the folder.
    """

    def __init__(self, bin_dir: Path | None = None, *, port: int | None = None, user: str = "postgres") -> None:
        found = bin_dir or find_server_binaries()
        if found is None:
            raise FileNotFoundError("initdb and postgres were not found (PATH, /usr/lib/postgresql/*/bin)")
        self.bin_dir = found
        self.port = port or free_port()
        self.db_user = user
        self._os_user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="clp-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir()
        self.log = self.root / "server.log"
        if self._os_user is not None:
            for path in (self.root, self.socket_dir):
                shutil.chown(path, self._os_user, self._os_user)
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.db_user}@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self) -> dict[str, Any]:
        return {} if self._os_user is None else {"user": self._os_user, "group": self._os_user}

    def _initdb(self) -> None:
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.db_user, "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            check=True, capture_output=True, cwd=self.root, **self._as_server_user(),
        )

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **self._as_server_user(),
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.server_log()}")
            if self._accepts_connections():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"postgres did not accept connections in {timeout} s:\n{self.server_log()}")

    def _accepts_connections(self) -> bool:
        """What ``pg_ctl -w`` checks: the postmaster.pid status line says ``ready``."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the port is closed."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RoundTripProxy:
    """A TCP proxy in front of a server that counts round trips: a round trip starts each
    time the client sends after having received (or at its first send).

    ``lose_next_reply()`` makes the proxy forward the client's next request, swallow the
    server's answer and cut the connection: a commit that the server did but whose reply
    was lost (the "server gone mid-commit" case, seen from the client).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.round_trips = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._lose_next = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> RoundTripProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, user: str = "postgres", database: str = "test") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def reset(self) -> None:
        self.round_trips = 0

    def lose_next_reply(self) -> None:
        self._lose_next = True

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        state = {"last": "server"}

        def close_both() -> None:
            for writer in (client_writer, server_writer):
                writer.close()

        async def client_to_server() -> None:
            try:
                while data := await client_reader.read(65536):
                    if state["last"] != "client":
                        self.round_trips += 1
                        state["last"] = "client"
                    server_writer.write(data)
                    await server_writer.drain()
                    if self._lose_next:
                        self._lose_next = False
                        state["lose"] = "yes"
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                close_both()

        async def server_to_client() -> None:
            try:
                while data := await server_reader.read(65536):
                    if state.get("lose"):
                        await asyncio.sleep(0.2)  # let the server finish the statement
                        break
                    state["last"] = "server"
                    client_writer.write(data)
                    await client_writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                close_both()

        for coro in (client_to_server(), server_to_client()):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.contextmanager
def private_cluster(**kwargs: Any) -> Iterator[PostgresCluster]:
    """A started :class:`PostgresCluster`, destroyed afterwards."""
    cluster = PostgresCluster(**kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
