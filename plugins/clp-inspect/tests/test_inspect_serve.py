"""`clp inspect` as a process, over real HTTP on 127.0.0.1: the printed URL, the token, the
event stream, and a prompt stop while a page still listens."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

TOKEN = "serve-test-token-0123456789"


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url
        self.base = url.split("?")[0].rstrip("/")


@pytest.fixture
def served(flight_db: Path) -> Iterator[Served]:
    process = subprocess.Popen(
        [sys.executable, "-m", "clp_core.cli", "inspect", f"sqlite:///{flight_db}", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True).start()
    try:
        first = lines.get(timeout=30)
        found = re.search(r"serving (\S+)  \(read-only", first)
        assert found, first
        yield Served(process, found.group(1))
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_the_printed_url_carries_the_token_and_every_request_needs_it(served: Served) -> None:
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/\?token={TOKEN}", served.url)
    with httpx.Client(base_url=served.base, timeout=10) as client:
        assert client.get("/").status_code == 403
        welcome = client.get(served.url)
        assert welcome.status_code == 303 and welcome.headers["location"] == "/"
        page = client.get("/")  # the cookie now carries the token
        assert page.status_code == 200 and "flights:1" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert client.post("/").status_code == 405

        with client.stream("GET", "/stream", params={"key": "flights:1"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen = []
            for line in stream.iter_lines():
                seen.append(line)
                if line.startswith("data: ") and seen[-2:-1] == ["event: commit"]:
                    break
        assert seen[-2:] == ["event: commit", 'data: {"seq": 3}']


def test_it_stops_promptly_while_a_page_listens(served: Served) -> None:
    listening = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=served.base, timeout=30) as client:
            client.get(served.url)
            try:
                with client.stream("GET", "/stream", params={"key": "flights:1"}) as stream:
                    for _ in stream.iter_lines():
                        listening.set()
            except httpx.HTTPError:
                pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert listening.wait(10)
    started = time.monotonic()
    served.process.terminate()
    served.process.wait(15)
    assert time.monotonic() - started < 8
    thread.join(10)
