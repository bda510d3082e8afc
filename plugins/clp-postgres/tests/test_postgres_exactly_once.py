"""Exactly once through lost replies: 200 commits through a FaultProxy in front of the shared
PostgreSQL that drops replies at random (p=0.2, seeded; 0.1 with the event store), on a small
document (each commit writes it whole) and on a big one (commits append patches), each failed
commit retried as docs/exactly-once.md says; a fresh runtime without the proxy then reads every
intent applied exactly once. Short URL time limits keep it fast."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import pytest
from clp_postgres import PostgresAdapter
from clp_postgres._common import split_url, url_kwargs

import clp_core as clp
from clp_core.plugin_api import Write
from clp_core.testing.exactly_once import commit_through_lost_replies, ledger_contract
from clp_core.testing.faults import FaultProxy

FAST = "command_timeout=0.05&connect_timeout=0.1&operation_timeout=1"


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(pg_dsn) as running:
        yield running


#: Padding that makes the stored document big enough to be patched (``storage-patched``): most
#: commits then append a patch, and now and then one compacts (the ids array is written whole).
BIG = {"pad": {f"p{i}": "x" * 40 for i in range(400)}}

SAVES: collections.Counter[str] = collections.Counter()  # saves that landed, by kind


class CountingAdapter(PostgresAdapter):
    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        version = await super().save_logged(key, write, expected_version)
        SAVES["whole" if write.compacts else "patch"] += 1
        return version


def runtime_on(url: str, mode: str) -> clp.Runtime:
    if mode == "storage-patched":
        dsn, options = split_url(url)
        return clp.create_runtime(ledger_contract(), storage=CountingAdapter(dsn, **url_kwargs(options)),
                                  storage_key="ledger", config={"disable": ["*"]}, initial_state=BIG)
    if mode == "storage":
        return clp.create_runtime(ledger_contract(), storage=url, storage_key="ledger", config={"disable": ["*"]})
    return clp.create_runtime(ledger_contract(), event_store=url, storage_key="ledger", snapshot_every=50,
                              config={"disable": ["*"]})


async def close(runtime: clp.Runtime) -> None:
    await runtime.close()
    for resource in (runtime.storage, runtime.event_store):
        if resource is not None:
            await resource.close()  # a second close is harmless


@pytest.mark.parametrize(("mode", "probability"), [("storage", 0.2), ("storage-patched", 0.2), ("event_store", 0.1)])
async def test_200_commits_through_lost_replies_apply_exactly_once(
        proxy: FaultProxy, pg_dsn: str, table: str, mode: str, probability: float) -> None:
    url = f"{pg_dsn}?table={table}"
    SAVES.clear()
    result = await commit_through_lost_replies(
        lambda: runtime_on(proxy.url_for(f"{url}&{FAST}"), mode), lambda: runtime_on(url, mode), proxy,
        intents=200, probability=probability, seed=7, close=close)
    print(f"{mode}: {result.failures} failed commits ({result.unknown} unknown), {result.replays} replays, "
          f"{result.dropped_replies} replies dropped")
    result.check()
    if mode == "storage-patched":
        assert SAVES["patch"] > 100 and SAVES["whole"] > 1, SAVES
