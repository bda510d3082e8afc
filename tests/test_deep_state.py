"""Deep state through the runtime: dot paths, ops, path reads, path subscriptions, diffs."""

from __future__ import annotations

from typing import Any

import pytest

import clp_core as clp
from clp_core import ops
from clp_core.errors import EffectError, PathError, StateValueError


def make(effects: Any, state: dict | None = None) -> clp.Runtime:
    contract = clp.create_contract(
        intents={"change": {"inputs": {"value": "any?"}}},
        state={"user": {"profile": {"name": "string", "email": "string"}}, "items": "array"},
        transitions={"apply": {"effects": effects}},
    )
    return clp.create_runtime(contract, initial_state=state or {})


async def test_dot_paths_and_path_reads() -> None:
    rt = make(lambda ctx: {"user.profile.name": ctx.intent.payload["value"]},
              {"user": {"profile": {"email": "a@x"}}})
    entry = await rt.execute("change", {"value": "Ada"})
    assert rt.get_state("user.profile.name") == "Ada"
    assert rt.get_state("user.profile.email") == "a@x"
    assert rt.get_state("user.nothing.here") is None
    assert [(c.op, c.path, c.value) for c in entry.state_diff] == [("set", "user.profile.name", "Ada")]


async def test_nested_effects_merge_deeply_and_diff_lists_leaf_paths() -> None:
    rt = make(lambda ctx: {"user": {"profile": {"name": "Grace"}, "settings": {"dark": True}}},
              {"user": {"profile": {"name": "Ada", "email": "a@x"}}})
    entry = await rt.execute("change")
    assert rt.get_state("user") == {"profile": {"name": "Grace", "email": "a@x"}, "settings": {"dark": True}}
    assert sorted(c.path for c in entry.state_diff) == ["user.profile.name", "user.settings"]


async def test_array_ops_through_effects() -> None:
    rt = make(lambda ctx: ctx.intent.payload["value"], {"items": [{"id": 1, "done": False}]})
    await rt.execute("change", {"value": {"items": ops.push({"id": 2, "done": False}, {"id": 3, "done": True})}})
    await rt.execute("change", {"value": {"items.0.done": True}})
    await rt.execute("change", {"value": {"items": ops.filter(lambda item: not item["done"])}})
    assert rt.get_state("items") == [{"id": 2, "done": False}]
    await rt.execute("change", {"value": {"items": ops.splice(0, 1, {"id": 4, "done": False})}})
    await rt.execute("change", {"value": {"log": ops.push("created")}})
    assert rt.get_state("items") == [{"id": 4, "done": False}]
    assert rt.get_state("log") == ["created"]
    await rt.execute("change", {"value": {"log": ops.unset()}})
    assert rt.get_state("log") is None


@pytest.mark.parametrize(
    ("effect", "error"),
    [
        ({"ok": 1, "count.deeper": 1}, PathError),
        ({"ok": 1, "items.7": 1}, PathError),
        ({"ok": 1, "x.__class__": 1}, PathError),
        ({"ok": 1, "bad": object()}, StateValueError),
        ({"ok": 1, "items": ops.filter(lambda item: 1 / 0)}, EffectError),
    ],
)
async def test_bad_writes_change_nothing(effect: dict, error: type) -> None:
    rt = make(lambda ctx: effect, {"count": 1, "items": [0]})
    calls = []
    rt.subscribe("ok", calls.append)
    before = rt.get_state()
    with pytest.raises(error):
        await rt.execute("change")
    assert rt.get_state() == before
    assert calls == []
    last = rt.get_log()[-1]
    assert last.phase == "commit" and last.error and not last.transition_result.permitted


async def test_subscribers_fire_at_under_and_above_their_path() -> None:
    rt = make(lambda ctx: ctx.intent.payload["value"], {"user": {"profile": {"name": "A"}}, "count": 0})
    seen: dict[str, list[Any]] = {"user.profile": [], "user.profile.name.first": [], "user": [], "count": []}
    for path in seen:
        rt.subscribe(path, lambda state, path=path: seen[path].append(state))
    await rt.execute("change", {"value": {"user.profile.name": "B"}})
    counts = {p: len(v) for p, v in seen.items()}
    assert counts == {"user.profile": 1, "user.profile.name.first": 1, "user": 1, "count": 0}
    # subscribers receive the whole new state
    assert seen["user"][0]["user"]["profile"]["name"] == "B" and seen["user"][0]["count"] == 0
    await rt.execute("change", {"value": {"user": ops.unset()}})  # replacing an ancestor counts
    assert len(seen["user.profile.name.first"]) == 2
    assert len(seen["count"]) == 0


async def test_unsubscribe_and_async_subscriber() -> None:
    rt = make(lambda ctx: {"count": 1})
    calls: list[int] = []

    async def subscriber(state: Any) -> None:
        calls.append(state["count"])

    unsubscribe = rt.subscribe("count", subscriber)
    await rt.execute("change")
    unsubscribe()
    await rt.execute("change")
    assert calls == [1]


async def test_subscriber_may_call_the_runtime_without_deadlock() -> None:
    rt = make(lambda ctx: {"count": (ctx.state.get("count") or 0) + 1})

    async def again(state: Any) -> None:
        if state["count"] < 3:
            await rt.execute("change")

    rt.subscribe("count", again)
    await rt.execute("change")
    assert rt.get_state("count") == 3


async def test_callers_cannot_mutate_committed_state() -> None:
    rt = make(lambda ctx: {"user": ctx.intent.payload["value"]})
    value = {"profile": {"name": "A"}, "tags": ["x"]}
    await rt.execute("change", {"value": value})
    value["tags"].append("mutated input")
    got = rt.get_state("user")
    got["tags"].append("mutated output")
    seen = []
    rt.subscribe("user", seen.append)
    await rt.execute("change", {"value": {"profile": {"name": "B"}}})
    with pytest.raises(TypeError):
        seen[0]["user"]["profile"]["name"] = "hacked"
    assert rt.get_state("user.tags") == ["x"]


async def test_effects_see_read_only_state() -> None:
    def effects(ctx: Any) -> dict:
        ctx.state["user"]["profile"]["name"] = "sneaky"
        return {}

    rt = make(effects, {"user": {"profile": {"name": "A"}}})
    with pytest.raises(EffectError):
        await rt.execute("change")
    assert rt.get_state("user.profile.name") == "A"
