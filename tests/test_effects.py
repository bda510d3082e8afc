"""Async effects: coroutines, timeouts, all-or-nothing, idempotency keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import clp_core as clp
import clp_core.log
from clp_core.errors import EffectError, EffectTimeoutError


def contract(effects: Any, **transition: Any) -> clp.Contract:
    return clp.create_contract(
        intents={"notify": {"inputs": {"to": "string", "id": "string?"}}},
        transitions={"send": clp.Transition(effects=effects, **transition)},
    )


async def test_async_effect_result_is_committed() -> None:
    sent: list[str] = []

    async def effects(ctx: Any) -> dict:
        await asyncio.sleep(0)
        sent.append(ctx.intent.payload["to"])
        return {"last.to": ctx.intent.payload["to"]}

    rt = clp.create_runtime(contract(effects))
    entry = await rt.execute("notify", {"to": "ada@example.org"})
    assert sent == ["ada@example.org"]
    assert rt.get_state("last.to") == "ada@example.org"
    assert entry.transition_result.permitted


@pytest.mark.parametrize("sync", [True, False])
async def test_failing_effect_changes_nothing(sync: bool) -> None:
    def boom(ctx: Any) -> dict:
        raise RuntimeError("smtp down")

    async def aboom(ctx: Any) -> dict:
        raise RuntimeError("smtp down")

    rt = clp.create_runtime(contract(boom if sync else aboom), initial_state={"count": 1})
    calls: list[Any] = []
    rt.subscribe("count", calls.append)
    with pytest.raises(EffectError, match="smtp down") as info:
        await rt.execute("notify", {"to": "x"})
    assert isinstance(info.value.__cause__, RuntimeError)
    assert rt.get_state() == {"count": 1}
    assert calls == []
    entry = rt.get_log()[-1]
    assert entry.phase == "commit" and "smtp down" in (entry.error or "")
    assert entry.transition_result.permitted is False
    assert rt.current_intent is not None  # the intent stays, it can be retried


async def test_timeout() -> None:
    async def slow(ctx: Any) -> dict:
        await asyncio.sleep(5)
        return {"never": True}

    rt = clp.create_runtime(contract(slow, timeout=0.05))
    with pytest.raises(EffectTimeoutError, match=r"timed out after 0\.05"):
        await rt.execute("notify", {"to": "x"})
    assert rt.get_state() == {}
    assert "timed out" in (rt.get_log()[-1].error or "")


async def test_effect_returning_non_dict_is_an_error() -> None:
    rt = clp.create_runtime(contract(lambda ctx: ["not", "a", "dict"]))
    with pytest.raises(EffectError, match="returned list"):
        await rt.execute("notify", {"to": "x"})


async def test_idempotency_key_runs_effects_once() -> None:
    runs: list[str] = []

    async def effects(ctx: Any) -> dict:
        runs.append(ctx.intent.payload["id"])
        return {"sent": clp.ops.push(ctx.intent.payload["id"])}

    rt = clp.create_runtime(contract(effects, idempotency_key=lambda ctx: ctx.intent.payload["id"]))
    first = await rt.execute("notify", {"to": "x", "id": "m-1"})
    again = await rt.execute("notify", {"to": "x", "id": "m-1"})
    other = await rt.execute("notify", {"to": "x", "id": "m-2"})
    assert runs == ["m-1", "m-2"]
    assert rt.get_state("sent") == ["m-1", "m-2"]
    assert again.replay and not first.replay and not other.replay
    assert again.state_diff == first.state_diff and again.idempotency_key == "m-1"
    assert rt.current_intent is None  # a replay clears the current intent
    assert [e.replay for e in rt.get_log() if e.phase == "commit"] == [False, True, False]


async def test_idempotency_survives_restart(tmp_path: Any) -> None:
    runs: list[str] = []

    def effects(ctx: Any) -> dict:
        runs.append(ctx.intent.payload["id"])
        return {"count": (ctx.state.get("count") or 0) + 1}

    c = contract(effects, idempotency_key=lambda ctx: ctx.intent.payload["id"])
    async with clp.create_runtime(c, storage=clp.FileSystemAdapter(tmp_path)) as rt:
        await rt.execute("notify", {"to": "x", "id": "k"})
    async with clp.create_runtime(c, storage=clp.FileSystemAdapter(tmp_path)) as rt:
        entry = await rt.execute("notify", {"to": "x", "id": "k"})
        assert entry.replay
        assert rt.get_state("count") == 1
    assert runs == ["k"]


async def test_idempotent_commits_with_nested_values_record_and_replay() -> None:
    runs: list[int] = []

    def effects(ctx: Any) -> dict:
        runs.append(1)
        return {"order": {"lines": [{"sku": "a", "qty": 2}], "meta": {"by": ctx.intent.payload["to"]}}}

    rt = clp.create_runtime(contract(effects, idempotency_key=lambda ctx: ctx.intent.payload["id"]))
    first = await rt.execute("notify", {"to": "x", "id": "k"})
    again = await rt.execute("notify", {"to": "x", "id": "k"})
    assert runs == [1] and again.replay
    assert again.state_diff == first.state_diff
    assert rt.get_state("order.lines.0.qty") == 2


async def test_a_retry_returns_the_recorded_entry_even_if_a_guard_would_now_deny() -> None:
    c = clp.create_contract(
        intents={"pay": {"inputs": {"id": "string"}}},
        guards=[{"name": "not_paid_yet", "deny": lambda ctx: ctx.state.get("paid") is True}],
        transitions={"pay": {"effects": lambda ctx: {"paid": True},
                             "idempotency_key": lambda ctx: ctx.intent.payload["id"]}},
    )
    rt = clp.create_runtime(c)
    await rt.execute("pay", {"id": "p-1"})
    retry = await rt.execute("pay", {"id": "p-1"})
    assert retry.replay
    with pytest.raises(clp.errors.GuardDeniedError):
        await rt.execute("pay", {"id": "p-2"})  # a new payment is still refused


async def test_the_audit_log_cannot_be_rewritten_by_callers() -> None:
    rt = clp.create_runtime(contract(lambda ctx: {"sent": {"to": [ctx.intent.payload["to"]]}}))
    await rt.execute("notify", {"to": "x"})
    entry = rt.get_log()[-1]
    with pytest.raises(TypeError):
        entry.intent_payload["to"] = "forged"  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        entry.state_diff[0].value["to"].append("forged")
    assert rt.get_log()[-1].intent_payload == {"to": "x"}
    assert clp.log.entry_to_dict(entry)["state_diff"][0]["value"] == {"to": ["x"]}
