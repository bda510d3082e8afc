"""Serving the inspector with uvicorn on a socket bound here (so ``--port 0`` prints the
port it got, and a busy port is a clear error before anything starts)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._reader import StoreReader
from ._security import LOOPBACK_NAMES, check_bind


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, token: str | None) -> str:
    address = sock.getsockname()
    host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    return f"http://{host}:{address[1]}/" + (f"?token={token}" if token else "")


def serve(
    storage_url: str,
    *,
    event_store: str | bool | None = None,
    keys: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    announce: Callable[[str], Any] | None = None,
) -> None:
    """Check the address, open the store (read-only), bind, print the URL, serve until
    interrupted."""
    import uvicorn

    from .app import create_app

    check_bind(host, token)
    reader = StoreReader(storage_url, event_store, keys)
    asyncio.run(_check_opens(reader))
    sock = bind(host, port)
    allowed = None if token else {*LOOPBACK_NAMES, host}  # without a token, host is loopback
    app = create_app(reader, token=token, allowed_hosts=allowed)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    say = announce or (lambda text: (print(text), sys.stdout.flush()))
    say(f"clp inspect: serving {url_of(sock, token)}  (read-only; Ctrl-C stops)")
    for note in reader.notes:
        say(f"clp inspect: note: {note}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


async def _check_opens(reader: StoreReader) -> None:
    """Open and close once, so a wrong URL fails here with a message, not on the first page."""
    await reader.open()
    await reader.close()
