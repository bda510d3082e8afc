"""Contracts are checked when created: dicts or attrs classes, errors naming the bad field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

import clp_core as clp
from clp_core import errors

TYPES = ["string", "number", "integer", "boolean", "date", "datetime", "array", "object", "any"]


def _deny(ctx: Any) -> bool:
    return (ctx.intent.payload.get("amount") or 0) < 0


def _suggest(ctx: Any) -> dict[str, Any]:
    return {"amount": 0}


def _when(ctx: Any) -> bool:
    return bool(ctx.intent.complete)


def _effects(ctx: Any) -> dict[str, Any]:
    return {"count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}


STATE = {"count": "number", "user": {"profile": {"name": "string"}}}


def _as_dicts() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state=STATE,
        guards=[{"name": "no_negative", "deny": _deny, "suggest": _suggest}],
        transitions={"apply": {"when": _when, "effects": _effects}},
    )


def _as_attrs() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": clp.IntentDef(inputs={"amount": "number?"})},
        state=STATE,
        guards=[clp.Guard(name="no_negative", deny=_deny, suggest=_suggest)],
        transitions={"apply": clp.Transition(when=_when, effects=_effects)},
    )


def _mixed() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": clp.IntentDef(inputs={"amount": "number?"})},
        state=STATE,
        guards=({"name": "no_negative", "deny": _deny, "suggest": _suggest},),
        transitions={"apply": clp.Transition(effects=_effects, when=_when)},
    )


def _one_dict() -> clp.Contract:  # the 0.1 style: the whole contract as one mapping
    return clp.create_contract({
        "intents": {"increment": {"inputs": {"amount": "number?"}}},
        "state": STATE,
        "guards": [{"name": "no_negative", "deny": _deny, "suggest": _suggest}],
        "transitions": {"apply": {"when": _when, "effects": _effects}},
    })


@pytest.mark.parametrize(
    "build", [_as_dicts, _as_attrs, _mixed, _one_dict], ids=["dicts", "attrs", "mixed", "one-dict"]
)
async def test_dicts_and_attrs_classes_give_the_same_contract(build: Callable[[], clp.Contract]) -> None:
    contract = build()
    assert isinstance(contract, clp.Contract)
    [guard] = contract.guards
    assert isinstance(guard, clp.Guard)
    assert (guard.name, guard.deny, guard.suggest) == ("no_negative", _deny, _suggest)
    transition = contract.transitions["apply"]
    assert isinstance(transition, clp.Transition)
    assert (transition.name, transition.when, transition.effects) == ("apply", _when, _effects)
    assert contract.intents["increment"].required == ()

    runtime = clp.create_runtime(contract)
    entry = await runtime.execute("increment", {"amount": 5})
    assert entry.transition_result == clp.TransitionResult("apply", True)
    await runtime.execute("increment")
    assert runtime.get_state("count") == 6
    with pytest.raises(errors.GuardDeniedError) as info:
        await runtime.execute("increment", {"amount": -1})
    assert info.value.suggestion == {"amount": 0}
    assert runtime.get_state("count") == 6


def test_empty_contract_and_defaults() -> None:
    contract = clp.create_contract()
    assert dict(contract.intents) == {}
    assert contract.guards == ()
    assert dict(contract.transitions) == {}
    intent = clp.create_contract(intents={"ping": clp.IntentDef()}).intents["ping"]
    assert dict(intent.inputs) == {}
    assert intent.required == ()


async def test_a_transition_without_when_always_holds() -> None:
    contract = clp.create_contract(
        intents={"ping": {"inputs": {}}},
        transitions={"pong": {"effects": lambda ctx: {"pongs": (ctx.state.get("pongs") or 0) + 1}}},
    )
    assert contract.transitions["pong"].when is None
    runtime = clp.create_runtime(contract)
    await runtime.execute("ping")
    assert runtime.get_state("pongs") == 1


def test_a_checked_contract_does_not_follow_later_changes_to_its_source() -> None:
    inputs = {"amount": "number?"}
    intents: dict[str, Any] = {"increment": {"inputs": inputs}}
    guards = [{"name": "g", "deny": _deny}]
    transitions: dict[str, Any] = {"apply": {"effects": _effects}}
    contract = clp.create_contract(intents=intents, guards=guards, transitions=transitions)
    inputs["secret"] = "string"
    intents["other"] = {"inputs": {}}
    guards.append({"name": "h", "deny": _deny})
    transitions["other"] = {"effects": _effects}
    assert set(contract.intents) == {"increment"}
    assert set(contract.intents["increment"].inputs) == {"amount"}
    assert [g.name for g in contract.guards] == ["g"]
    assert set(contract.transitions) == {"apply"}
    with pytest.raises(TypeError):
        contract.intents["other"] = contract.intents["increment"]  # type: ignore[index]


def test_contract_classes_are_frozen() -> None:
    guard = clp.Guard(name="g", deny=_deny)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        guard.name = "h"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        clp.Transition(effects=_effects).effects = _deny  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        clp.IntentDef().inputs = {}  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _as_dicts().guards = ()  # type: ignore[misc]


def test_create_runtime_needs_a_checked_contract() -> None:
    with pytest.raises(errors.ConfigError):
        clp.create_runtime({"intents": {}})  # type: ignore[arg-type]


# -- malformed contracts ----------------------------------------------------------------

_G = {"name": "g", "deny": _deny}
_T = {"effects": _effects}

BAD: list[tuple[str, dict[str, Any], str]] = [
    # intents
    ("intents-list", {"intents": [{"inputs": {}}]}, "intents"),
    ("intents-string", {"intents": "increment"}, "intents"),
    ("intent-not-a-dict", {"intents": {"a": 5}}, "intents['a']"),
    ("intent-list", {"intents": {"a": ["x"]}}, "intents['a']"),
    ("intent-unknown-key", {"intents": {"a": {"input": {"x": "string"}}}}, "intents['a']"),
    ("intent-empty-name", {"intents": {"": {"inputs": {}}}}, "intents['']"),
    ("inputs-not-a-mapping", {"intents": {"a": {"inputs": ["x"]}}}, "intents['a'].inputs"),
    ("inputs-attrs-not-a-mapping", {"intents": {"a": clp.IntentDef(inputs="x")}}, "intents['a'].inputs"),
    ("unknown-type", {"intents": {"a": {"inputs": {"x": "numbr"}}}}, "intents['a'].inputs['x']"),
    ("type-wrong-case", {"intents": {"a": {"inputs": {"x": "Number"}}}}, "intents['a'].inputs['x']"),
    ("type-double-optional", {"intents": {"a": {"inputs": {"x": "number??"}}}}, "intents['a'].inputs['x']"),
    ("type-empty", {"intents": {"a": {"inputs": {"x": ""}}}}, "intents['a'].inputs['x']"),
    ("type-only-question-mark", {"intents": {"a": {"inputs": {"x": "?"}}}}, "intents['a'].inputs['x']"),
    ("type-ts-array", {"intents": {"a": {"inputs": {"x": "string[]"}}}}, "intents['a'].inputs['x']"),
    ("type-not-a-string", {"intents": {"a": {"inputs": {"x": int}}}}, "intents['a'].inputs['x']"),
    ("type-none", {"intents": {"a": {"inputs": {"x": None}}}}, "intents['a'].inputs['x']"),
    ("unknown-type-attrs", {"intents": {"a": clp.IntentDef(inputs={"y": "float"})}}, "intents['a'].inputs['y']"),
    ("input-empty-name", {"intents": {"a": {"inputs": {"": "string"}}}}, "intents['a'].inputs['']"),
    ("input-dunder-name", {"intents": {"a": {"inputs": {"__class__": "string"}}}}, "intents['a'].inputs['__class__']"),
    # guards
    ("guards-mapping", {"guards": {"name": "g", "deny": _deny}}, "guards"),
    ("guards-string", {"guards": "g"}, "guards"),
    ("guards-number", {"guards": 3}, "guards"),
    ("guard-not-a-dict", {"guards": [_deny]}, "guards[0]"),
    ("guard-unknown-key", {"guards": [{"name": "g", "deny": _deny, "allow": _deny}]}, "guards[0]"),
    ("guard-missing-name", {"guards": [{"deny": _deny}]}, "guards[0].name"),
    ("guard-empty-name", {"guards": [{"name": "", "deny": _deny}]}, "guards[0].name"),
    ("guard-name-not-str", {"guards": [{"name": 7, "deny": _deny}]}, "guards[0].name"),
    ("guard-missing-deny", {"guards": [{"name": "g"}]}, "guards[0].deny"),
    ("deny-not-callable", {"guards": [{"name": "g", "deny": True}]}, "guards[0].deny"),
    ("deny-not-callable-second", {"guards": [_G, {"name": "h", "deny": "no"}]}, "guards[1].deny"),
    ("deny-not-callable-attrs", {"guards": [clp.Guard(name="g", deny=None)]}, "guards[0].deny"),  # type: ignore[arg-type]
    ("suggest-not-callable", {"guards": [{"name": "g", "deny": _deny, "suggest": {"amount": 0}}]}, "guards[0].suggest"),
    ("suggest-not-callable-attrs", {"guards": [_G, clp.Guard("h", _deny, "x")]}, "guards[1].suggest"),  # type: ignore[arg-type]
    ("duplicate-guard", {"guards": [_G, {"name": "g", "deny": _deny}]}, "guards[1].name"),
    ("duplicate-guard-attrs", {"guards": [_G, {"name": "h", "deny": _deny}, clp.Guard("g", _deny)]}, "guards[2].name"),
    # transitions
    ("transitions-list", {"transitions": [_T]}, "transitions"),
    ("transitions-string", {"transitions": "apply"}, "transitions"),
    ("transition-not-a-dict", {"transitions": {"apply": _effects}}, "transitions['apply']"),
    ("transition-unknown-key", {"transitions": {"apply": {"effects": _effects, "then": _when}}},
     "transitions['apply']"),
    ("transition-empty-name", {"transitions": {"": _T}}, "transitions['']"),
    ("no-effects", {"transitions": {"apply": {"when": _when}}}, "transitions['apply'].effects"),
    ("effects-none", {"transitions": {"apply": {"when": _when, "effects": None}}}, "transitions['apply'].effects"),
    ("effects-dict", {"transitions": {"apply": {"effects": {"count": 1}}}}, "transitions['apply'].effects"),
    ("effects-none-attrs", {"transitions": {"apply": clp.Transition(effects=None)}}, "transitions['apply'].effects"),  # type: ignore[arg-type]
    ("when-not-callable", {"transitions": {"apply": {"when": True, "effects": _effects}}}, "transitions['apply'].when"),
    ("when-string-attrs", {"transitions": {"ok": _T, "apply": clp.Transition(effects=_effects, when="yes")}},  # type: ignore[arg-type]
     "transitions['apply'].when"),
    ("idempotency-key-not-callable", {"transitions": {"apply": {"effects": _effects, "idempotency_key": "k"}}},
     "transitions['apply'].idempotency_key"),
    # state schema
    ("state-list", {"state": ["count"]}, "state"),
    ("state-unknown-type", {"state": {"count": "numbr"}}, "state['count']"),
    ("state-nested-unknown-type", {"state": {"user": {"profile": {"name": "text"}}}},
     "state['user']['profile']['name']"),
    ("state-not-a-type", {"state": {"count": 1}}, "state['count']"),
    ("state-dotted-key", {"state": {"user.name": "string"}}, "state['user.name']"),
    ("state-dunder-key", {"state": {"user": {"__proto__": "object"}}}, "state['user']['__proto__']"),
]


@pytest.mark.parametrize(("kwargs", "field"), [(k, f) for _, k, f in BAD], ids=[i for i, _, _ in BAD])
def test_malformed_contracts_raise_contract_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, errors.ClpError)
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.problem


@pytest.mark.parametrize("timeout", [0, -1, -0.5, "5", True, [1], float("nan")])
def test_a_bad_timeout_is_a_contract_error(timeout: Any) -> None:
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(transitions={"apply": {"effects": _effects, "timeout": timeout}})
    assert info.value.field == "transitions['apply'].timeout"
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(transitions={"apply": clp.Transition(effects=_effects, timeout=timeout)})
    assert info.value.field == "transitions['apply'].timeout"


@pytest.mark.parametrize("timeout", [None, 0.01, 1, 30.5])
def test_a_positive_timeout_is_accepted(timeout: Any) -> None:
    contract = clp.create_contract(transitions={"apply": {"effects": _effects, "timeout": timeout}})
    assert contract.transitions["apply"].timeout == timeout


def test_a_one_dict_contract_with_an_unknown_key_names_the_contract() -> None:
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract({"intents": {}, "transition": {}})
    assert info.value.field == "contract"
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(["intents"])  # type: ignore[arg-type]
    assert info.value.field == "contract"


def test_the_first_bad_field_is_reported() -> None:
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(
            intents={"a": {"inputs": {"ok": "string", "bad": "nope", "worse": "nah"}}},
        )
    assert info.value.field == "intents['a'].inputs['bad']"


# -- type strings -------------------------------------------------------------------------


@pytest.mark.parametrize("optional", [False, True], ids=["required", "optional"])
@pytest.mark.parametrize("base", TYPES)
async def test_every_type_string_is_accepted_with_or_without_question_mark(base: str, optional: bool) -> None:
    text = base + ("?" if optional else "")
    contract = clp.create_contract(
        intents={"i": {"inputs": {"x": text}}},
        state={"x": text},
        transitions={"t": {"effects": lambda ctx: {}}},
    )
    compiled = contract.intents["i"]
    assert str(compiled.inputs["x"]) == text
    assert compiled.required == (() if optional else ("x",))
    runtime = clp.create_runtime(contract)
    intent = await runtime.dispatch("i", {})
    assert intent.complete is optional
    intent = await runtime.dispatch("i", {"x": None})
    assert intent.complete is optional


def test_required_inputs_keep_declaration_order() -> None:
    inputs = {f"f_{t}": t + ("?" if i % 2 else "") for i, t in enumerate(TYPES)}
    contract = clp.create_contract(intents={"all": {"inputs": inputs}})
    compiled = contract.intents["all"]
    assert list(compiled.inputs) == list(inputs)
    assert compiled.required == tuple(f"f_{t}" for i, t in enumerate(TYPES) if i % 2 == 0)


def test_nested_state_schema_is_checked_and_kept() -> None:
    contract = clp.create_contract(
        state={
            "count": "number",
            "user": {"profile": {"name": "string", "born": "date?"}, "tags": "array?"},
            "settings": {},
        },
    )
    assert str(contract.state["count"]) == "number"
    assert str(contract.state["user"]["profile"]["name"]) == "string"
    assert str(contract.state["user"]["profile"]["born"]) == "date?"
    assert str(contract.state["user"]["tags"]) == "array?"
    assert dict(contract.state["settings"]) == {}
    assert set(contract.state) == {"count", "user", "settings"}
