"""What users read is plain data: records print as dicts and ``json.dumps`` them, stay
read-only, and ``to_dict()`` gives the whole record; ``ctx.state.get`` follows dot paths."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
from typing import Any

import pytest

import clp_core as clp
from clp_core import errors
from clp_core.log import FrozenDict, FrozenList, Proposed, freeze


def _contract(seen: list[Any]) -> clp.Contract:
    def deny(ctx: Any) -> bool:
        seen.append((ctx.state.get("flights.CL1.seats"), ctx.state.get("flights.CL9.seats", "none"),
                     ctx.state.get("flights"), ctx.state.get("tags.1")))
        return (ctx.intent.payload.get("passengers") or 0) > 4

    return clp.create_contract(
        intents={"book": {"inputs": {"flight": "string", "passengers": "integer?", "extras": "object?",
                                     "when": "date?"}}},
        guards=[{"name": "too_many", "deny": deny, "suggest": lambda ctx: {"passengers": 4}}],
        transitions={"book": {"effects": lambda ctx: {
            clp.path("flights", ctx.intent.payload["flight"], "seats"): 1, "tags": clp.ops.push("x")}}},
    )


async def _log(seen: list[Any]) -> clp.Runtime:
    runtime = clp.create_runtime(
        _contract(seen), lambda intent: {"passengers": 2},
        initial_state={"flights": {"CL1": {"seats": 3}}, "tags": ["a", "b"]})
    await runtime.dispatch("book", {"flight": "CL1", "extras": {"meal": ["veg", {"n": 1}]},
                                    "when": dt.date(2026, 6, 1)})
    await runtime.propose("book")
    await runtime.reject_proposal("book")
    await runtime.dispatch("book", {"flight": "CL1", "passengers": 9, "extras": {"meal": ["veg"]}})
    with pytest.raises(errors.GuardDeniedError):
        await runtime.commit()
    await runtime.accept_proposal("book")
    await runtime.commit()
    return runtime


async def test_every_record_is_json_and_prints_as_plain_data() -> None:
    runtime = await _log([])
    entries = runtime.get_log()
    assert {e.phase for e in entries} >= {"dispatch", "propose", "reject", "accept", "commit"}
    for entry in entries:
        data = entry.to_dict()
        assert json.loads(json.dumps(data)) == data
        for name in ("intent_payload", "staged_proposal", "accepted_proposal", "detail", "proposal_meta"):
            value = getattr(entry, name)
            if value is not None:
                if name != "intent_payload" or "when" not in value:
                    json.dumps(value)
                assert repr(value) == repr(dict(value))  # no StateView(...) wrapper
        json.dumps(list(entry.validation_errors))
    first = entries[0]
    assert first.to_dict()["intent_payload"]["when"] == "2026-06-01"  # dates as ISO strings
    assert "StateView" not in repr(first)
    commit = entries[-1]
    assert commit.to_dict()["state_diff"][0] == {"op": "set", "path": "flights.CL1.seats", "value": 1,
                                                 "start": None, "delete_count": None}
    assert commit.to_dict()["guard_outcomes"] == [{"name": "too_many", "denied": False}]
    intent = clp.Intent("book", {"flight": "CL1", "extras": {"meal": ["veg"]}}, id="order-1")
    assert json.dumps(intent.payload) == '{"flight": "CL1", "extras": {"meal": ["veg"]}}'
    assert intent.to_dict() == {"name": "book", "payload": {"flight": "CL1", "extras": {"meal": ["veg"]}},
                                "complete": False, "source": "user", "id": "order-1"}
    proposal = clp.Proposal({"passengers": 2})
    assert json.dumps(proposal.values) == '{"passengers": 2}'
    assert proposal.to_dict() == {"values": {"passengers": 2}, "source": "ai"}


async def test_records_stay_read_only() -> None:
    runtime = await _log([])
    payload = runtime.get_log()[0].intent_payload
    assert isinstance(payload, FrozenDict)
    assert isinstance(payload["extras"], FrozenDict) and isinstance(payload["extras"]["meal"], FrozenList)
    with pytest.raises(TypeError):
        payload["flight"] = "X"  # type: ignore[index]
    for mutate in (lambda d: d.update(a=1), lambda d: d.pop("flight"), lambda d: d.clear(),
                   lambda d: d.setdefault("a", 1), lambda d: d.popitem(), lambda d: d.__delitem__("flight")):
        with pytest.raises(TypeError):
            mutate(payload)
    meal = payload["extras"]["meal"]
    for mutate in (lambda x: x.append(1), lambda x: x.extend([1]), lambda x: x.__setitem__(0, 1),
                   lambda x: x.sort(), lambda x: x.pop(), lambda x: x.__iadd__([1])):
        with pytest.raises(TypeError):
            mutate(meal)
    assert payload["extras"]["meal"] == ["veg", {"n": 1}]
    plain = dict(payload)
    plain["flight"] = "X"  # a copy is the caller's
    assert payload["flight"] == "CL1"


def test_frozen_values_copy_and_pickle() -> None:
    value = freeze({"a": [1, {"b": (2, 3)}]})
    assert value == {"a": [1, {"b": [2, 3]}]}
    assert copy.deepcopy(value) is value and copy.copy(value) is value
    again = pickle.loads(pickle.dumps(value))
    assert again == value and isinstance(again, FrozenDict) and isinstance(again["a"], FrozenList)
    with pytest.raises(TypeError):
        hash(FrozenList([1]))


def test_records_do_not_share_the_callers_dict() -> None:
    source = {"flight": "CL1"}
    intent = clp.Intent("book", source)
    source["flight"] = "changed"
    assert intent.payload["flight"] == "CL1"


def test_proposed_and_proposal_meta() -> None:
    proposed = Proposed({"a": 1}, {"model": "m", "usage": {"input": 3}})
    assert json.dumps(proposed.meta) == '{"model": "m", "usage": {"input": 3}}'
    entry = clp.LogEntry("x", {}, "propose", proposal_meta=proposed.meta)
    assert entry.to_dict()["proposal_meta"] == {"model": "m", "usage": {"input": 3}}
    assert clp.LogEntry("x", {}, "dispatch").proposal_meta is None
    assert proposed == {"a": 1} and json.dumps(proposed) == '{"a": 1}'  # today's runtimes take it as a dict
    with pytest.raises(AttributeError):
        proposed.meta = {}  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(proposed))
    assert again == proposed and again.meta == proposed.meta


def _plain(value: Any) -> Any:
    if isinstance(value, clp.StateView):
        return value.to_dict()
    if isinstance(value, clp.ListView):
        return value.to_list()
    return value


async def test_state_get_follows_dot_paths_like_get_state() -> None:
    seen: list[Any] = []
    runtime = await _log(seen)
    assert seen[0][:2] == (3, "none") and seen[0][3] == "b"
    state = clp.StateView(runtime.get_state())
    for path in ("flights.CL1.seats", "flights.CL1", "flights", "tags.0", "tags.1", "tags.7", "tags.x",
                 "flights.CL9.seats", "flights.CL1.seats.deeper", "nope"):
        assert _plain(state.get(path)) == runtime.get_state(path), path
    for bad in ("flights..CL1", "flights.__class__", "a."):
        with pytest.raises(errors.PathError):
            runtime.get_state(bad)
        with pytest.raises(errors.PathError):
            state.get(bad)


def test_state_get_keys_defaults_and_literal_dotted_keys() -> None:
    view = clp.StateView({"a": {"b": [10, {"c": 2}]}, "x.y": 1, "n": None})
    assert view.get("a.b.1.c") == 2
    assert view.get("a.b.5", "dflt") == "dflt"
    assert view.get("missing", 0) == 0
    assert view.get("n", 0) is None  # a stored None is a value, as dict.get
    assert view.get("x.y") == 1  # an existing literal key wins (payloads may have one)
    assert view["a"]["b"][0] == 10
    with pytest.raises(KeyError):
        view["a.b"]  # item access is by one key
