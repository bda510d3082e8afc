"""Exactly once through lost replies: 200 commits through a FaultProxy in front of the shared
Redis that drops replies at random (p=0.2, seeded; 0.1 with the event store), each failed commit retried as
docs/exactly-once.md says; a fresh runtime without the proxy then reads every intent applied
exactly once. ``storage-patched`` starts from a big state, so commits append patches (the
others write the whole document). Short URL timeouts (and no adapter retries, so every lost reply reaches the
runtime) keep it fast."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

import clp_core as clp
from clp_core.testing.exactly_once import commit_through_lost_replies, ledger_contract
from clp_core.testing.faults import FaultProxy

REDIS_URL = "redis://127.0.0.1:6379/0"
FAST = "timeout=0.03&connect_timeout=0.2&retries=0&operation_timeout=1"


@pytest.fixture
async def proxy(shared_redis: aioredis.Redis) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(REDIS_URL) as running:
        yield running


#: about 50 KB: commits append patches (the total, the ids, the last intent ids), compacting now and then
PADDING = {"pad": {f"k{i}": "x" * 40 for i in range(1000)}}


def runtime_on(url: str, mode: str) -> clp.Runtime:
    if mode.startswith("storage"):
        return clp.create_runtime(ledger_contract(), storage=url, storage_key="ledger", config={"disable": ["*"]},
                                  initial_state=PADDING if mode == "storage-patched" else None)
    return clp.create_runtime(ledger_contract(), event_store=url, storage_key="ledger", snapshot_every=50,
                              config={"disable": ["*"]})


async def close(runtime: clp.Runtime) -> None:
    await runtime.close()
    if runtime.event_store is not None:
        await runtime.event_store.close()


# the event store makes several round trips per commit (read the tail, append): p=0.1 there
@pytest.mark.parametrize(("mode", "probability"), [("storage", 0.2), ("storage-patched", 0.2), ("event_store", 0.1)])
async def test_200_commits_through_lost_replies_apply_exactly_once(
        proxy: FaultProxy, shared_redis: aioredis.Redis, prefix: str, mode: str, probability: float) -> None:
    url = f"{REDIS_URL}?prefix={prefix}"
    result = await commit_through_lost_replies(
        lambda: runtime_on(proxy.url_for(f"{url}&{FAST}"), mode), lambda: runtime_on(url, mode), proxy,
        intents=200, probability=probability, seed=7, close=close)
    print(f"{mode}: {result.failures} failed commits ({result.unknown} unknown), {result.replays} replays, "
          f"{result.dropped_replies} replies dropped")
    result.check()
    if mode == "storage-patched":
        raw = await shared_redis.hgetall(f"{prefix}ledger".encode())
        assert any(field.startswith(b"p:") for field in raw), "no commit was appended as a patch"
