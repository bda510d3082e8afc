"""The exactly-once proof through lost replies, for network storage adapters (built in or
third party), with :class:`~clp_core.testing.faults.FaultProxy` in front of the server::

    async with FaultProxy.for_url(url) as proxy:
        result = await commit_through_lost_replies(
            lambda: clp.create_runtime(ledger_contract(), storage=proxy.url_for(url + "?timeout=0.1"),
                                       storage_key="k"),
            lambda: clp.create_runtime(ledger_contract(), storage=url, storage_key="k"),
            proxy, intents=200, probability=0.2, seed=7)
        result.check()

Each intent adds an amount of its own (distinct integers) and appends its id to a list;
the proxy drops replies at random, so saves land without the client hearing back
(``StorageError.outcome == "unknown"``); the caller retries ``commit()`` as
docs/exactly-once.md says until it succeeds. A fresh runtime without the proxy then reads the
state: every intent applied exactly once (0 doubles, 0 lost).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

import clp_core as clp
from clp_core.errors import StorageError
from clp_core.testing.faults import FaultProxy

__all__ = ["LostRepliesResult", "commit_through_lost_replies", "ledger_contract"]


def ledger_contract() -> clp.Contract:
    """Intent ``add(amount)``: ``total += amount`` and the intent's id appended to ``ids``."""
    return clp.create_contract(
        intents={"add": {"inputs": {"amount": "number"}}},
        state={"total": "number", "ids": "array"},
        transitions={"apply": {"effects": lambda ctx: {
            "total": (ctx.state.get("total") or 0) + ctx.intent.payload["amount"],
            "ids": [*(ctx.state.get("ids") or []), ctx.intent.id]}}},
    )


@attrs.frozen
class LostRepliesResult:
    intents: list[str]  # the ids committed, in order
    amounts: list[int]
    total: Any  # read afterwards by a runtime without the proxy
    ids: list[str]
    failures: int  # commit() calls that raised StorageError (each then retried)
    unknown: int  # of which outcome "unknown"
    replays: int  # commits answered as a replay of one that had landed
    dropped_replies: int  # reply chunks the proxy threw away

    @property
    def doubles(self) -> list[str]:
        return [i for i, n in collections.Counter(self.ids).items() if n > 1]

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.intents) - set(self.ids))

    def check(self) -> None:
        """Exactly one application of each intent, and the faults really happened."""
        summary = (f"{len(self.intents)} intents, {self.failures} failed commits ({self.unknown} unknown), "
                   f"{self.replays} replays, {self.dropped_replies} replies dropped")
        assert not self.doubles, f"applied twice: {self.doubles[:5]} ({summary})"
        assert not self.lost, f"lost: {self.lost[:5]} ({summary})"
        assert self.ids == self.intents, f"applied out of order ({summary})"
        assert self.total == sum(self.amounts), f"total {self.total} != {sum(self.amounts)} ({summary})"
        assert self.dropped_replies > 0 and self.unknown > 0, f"no reply was lost: {summary}"
        assert self.replays > 0, f"no commit was answered as a replay: {summary}"


async def commit_through_lost_replies(
    through_proxy: Callable[[], clp.Runtime],
    direct: Callable[[], clp.Runtime],
    proxy: FaultProxy,
    *,
    intents: int = 200,
    probability: float = 0.2,
    seed: int = 7,
    max_tries: int = 200,
    close: Callable[[clp.Runtime], Awaitable[None]] | None = None,
) -> LostRepliesResult:
    """``intents`` commits of ``add`` (``ledger_contract``) through ``proxy`` dropping replies
    with ``probability``; each failed commit is retried (``commit()`` again) up to ``max_tries``."""
    closing = close or (lambda runtime: runtime.close())
    runtime = through_proxy()
    committed: list[str] = []
    amounts: list[int] = []
    failures = unknown = replays = 0
    try:
        await runtime.hydrate()  # connected before the faults begin
        proxy.drop_replies(probability, seed=seed)
        for number in range(intents):
            amount = 1000 + number  # distinct: a double or a loss changes the total
            intent = await runtime.dispatch("add", {"amount": amount})
            for _ in range(max_tries):
                try:
                    entry = await runtime.commit()
                    break
                except StorageError as error:  # the docs' advice: the intent is current, commit again
                    failures += 1
                    unknown += error.outcome == "unknown"
            else:
                raise AssertionError(f"intent {number} did not commit in {max_tries} tries")
            assert entry.intent_id == intent.id
            replays += entry.replay
            committed.append(intent.id)
            amounts.append(amount)
    finally:
        proxy.forward()
        await closing(runtime)
    fresh = direct()
    try:
        await fresh.hydrate()
        total, ids = fresh.get_state("total"), fresh.get_state("ids") or []
    finally:
        await closing(fresh)
    return LostRepliesResult(committed, amounts, total, ids, failures, unknown, replays,
                             proxy.stats.dropped_replies)
