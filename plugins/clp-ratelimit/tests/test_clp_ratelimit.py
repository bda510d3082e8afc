"""clp-ratelimit: conformance, discovery and config, exact in-memory counts, Redis budgets
shared by runtimes and by OS processes."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import socket
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import clp_ratelimit
import pytest
from clp_ratelimit import RateLimitedError, RateLimitPlugin

import clp_core as clp
from clp_core.errors import ClpError, ConfigError, HookError
from clp_core.plugins import plugin_statuses, process_config
from clp_core.testing.plugins import PluginSuite
from clp_core.testing.pytest_plugin import service_unavailable

REDIS_URL = os.environ.get("CLP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def counter() -> clp.Contract:
    return clp.create_contract(
        intents={
            "increment": {"inputs": {"amount": "number?", "user_id": "string?"}},
            "reset": {"inputs": {}},
        },
        state={"count": "number"},
        transitions={
            "add": {"when": lambda ctx: ctx.intent.name == "increment",
                    "effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount")
                                                                                     or 1)}},
            "zero": {"when": lambda ctx: ctx.intent.name == "reset", "effects": lambda ctx: {"count": 0}},
        },
    )


def runtime_with(*middleware: Any) -> clp.Runtime:
    return clp.create_runtime(counter(), middleware=list(middleware), config={"disable": ["*"]})


async def attempts(runtime: clp.Runtime, n: int, intent: str = "increment",
                   payload: dict[str, Any] | None = None) -> tuple[int, list[RateLimitedError]]:
    ok, refused = 0, []
    for _ in range(n):
        try:
            await runtime.execute(intent, payload or {})
            ok += 1
        except RateLimitedError as exc:
            refused.append(exc)
    return ok, refused


# -- conformance ---------------------------------------------------------------------------------
class TestRateLimitConformance(PluginSuite):
    refusal = RateLimitedError

    def make_plugin(self) -> Any:
        # the reference lifecycle dispatches three times: room for it, then refusals
        return RateLimitPlugin(limits={"increment": "5/minute"}, key_prefix=f"suite-{uuid.uuid4().hex}")

    def blocked_scenario(self) -> Any:
        async def scenario(runtime: clp.Runtime) -> None:
            await runtime.execute("increment", {"amount": 1})

        return scenario


class TestBareInstanceIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return RateLimitPlugin()


class TestUnconfiguredIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return clp_ratelimit.configure({})


# -- in memory -----------------------------------------------------------------------------------
async def test_exact_counts_in_memory() -> None:
    plugin = RateLimitPlugin(limits={"increment": "5/minute"})
    runtime = runtime_with(plugin)
    ok, refused = await attempts(runtime, 12)
    assert (ok, len(refused)) == (5, 7)
    assert runtime.get_state("count") == 5
    assert len(runtime.get_log()) == 10  # 5 dispatches + 5 commits; refusals log nothing
    error = refused[0]
    assert issubclass(type(error), ClpError)
    assert error.intent == "increment" and error.limit == "5 per 1 minute" and error.scope == "increment"
    assert error.retry_after is not None and 0 < error.retry_after <= 60
    assert await plugin.remaining("increment") == {"increment: 5 per 1 minute": 0}


async def test_a_refused_dispatch_changes_nothing() -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"increment": "1/minute"}))
    first = await runtime.dispatch("increment", {"amount": 3})
    log = runtime.get_log()
    with pytest.raises(RateLimitedError):
        await runtime.dispatch("increment", {"amount": 4})
    assert runtime.current_intent == first  # the earlier intent is still current
    assert runtime.get_log() == log
    entry = await runtime.commit()
    assert entry.intent_payload == {"amount": 3}
    assert runtime.get_state("count") == 3


async def test_refusal_reaches_on_error_with_phase_dispatch() -> None:
    seen: list[tuple[str, str]] = []

    class Spy:
        def on_error(self, error: BaseException, phase: str) -> None:
            seen.append((type(error).__name__, phase))

    runtime = runtime_with(RateLimitPlugin(limits={"increment": "1/minute"}), Spy())
    await attempts(runtime, 2)
    assert seen == [("RateLimitedError", "dispatch")]


async def test_star_is_one_budget_for_every_intent() -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"*": "3/minute", "increment": "10/minute"}))
    ok_inc, _ = await attempts(runtime, 2)
    ok_reset, refused = await attempts(runtime, 2, "reset")
    assert (ok_inc, ok_reset) == (2, 1)
    assert refused[0].scope == "*" and refused[0].intent == "reset"


async def test_intent_limit_refusal_does_not_spend_the_star_budget() -> None:
    plugin = RateLimitPlugin(limits={"*": "3/minute", "increment": "1/minute"})
    runtime = runtime_with(plugin)
    ok, refused = await attempts(runtime, 3)
    assert (ok, len(refused)) == (1, 2)
    assert all(e.scope == "increment" for e in refused)
    ok_reset, _ = await attempts(runtime, 3, "reset")
    assert ok_reset == 2  # 3 - the one increment that went through


async def test_several_limits_per_intent() -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"increment": "3/second; 4/minute"}))
    ok, refused = await attempts(runtime, 3)
    assert (ok, len(refused)) == (3, 0)
    ok, refused = await attempts(runtime, 1)
    assert ok == 0 and refused[0].limit == "3 per 1 second"
    await asyncio.sleep(1.05)
    ok, refused = await attempts(runtime, 2)
    assert ok == 1 and refused[0].limit == "4 per 1 minute"


async def test_per_key_budgets_from_a_payload_field() -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"increment": "2/minute"}, key="user_id"))
    assert (await attempts(runtime, 3, payload={"user_id": "u1"}))[0] == 2
    assert (await attempts(runtime, 3, payload={"user_id": "u2"}))[0] == 2
    assert (await attempts(runtime, 3))[0] == 2  # no user_id: one shared "no key" budget
    _, refused = await attempts(runtime, 1, payload={"user_id": "u1"})
    assert refused[0].key == "u1"
    assert "key 'u1'" in str(refused[0])


async def test_per_key_budgets_from_a_function() -> None:
    plugin = RateLimitPlugin(limits={"increment": "1/minute"},
                             key=lambda intent: "big" if (intent.payload.get("amount") or 0) > 10 else "small")
    runtime = runtime_with(plugin)
    assert (await attempts(runtime, 2, payload={"amount": 50}))[0] == 1
    assert (await attempts(runtime, 2, payload={"amount": 1}))[0] == 1


async def test_fixed_window_strategy() -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"increment": "2/minute"}, strategy="fixed-window"))
    assert (await attempts(runtime, 4))[0] == 2


async def test_one_instance_shares_its_budget_between_runtimes() -> None:
    plugin = RateLimitPlugin(limits={"increment": "3/minute"})
    a, b = runtime_with(plugin), runtime_with(plugin)
    assert (await attempts(a, 2))[0] == 2
    assert (await attempts(b, 2))[0] == 1


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="increment"):
        RateLimitPlugin(limits={"increment": "ten per fortnight"})
    with pytest.raises(ConfigError, match="strategy"):
        RateLimitPlugin(limits={"increment": "1/second"}, strategy="leaky")
    with pytest.raises(ConfigError, match="storage"):
        RateLimitPlugin(limits={"increment": "1/second"}, storage="memcached://x")
    with pytest.raises(ConfigError, match="unknown options"):
        clp_ratelimit.configure({"limit": {"increment": "1/second"}})


async def test_storage_failure_refuses_unless_fail_open() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    closed = runtime_with(RateLimitPlugin(limits={"increment": "5/minute"}, storage=url))
    with pytest.raises(HookError):
        await closed.execute("increment", {})
    assert closed.get_state("count") is None
    opened = runtime_with(RateLimitPlugin(limits={"increment": "5/minute"}, storage=url, fail_open=True))
    await opened.execute("increment", {})
    assert opened.get_state("count") == 1


# -- discovery and configuration -----------------------------------------------------------------
def test_discovered_through_its_entry_point() -> None:
    statuses = {s.name: s for s in plugin_statuses(process_config())}
    status = statuses["clp-ratelimit"]
    assert (status.distribution, status.version) == ("clp-ratelimit", "0.2.0")
    assert status.enabled and status.error is None
    assert isinstance(status.instance, clp_ratelimit.Inactive) and status.hooks == []  # a no-op until configured


def test_bad_configuration_is_reported_not_raised() -> None:
    config = process_config().merged({"plugins": {"clp-ratelimit": {"limits": {"increment": "often"}}}}, "test")
    status = {s.name: s for s in plugin_statuses(config)}["clp-ratelimit"]
    assert not status.enabled and status.reason == "failed to configure" and "increment" in (status.error or "")


async def test_configured_by_name_and_disabled_by_config() -> None:
    options = {"clp-ratelimit": {"limits": {"increment": "1/minute"}, "key_prefix": f"cfg-{uuid.uuid4().hex}"}}
    limited = clp.create_runtime(counter(), config={"disable": ["*"], "enable": ["clp-ratelimit"], "plugins": options})
    assert (await attempts(limited, 3))[0] == 1
    # the same options give the same instance: the budget is shared and already spent
    again = clp.create_runtime(counter(), config={"disable": ["*"], "enable": ["clp-ratelimit"], "plugins": options})
    assert (await attempts(again, 1))[0] == 0
    off = clp.create_runtime(counter(), config={"disable": ["clp-ratelimit"], "plugins": options})
    assert (await attempts(off, 3))[0] == 3


# -- Redis ---------------------------------------------------------------------------------------
@pytest.fixture
async def redis_prefix(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        service_unavailable(request.config, f"Redis at {REDIS_URL}")
    prefix = f"clp-ratelimit-test-{uuid.uuid4().hex}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_redis_budget_shared_by_two_runtimes(redis_prefix: str) -> None:
    def plugin() -> RateLimitPlugin:
        return RateLimitPlugin(limits={"increment": "5/minute"}, storage=REDIS_URL, key_prefix=redis_prefix)

    first, second = plugin(), plugin()  # two instances, as in two processes
    a, b = runtime_with(first), runtime_with(second)
    assert (await attempts(a, 3))[0] == 3
    ok, refused = await attempts(b, 4)
    assert (ok, len(refused)) == (2, 2)
    assert (await attempts(a, 1))[0] == 0
    assert refused[0].retry_after is not None
    assert a.get_state("count") + b.get_state("count") == 5
    await a.close()
    await b.close()


async def test_redis_per_key_budgets(redis_prefix: str) -> None:
    runtime = runtime_with(RateLimitPlugin(limits={"increment": "2/minute"}, key="user_id", storage=REDIS_URL,
                                           key_prefix=redis_prefix))
    assert (await attempts(runtime, 3, payload={"user_id": "a"}))[0] == 2
    assert (await attempts(runtime, 3, payload={"user_id": "b"}))[0] == 2
    await runtime.close()


WORKER = textwrap.dedent("""
    import asyncio, sys
    import clp_core as clp
    from clp_ratelimit import RateLimitPlugin, RateLimitedError

    async def main(url: str, prefix: str, tries: int) -> None:
        contract = clp.create_contract(
            intents={"increment": {"inputs": {}}}, state={"count": "number"},
            transitions={"add": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}})
        plugin = RateLimitPlugin(limits={"increment": "20/minute"}, storage=url, key_prefix=prefix)
        ok = refused = 0
        async with clp.create_runtime(contract, middleware=[plugin], config={"disable": ["*"]}) as runtime:
            for _ in range(tries):
                try:
                    await runtime.execute("increment", {})
                    ok += 1
                except RateLimitedError:
                    refused += 1
        print(f"ok={ok} refused={refused}")

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


async def test_redis_budget_shared_by_two_processes(redis_prefix: str, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")

    async def run() -> tuple[int, int]:
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script), REDIS_URL, redis_prefix, "15",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        match = re.search(r"ok=(\d+) refused=(\d+)", out.decode())
        assert match, out.decode()
        return int(match.group(1)), int(match.group(2))

    results = await asyncio.gather(run(), run())
    assert sum(ok for ok, _ in results) == 20  # one budget of 20 for 30 tries in two processes
    assert sum(refused for _, refused in results) == 10
