"""Compiling a contract: every declaration checked, then frozen into a :class:`Contract`.

:func:`create_contract` takes the dict form (or keyword arguments); the decorator builder
collects its declarations and compiles them through the same function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import ContractError
from ..types import FieldType
from .model import CompiledIntent, Contract, Guard, IntentDef, Transition
from .scope import _check_on


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _compile_intent(name: object, spec: object) -> CompiledIntent:
    where = f"intents[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ContractError(where, "intent name must be a non-empty string")
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"inputs", "description", "model"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        try:
            spec = IntentDef(**spec)
        except TypeError as exc:
            raise ContractError(where, str(exc)) from None
    if not isinstance(spec, IntentDef):
        raise ContractError(where, f"must be a dict or IntentDef, got {type(spec).__name__}")
    if not isinstance(spec.inputs, Mapping):
        raise ContractError(f"{where}.inputs", "must be a mapping of field name to type string")
    if spec.model is not None and not isinstance(spec.model, type):
        raise ContractError(f"{where}.model", f"must be a model class, got {type(spec.model).__name__}")
    inputs: dict[str, FieldType] = {}
    for field, text in spec.inputs.items():
        fwhere = f"{where}.inputs[{field!r}]"
        if not isinstance(field, str) or not field or _is_dunder(field):
            raise ContractError(fwhere, "field name must be a non-empty string, not a dunder name")
        inputs[field] = FieldType.parse(text, field=fwhere)
    required = tuple(f for f, t in inputs.items() if not t.optional)
    return CompiledIntent(name, MappingProxyType(inputs), required, spec)


def _check_state_schema(schema: object, where: str) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        raise ContractError(where, f"must be a mapping, got {type(schema).__name__}")
    checked: dict[str, Any] = {}
    for key, value in schema.items():
        kwhere = f"{where}[{key!r}]"
        if not isinstance(key, str) or not key or "." in key or _is_dunder(key):
            raise ContractError(kwhere, "state keys must be non-empty strings without '.', not dunder names")
        if isinstance(value, Mapping):
            checked[key] = _check_state_schema(value, kwhere)
        else:
            checked[key] = FieldType.parse(value, field=kwhere)
    return MappingProxyType(checked)


def _compile_guard(index: int, spec: object, seen: set[str], intents: Mapping[str, Any]) -> Guard:
    where = f"guards[{index}]"
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "deny", "suggest", "on"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        if "name" not in spec:
            raise ContractError(f"{where}.name", "is required")
        if "deny" not in spec:
            raise ContractError(f"{where}.deny", "is required")
        spec = Guard(**spec)
    if not isinstance(spec, Guard):
        raise ContractError(where, f"must be a dict or Guard, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name:
        raise ContractError(f"{where}.name", "must be a non-empty string")
    if spec.name in seen:
        raise ContractError(f"{where}.name", f"duplicate guard name {spec.name!r}")
    if not callable(spec.deny):
        raise ContractError(f"{where}.deny", "must be callable")
    if spec.suggest is not None and not callable(spec.suggest):
        raise ContractError(f"{where}.suggest", "must be callable")
    _check_on(spec.on, f"{where}.on", intents)
    seen.add(spec.name)
    return spec


def _compile_transition(name: object, spec: object, intents: Mapping[str, Any]) -> Transition:
    where = f"transitions[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ContractError(where, "transition name must be a non-empty string")
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"when", "effects", "timeout", "idempotency_key", "on", "emit"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        if "effects" not in spec:
            raise ContractError(f"{where}.effects", "is required")
        spec = Transition(**spec)
    if not isinstance(spec, Transition):
        raise ContractError(where, f"must be a dict or Transition, got {type(spec).__name__}")
    if spec.effects is None or not callable(spec.effects):
        raise ContractError(f"{where}.effects", "must be callable")
    if spec.when is not None and not callable(spec.when):
        raise ContractError(f"{where}.when", "must be callable")
    if spec.idempotency_key is not None and not callable(spec.idempotency_key):
        raise ContractError(f"{where}.idempotency_key", "must be callable")
    if spec.emit is not None and not callable(spec.emit):
        raise ContractError(f"{where}.emit", "must be callable")
    if spec.timeout is not None:
        number = isinstance(spec.timeout, (int, float)) and not isinstance(spec.timeout, bool)
        if not number or not math.isfinite(spec.timeout) or spec.timeout <= 0:
            raise ContractError(f"{where}.timeout", "must be a positive number of seconds")
    _check_on(spec.on, f"{where}.on", intents)
    return attrs.evolve(spec, name=name)


def create_contract(
    spec: Mapping[str, Any] | None = None,
    *,
    intents: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    guards: Any = None,
    transitions: Mapping[str, Any] | None = None,
) -> Contract:
    """Check and freeze a contract, given as keyword arguments or as one dict (0.1 style).

    Raises :class:`ContractError` naming the offending field.
    """
    if spec is not None:
        if not isinstance(spec, Mapping):
            raise ContractError("contract", f"must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"intents", "state", "guards", "transitions"}
        if unknown:
            raise ContractError("contract", f"unknown keys {sorted(unknown)}")
        intents = spec.get("intents", intents)
        state = spec.get("state", state)
        guards = spec.get("guards", guards)
        transitions = spec.get("transitions", transitions)
    intents = {} if intents is None else intents
    transitions = {} if transitions is None else transitions
    guards = [] if guards is None else guards
    if not isinstance(intents, Mapping):
        raise ContractError("intents", "must be a mapping of intent name to definition")
    if not isinstance(transitions, Mapping):
        raise ContractError("transitions", "must be a mapping of transition name to definition")
    if isinstance(guards, (str, bytes, Mapping)) or not hasattr(guards, "__iter__"):
        raise ContractError("guards", "must be a list of guards")
    seen: set[str] = set()
    compiled_intents = MappingProxyType({n: _compile_intent(n, s) for n, s in intents.items()})
    return Contract(
        intents=compiled_intents,
        state=_check_state_schema({} if state is None else state, "state"),
        guards=tuple(_compile_guard(i, g, seen, compiled_intents) for i, g in enumerate(guards)),
        transitions=MappingProxyType(
            {n: _compile_transition(n, s, compiled_intents) for n, s in transitions.items()}),
    )
