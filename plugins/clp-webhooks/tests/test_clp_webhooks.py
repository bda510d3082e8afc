"""clp-webhooks against a real HTTP server on 127.0.0.1: signatures, retries, timeouts, a slow
endpoint that must not slow commits, a full queue, a dead endpoint, flushing on close,
and discovery and config."""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import clp_webhooks
import pytest
from clp_webhooks import EVENTS, SIGNATURE_HEADER, WebhookPlugin, sign, verify

import clp_core as clp
from clp_core.errors import ConfigError, GuardDeniedError
from clp_core.log import entry_to_dict
from clp_core.plugins import plugin_statuses, process_config
from clp_core.testing.plugins import PluginSuite, reference_contract

SECRET = "s3cret"


class Endpoint:
    """A webhook receiver on 127.0.0.1 (a thread per request): records every POST, answers
    with the queued statuses (then ``status``), after ``delay`` seconds."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: collections.deque[int] = collections.deque()
        self.status = 200
        self.delay = 0.0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint.lock:
                    endpoint.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = endpoint.statuses.popleft() if endpoint.statuses else endpoint.status
                    delay = endpoint.delay
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (timeout) or closed
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.stop()


def dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def counter() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        guards=[{"name": "no_negative", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0}],
        transitions={"apply": {"effects": lambda ctx: {
            "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}},
    )


def runtime_with(*middleware: Any) -> clp.Runtime:
    return clp.create_runtime(counter(), middleware=list(middleware), config={"disable": ["*"]})


# -- conformance ---------------------------------------------------------------------------------
class TestWebhooksConformance(PluginSuite):
    server: Endpoint

    @classmethod
    def setup_class(cls) -> None:
        cls.server = Endpoint()

    @classmethod
    def teardown_class(cls) -> None:
        cls.server.stop()

    def make_plugin(self) -> Any:
        return WebhookPlugin(self.server.url, events=EVENTS, secret=SECRET, backoff=0.01)


class TestBareInstanceIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return WebhookPlugin()


class TestUnconfiguredIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return clp_webhooks.configure({})


async def test_reference_lifecycle_events_are_delivered(endpoint: Endpoint) -> None:
    plugin = WebhookPlugin(endpoint.url, events=EVENTS, secret=SECRET)
    runtime = clp.create_runtime(reference_contract(), lambda intent: {"amount": 2}, middleware=[plugin],
                                 config={"disable": ["*"]})
    await runtime.dispatch("increment", {})
    await runtime.propose("increment")
    await runtime.accept_proposal("increment")
    await runtime.commit()
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    await runtime.close()
    events = [body["event"] for body in endpoint.bodies()]
    assert events == ["after_dispatch", "after_propose", "after_commit", "after_dispatch", "on_guard_deny",
                      "after_propose"]
    deny = endpoint.bodies()[4]
    assert deny["guard"] == "no_negative" and deny["intent"]["payload"] == {"amount": -1}
    assert endpoint.bodies()[5]["proposal"] == {"values": {"amount": 0}, "source": "guard:no_negative"}


# -- delivery ------------------------------------------------------------------------------------
async def test_signed_json_body_of_a_commit(endpoint: Endpoint) -> None:
    plugin = WebhookPlugin(endpoint.url, secret=SECRET, source="orders")
    runtime = runtime_with(plugin)
    entry = await runtime.execute("increment", {"amount": 5})
    await runtime.close()

    [(headers, body)] = endpoint.requests
    assert headers["content-type"] == "application/json"
    assert headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body)
    assert headers[SIGNATURE_HEADER.lower()].startswith("sha256=")
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert not verify("wrong", body, headers[SIGNATURE_HEADER.lower()])
    assert not verify(SECRET, body + b" ", headers[SIGNATURE_HEADER.lower()])
    assert headers["x-clp-event"] == "after_commit"

    message = json.loads(body)
    assert headers["x-clp-delivery"] == message["id"]
    assert message["event"] == "after_commit" and message["source"] == "orders"
    assert message["intent"] == {"name": "increment", "payload": {"amount": 5}, "complete": True}
    assert message["entry"] == json.loads(json.dumps(entry_to_dict(entry)))
    assert message["entry"]["state_diff"][0]["path"] == "count"
    assert plugin.stats.delivered == 1 and plugin.stats.failed == 0


async def test_no_secret_no_signature(endpoint: Endpoint) -> None:
    plugin = WebhookPlugin(endpoint.url)
    runtime = runtime_with(plugin)
    await runtime.execute("increment", {})
    await runtime.close()
    [(headers, _)] = endpoint.requests
    assert SIGNATURE_HEADER.lower() not in headers


async def test_retries_on_500_then_success(endpoint: Endpoint) -> None:
    endpoint.statuses.extend([500, 503])
    plugin = WebhookPlugin(endpoint.url, secret=SECRET, max_attempts=3, backoff=0.01)
    runtime = runtime_with(plugin)
    await runtime.execute("increment", {})
    assert await plugin.drain(5)
    assert len(endpoint.requests) == 3
    assert len({headers["x-clp-delivery"] for headers, _ in endpoint.requests}) == 1  # the same delivery
    assert len({body for _, body in endpoint.requests}) == 1
    assert (plugin.stats.delivered, plugin.stats.retries, plugin.stats.failed) == (1, 2, 0)
    await runtime.close()


async def test_retry_waits_grow_exponentially(endpoint: Endpoint) -> None:
    endpoint.statuses.extend([500, 500, 500])
    plugin = WebhookPlugin(endpoint.url, max_attempts=4, backoff=0.1)
    runtime = runtime_with(plugin)
    started = time.perf_counter()
    await runtime.execute("increment", {})
    assert await plugin.drain(5)
    assert time.perf_counter() - started >= 0.1 + 0.2 + 0.4 - 0.05
    assert plugin.stats.delivered == 1 and plugin.stats.retries == 3
    await runtime.close()


async def test_client_errors_are_not_retried(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    endpoint.statuses.append(400)
    plugin = WebhookPlugin(endpoint.url, max_attempts=3, backoff=0.01)
    runtime = runtime_with(plugin)
    with caplog.at_level(logging.WARNING, logger="clp.webhooks"):
        await runtime.execute("increment", {})
        await runtime.close()
    assert len(endpoint.requests) == 1
    assert plugin.stats.failed == 1 and plugin.stats.retries == 0
    assert "gave up" in caplog.text


async def test_per_request_timeout(endpoint: Endpoint) -> None:
    endpoint.delay = 1.0
    plugin = WebhookPlugin(endpoint.url, timeout=0.2, max_attempts=2, backoff=0.01)
    runtime = runtime_with(plugin)
    await runtime.execute("increment", {})
    started = time.perf_counter()
    assert await plugin.drain(5)
    assert time.perf_counter() - started < 0.9  # two attempts of 0.2 s, not two of 1 s
    assert len(endpoint.requests) == 2
    assert plugin.stats.failed == 1 and plugin.stats.delivered == 0
    await runtime.close()


async def test_a_slow_endpoint_does_not_slow_commits(endpoint: Endpoint) -> None:
    endpoint.delay = 2.0
    plugin = WebhookPlugin(endpoint.url, secret=SECRET, timeout=5.0, flush_timeout=0.2)
    runtime = runtime_with(plugin)
    await runtime.execute("increment", {})  # warm up: worker started, first POST now hangs 2 s
    started = time.perf_counter()
    for _ in range(100):
        await runtime.execute("increment", {})
    elapsed = time.perf_counter() - started
    print(f"100 commits with a slow endpoint: {elapsed:.3f} s")
    assert elapsed < 0.5, f"100 commits took {elapsed:.3f} s with a slow endpoint"
    assert runtime.get_state("count") == 101
    assert plugin.stats.queued == 101 and plugin.stats.dropped == 0

    started = time.perf_counter()
    await runtime.close()  # a bounded wait, then the rest is abandoned
    assert time.perf_counter() - started < 1.5
    assert plugin.stats.abandoned == 101 and plugin.stats.delivered == 0


async def test_a_full_queue_drops_and_counts(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    endpoint.delay = 1.0
    plugin = WebhookPlugin(endpoint.url, queue_size=5, flush_timeout=0.1)
    runtime = runtime_with(plugin)
    with caplog.at_level(logging.WARNING, logger="clp.webhooks"):
        for _ in range(50):
            await runtime.execute("increment", {})
    assert runtime.get_state("count") == 50  # every commit stands
    assert plugin.stats.queued + plugin.stats.dropped == 50
    assert plugin.stats.queued <= 6  # the queue, and at most one in flight
    assert plugin.stats.dropped >= 44
    assert "queue full" in caplog.text
    await runtime.close()


async def test_commit_stands_when_the_endpoint_is_down(caplog: pytest.LogCaptureFixture) -> None:
    plugin = WebhookPlugin(dead_url(), max_attempts=3, backoff=0.01)
    runtime = runtime_with(plugin)
    with caplog.at_level(logging.WARNING, logger="clp.webhooks"):
        entry = await runtime.execute("increment", {"amount": 7})
        assert entry.transition_result.permitted
        assert runtime.get_state("count") == 7
        await runtime.close()  # flushes: the delivery is tried, retried and given up
    assert plugin.stats.failed == 1 and plugin.stats.retries == 2 and plugin.stats.delivered == 0
    assert "gave up" in caplog.text


async def test_several_urls_each_get_every_event(endpoint: Endpoint) -> None:
    other = Endpoint()
    try:
        plugin = WebhookPlugin(urls=[endpoint.url, other.url], secret=SECRET)
        runtime = runtime_with(plugin)
        await runtime.execute("increment", {})
        await runtime.close()
        assert len(endpoint.requests) == len(other.requests) == 1
        assert endpoint.requests[0][1] == other.requests[0][1]
        assert plugin.stats.delivered == 2
    finally:
        other.stop()


async def test_chosen_events_and_intents(endpoint: Endpoint) -> None:
    plugin = WebhookPlugin(endpoint.url, events=["after_dispatch", "on_guard_deny", "on_error"])
    runtime = runtime_with(plugin)
    await runtime.execute("increment", {})
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    with pytest.raises(clp.ClpError):
        await runtime.dispatch("nope", {})
    await runtime.close()
    events = [(b["event"], b.get("phase")) for b in endpoint.bodies()]
    assert events == [("after_dispatch", None), ("after_dispatch", None), ("on_guard_deny", None),
                      ("on_error", "dispatch")]
    assert endpoint.bodies()[3]["error"] == {"type": "UnknownIntentError", "message": "Unknown intent nope"}

    filtered = WebhookPlugin(endpoint.url, intents=["something_else"])
    runtime = runtime_with(filtered)
    await runtime.execute("increment", {})
    await runtime.close()
    assert filtered.stats.queued == 0


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="URL"):
        WebhookPlugin("ftp://example.org")
    with pytest.raises(ConfigError, match="unknown events"):
        WebhookPlugin("http://127.0.0.1:1/", events=["before_commit"])
    with pytest.raises(ConfigError, match="queue_size"):
        WebhookPlugin("http://127.0.0.1:1/", queue_size=0)
    with pytest.raises(ConfigError, match="unknown options"):
        clp_webhooks.configure({"endpoint": "http://127.0.0.1:1/"})


# -- discovery and configuration -----------------------------------------------------------------
def test_discovered_through_its_entry_point() -> None:
    status = {s.name: s for s in plugin_statuses(process_config())}["clp-webhooks"]
    assert (status.distribution, status.version) == ("clp-webhooks", "0.2.0")
    assert status.enabled and status.error is None
    assert isinstance(status.instance, clp_webhooks.Inactive) and status.hooks == []  # a no-op until configured


async def test_configured_by_name_and_disabled_by_config(endpoint: Endpoint) -> None:
    options = {"clp-webhooks": {"url": endpoint.url, "secret": SECRET, "events": ["after_commit"]}}
    runtime = clp.create_runtime(counter(), config={"disable": ["*"], "enable": ["clp-webhooks"], "plugins": options})
    async with runtime:
        await runtime.execute("increment", {})
    [(headers, body)] = endpoint.requests
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])

    off = clp.create_runtime(counter(), config={"disable": ["clp-webhooks"], "plugins": options})
    async with off:
        await off.execute("increment", {})
    assert len(endpoint.requests) == 1
