"""clp-breaker: conformance, discovery and config, the provider and commit circuits (open,
fast refusal, half-open, close), and Redis-shared state."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import clp_breaker
import pytest
from clp_breaker import BreakerPlugin, CircuitOpenError, default_is_failure

import clp_core as clp
from clp_core.errors import ClpError, ConfigError, EffectError, GuardDeniedError, ProposalError, StorageError
from clp_core.plugins import plugin_statuses, process_config
from clp_core.testing.plugins import PluginSuite
from clp_core.testing.pytest_plugin import service_unavailable

REDIS_URL = os.environ.get("CLP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Provider:
    """An AI provider that fails while ``healthy`` is False; counts its calls."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def __call__(self, intent: clp.Intent) -> dict[str, Any]:
        self.calls += 1
        if not self.healthy:
            raise ConnectionError("provider unreachable")
        return {"note": "from the model"}


class Effects:
    """Effects that fail while ``healthy`` is False; counts their runs."""

    def __init__(self) -> None:
        self.healthy = True
        self.calls = 0

    def __call__(self, ctx: clp.Context) -> dict[str, Any]:
        self.calls += 1
        if not self.healthy:
            raise RuntimeError("downstream unavailable")
        return {"count": (ctx.state.get("count") or 0) + 1, "note": ctx.intent.payload.get("note")}


def contract(effects: Effects) -> clp.Contract:
    return clp.create_contract(
        intents={"write": {"inputs": {"note": "string?", "amount": "number?"}}},
        state={"count": "number", "note": "string"},
        guards=[{"name": "no_negative", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0}],
        transitions={"apply": {"effects": effects}},
    )


def runtime_with(plugin: Any, provider: Provider | None = None, effects: Effects | None = None,
                 **options: Any) -> clp.Runtime:
    return clp.create_runtime(contract(effects or Effects()), provider, middleware=[plugin],
                              config={"disable": ["*"]}, **options)


async def propose_failures(runtime: clp.Runtime, n: int) -> list[type[BaseException]]:
    kinds: list[type[BaseException]] = []
    for _ in range(n):
        try:
            await runtime.propose("write")
        except ClpError as exc:
            kinds.append(type(exc))
    return kinds


# -- conformance ---------------------------------------------------------------------------------
class TestBreakerConformance(PluginSuite):
    refusal = CircuitOpenError

    def make_plugin(self) -> Any:
        return BreakerPlugin(fail_max=2, reset_timeout=60)

    def blocked_scenario(self) -> Any:
        async def scenario(runtime: clp.Runtime) -> None:
            for _ in range(2):  # the reference effect fails on {"fail": True}: the circuit opens
                with pytest.raises(EffectError):
                    await runtime.execute("increment", {"fail": True})
            await runtime.execute("increment", {"amount": 1})  # refused: CircuitOpenError

        return scenario


class TestBareInstanceIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return BreakerPlugin()


class TestUnconfiguredIsNoop(PluginSuite):
    def make_plugin(self) -> Any:
        return clp_breaker.configure({})


# -- provider circuit ----------------------------------------------------------------------------
async def test_provider_circuit_opens_refuses_fast_half_opens_and_closes() -> None:
    plugin = BreakerPlugin(fail_max=3, reset_timeout=0.5, circuits=["provider"])
    provider = Provider()
    runtime = runtime_with(plugin, provider)
    await runtime.dispatch("write", {})

    assert await propose_failures(runtime, 3) == [ProposalError] * 3
    assert provider.calls == 3
    assert await plugin.state("provider") == "open"

    # open: refused at once, the provider is not called, nothing is staged or logged
    log = runtime.get_log()
    started = time.perf_counter()
    with pytest.raises(CircuitOpenError) as refused:
        await runtime.propose("write")
    assert time.perf_counter() - started < 0.1
    assert provider.calls == 3
    assert runtime.staged_proposal is None and runtime.get_log() == log
    assert refused.value.circuit == "provider" and 0 < refused.value.remaining <= 0.5
    assert isinstance(refused.value, ClpError)

    # after the cool-down a trial goes through; a failure opens the circuit again
    await asyncio.sleep(0.55)
    assert await propose_failures(runtime, 1) == [ProposalError]
    assert provider.calls == 4
    assert await plugin.state("provider") == "open"
    assert await propose_failures(runtime, 1) == [CircuitOpenError]

    # after another cool-down a successful trial closes it
    await asyncio.sleep(0.55)
    provider.healthy = True
    assert await runtime.propose("write") == {"note": "from the model"}
    assert await plugin.state("provider") == "closed"
    await runtime.accept_proposal("write")
    await runtime.commit()
    assert runtime.get_state("note") == "from the model"


async def test_half_open_state_is_visible_during_the_trial() -> None:
    plugin = BreakerPlugin(fail_max=1, reset_timeout=0.2, circuits=["provider"])
    seen: list[str] = []
    provider = Provider()

    async def watching(intent: clp.Intent) -> dict[str, Any]:
        seen.append(await plugin.state("provider"))
        return await provider(intent)

    runtime = clp.create_runtime(contract(Effects()), watching, middleware=[plugin], config={"disable": ["*"]})
    await runtime.dispatch("write", {})
    await propose_failures(runtime, 1)
    await asyncio.sleep(0.25)
    provider.healthy = True
    await runtime.propose("write")
    assert seen == ["closed", "half-open"]
    assert await plugin.state("provider") == "closed"


async def test_success_resets_the_failure_count() -> None:
    plugin = BreakerPlugin(fail_max=3, reset_timeout=60, circuits=["provider"])
    provider = Provider()
    runtime = runtime_with(plugin, provider)
    await runtime.dispatch("write", {})
    await propose_failures(runtime, 2)
    assert await plugin.failure_count("provider") == 2
    provider.healthy = True
    await runtime.propose("write")
    assert await plugin.failure_count("provider") == 0
    provider.healthy = False
    await propose_failures(runtime, 2)
    assert await plugin.state("provider") == "closed"


async def test_invalid_proposals_do_not_count() -> None:
    plugin = BreakerPlugin(fail_max=1, reset_timeout=60, circuits=["provider"])
    runtime = clp.create_runtime(contract(Effects()), lambda intent: {"bogus": 1}, middleware=[plugin],
                                 config={"disable": ["*"]})
    await runtime.dispatch("write", {})
    for _ in range(3):
        with pytest.raises(ProposalError, match="invalid field"):
            await runtime.propose("write")
    assert await plugin.state("provider") == "closed"


# -- commit circuit ------------------------------------------------------------------------------
async def test_commit_circuit_opens_on_effect_failures_and_refuses_before_effects() -> None:
    plugin = BreakerPlugin(fail_max=2, reset_timeout=0.5, circuits=["commit"])
    effects = Effects()
    runtime = runtime_with(plugin, effects=effects)
    await runtime.execute("write", {"note": "a"})
    effects.healthy = False
    for _ in range(2):
        with pytest.raises(EffectError):
            await runtime.execute("write", {"note": "b"})
    assert effects.calls == 3
    with pytest.raises(CircuitOpenError) as refused:
        await runtime.execute("write", {"note": "c"})
    assert refused.value.circuit == "commit"
    assert effects.calls == 3 and runtime.get_state() == {"count": 1, "note": "a"}

    await asyncio.sleep(0.55)
    effects.healthy = True
    await runtime.execute("write", {"note": "d"})
    assert await plugin.state("commit") == "closed"
    assert runtime.get_state() == {"count": 2, "note": "d"}


async def test_guard_denials_and_lifecycle_mistakes_do_not_count() -> None:
    plugin = BreakerPlugin(fail_max=1, reset_timeout=60, circuits=["commit"])
    runtime = runtime_with(plugin)
    for _ in range(3):
        with pytest.raises(GuardDeniedError):
            await runtime.execute("write", {"amount": -1})
        with pytest.raises(ClpError, match="No matching transition"):
            await runtime.execute("write", {}, transition="nope")
    assert await plugin.state("commit") == "closed"
    await runtime.execute("write", {"amount": 1})


async def test_a_replayed_commit_is_not_a_success() -> None:
    plugin = BreakerPlugin(fail_max=2, reset_timeout=60, circuits=["commit"])
    effects = Effects()
    keyed = clp.create_contract(
        intents={"write": {"inputs": {"note": "string?"}}},
        state={"count": "number", "note": "string"},
        transitions={"apply": {"effects": effects, "idempotency_key": lambda ctx: ctx.intent.payload.get("note")}},
    )
    runtime = clp.create_runtime(keyed, middleware=[plugin], config={"disable": ["*"]})
    await runtime.execute("write", {"note": "once"})
    effects.healthy = False
    with pytest.raises(EffectError):
        await runtime.execute("write", {"note": "twice"})
    replay = await runtime.execute("write", {"note": "once"})
    assert replay.replay and effects.calls == 2
    assert await plugin.failure_count("commit") == 1  # not reset by the replay
    with pytest.raises(EffectError):
        await runtime.execute("write", {"note": "thrice"})
    assert await plugin.state("commit") == "open"


class FailingStorage:
    """A plain (not versioned) storage adapter whose saves fail while ``failing``."""

    name = "failing"

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.failing = False
        self.saves = 0

    async def load(self, key: str) -> Any:
        return self.documents.get(key)

    async def save(self, key: str, document: Any) -> None:
        self.saves += 1
        if self.failing:
            raise OSError("disk on fire")
        self.documents[key] = document

    async def delete(self, key: str) -> None:
        self.documents.pop(key, None)

    async def close(self) -> None:
        pass


async def test_commit_circuit_counts_storage_failures() -> None:
    plugin = BreakerPlugin(fail_max=2, reset_timeout=60, circuits=["commit"])
    storage = FailingStorage()
    runtime = runtime_with(plugin, storage=storage)
    await runtime.execute("write", {"note": "kept"})
    storage.failing = True
    for _ in range(2):
        with pytest.raises(StorageError):
            await runtime.execute("write", {"note": "lost"})
    with pytest.raises(CircuitOpenError):
        await runtime.execute("write", {"note": "refused"})
    assert storage.saves == 3
    assert runtime.get_state("note") == "kept"


def test_default_failure_filter() -> None:
    caused = ProposalError("AI provider failed")
    caused.__cause__ = ConnectionError()
    assert default_is_failure(caused, "propose")
    assert not default_is_failure(ProposalError("Proposal contains invalid field: x"), "propose")
    assert default_is_failure(EffectError("boom", where="apply"), "commit")
    assert not default_is_failure(CircuitOpenError("commit", 1.0), "commit")
    assert default_is_failure(StorageError("down", backend="redis"), "storage")
    assert not default_is_failure(EffectError("boom", where="apply"), "after_commit")


async def test_custom_failure_filter() -> None:
    plugin = BreakerPlugin(fail_max=1, reset_timeout=60, circuits=["commit"],
                           is_failure=lambda error, phase: phase == "commit")
    runtime = runtime_with(plugin)
    with pytest.raises(ClpError):
        await runtime.execute("write", {}, transition="nope")
    assert await plugin.state("commit") == "open"


async def test_per_circuit_settings() -> None:
    plugin = BreakerPlugin(circuits={"provider": {"fail_max": 1, "reset_timeout": 5}})
    assert set(plugin.circuits) == {"provider"}
    assert plugin.circuits["provider"].fail_max == 1
    with pytest.raises(ConfigError, match="fail_max"):
        BreakerPlugin(circuits={"commit": {}})
    with pytest.raises(ConfigError, match="unknown circuit"):
        BreakerPlugin(fail_max=1, circuits=["dispatch"])
    with pytest.raises(ConfigError, match="reset_timeout"):
        BreakerPlugin(fail_max=1, reset_timeout=0)
    with pytest.raises(ConfigError, match="storage"):
        BreakerPlugin(fail_max=1, storage="etcd://x")
    with pytest.raises(ConfigError, match="unknown options"):
        clp_breaker.configure({"threshold": 3})


async def test_unreachable_state_store_fails_open_by_default() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    effects = Effects()
    runtime = runtime_with(BreakerPlugin(fail_max=1, storage=url), effects=effects)
    await runtime.execute("write", {})
    assert runtime.get_state("count") == 1
    strict = runtime_with(BreakerPlugin(fail_max=1, storage=url, fail_open=False))
    with pytest.raises(ClpError):
        await strict.execute("write", {})
    assert strict.get_state("count") is None


# -- discovery and configuration -----------------------------------------------------------------
def test_discovered_through_its_entry_point() -> None:
    status = {s.name: s for s in plugin_statuses(process_config())}["clp-breaker"]
    assert (status.distribution, status.version) == ("clp-breaker", "0.2.0")
    assert status.enabled and status.error is None
    assert isinstance(status.instance, clp_breaker.Inactive) and status.hooks == []  # a no-op until configured


async def test_configured_by_name_and_disabled_by_config() -> None:
    options = {"clp-breaker": {"fail_max": 1, "reset_timeout": 60, "namespace": f"cfg-{uuid.uuid4().hex}"}}
    provider = Provider()
    on = clp.create_runtime(contract(Effects()), provider,
                            config={"disable": ["*"], "enable": ["clp-breaker"], "plugins": options})
    await on.dispatch("write", {})
    assert await propose_failures(on, 2) == [ProposalError, CircuitOpenError]
    assert provider.calls == 1

    off_provider = Provider()
    off = clp.create_runtime(contract(Effects()), off_provider, config={"disable": ["clp-breaker"], "plugins": options})
    await off.dispatch("write", {})
    assert await propose_failures(off, 3) == [ProposalError] * 3
    assert off_provider.calls == 3


# -- Redis ---------------------------------------------------------------------------------------
@pytest.fixture
async def namespace(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        service_unavailable(request.config, f"Redis at {REDIS_URL}")
    prefix = f"clp-breaker-test-{uuid.uuid4().hex}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_redis_state_shared_by_two_runtimes(namespace: str) -> None:
    def plugin() -> BreakerPlugin:
        return BreakerPlugin(fail_max=2, reset_timeout=0.6, storage=REDIS_URL, namespace=namespace)

    first, second = plugin(), plugin()  # separate instances, as in two processes
    provider_a, provider_b = Provider(), Provider()
    a, b = runtime_with(first, provider_a), runtime_with(second, provider_b)
    await a.dispatch("write", {})
    await b.dispatch("write", {})

    assert await propose_failures(a, 1) == [ProposalError]
    assert await propose_failures(b, 1) == [ProposalError]  # the second failure, counted together
    assert await first.state("provider") == "open"
    assert await propose_failures(a, 1) == [CircuitOpenError]
    assert await propose_failures(b, 1) == [CircuitOpenError]
    assert (provider_a.calls, provider_b.calls) == (1, 1)

    await asyncio.sleep(0.65)
    provider_b.healthy = True
    assert await b.propose("write") == {"note": "from the model"}  # the trial, in runtime b
    assert await first.state("provider") == "closed"  # seen closed from runtime a's plugin
    provider_a.healthy = True
    assert await a.propose("write") == {"note": "from the model"}
    await a.close()
    await b.close()


async def test_redis_commit_circuit_shared(namespace: str) -> None:
    effects_a, effects_b = Effects(), Effects()
    a = runtime_with(BreakerPlugin(fail_max=1, reset_timeout=60, storage=REDIS_URL, namespace=namespace,
                                   circuits=["commit"]), effects=effects_a)
    b = runtime_with(BreakerPlugin(fail_max=1, reset_timeout=60, storage=REDIS_URL, namespace=namespace,
                                   circuits=["commit"]), effects=effects_b)
    effects_a.healthy = False
    with pytest.raises(EffectError):
        await a.execute("write", {})
    with pytest.raises(CircuitOpenError):
        await b.execute("write", {})
    assert effects_b.calls == 0
    await a.close()
    await b.close()
