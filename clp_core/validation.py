"""Run-time validation: the validator protocol plugins implement, and JSON Schema from type strings.

Without ``validation=``, the runtime checks values against the contract's type strings (no
coercion); ``validation={"validator": "types"}`` names the same checks as a validator (this
module is the built-in ``clp-types`` plugin, registered on every plugin manager). With
``validation={...}``, a validator contributed by a plugin through the ``register_validators``
hook does every check instead, strict (raise) or lenient (record on
the log entry and in ``on_error``, then go on as CLP 0.1 would).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from .contract import CompiledIntent, Contract
from .errors import ConfigError
from .hookspecs import hookimpl

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "array": {"type": "array"},
    "object": {"type": "object"},
    "any": {},
}


@runtime_checkable
class Validator(Protocol):
    """What a validator plugin builds for one runtime (``factory(contract, options)``)."""

    def validate_payload(self, intent: str, values: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        """Return the validated values (coerced where the validator allows it), or raise
        :class:`clp_core.errors.ValidationError`. With ``complete`` False, required
        fields may be missing (a dispatch before the AI fills them, a proposal)."""

    def validate_state(self, state: Mapping[str, Any]) -> None:
        """Raise :class:`clp_core.errors.ValidationError` if ``state`` breaks the state model."""

    @property
    def checks_state(self) -> bool:
        """Whether :meth:`validate_state` checks anything (it costs a walk of the state)."""

    def intent_schema(self, intent: str) -> dict[str, Any]:
        """JSON Schema of an intent's payload."""


def intent_json_schema(intent: CompiledIntent) -> dict[str, Any]:
    """JSON Schema of an intent's inputs, from its type strings."""
    properties = {}
    for field, ftype in intent.inputs.items():
        schema = dict(_JSON_TYPES[ftype.base])
        if ftype.optional and schema:
            schema = {"anyOf": [schema, {"type": "null"}]}
        properties[field] = schema
    return {
        "title": intent.name,
        "type": "object",
        "properties": properties,
        "required": list(intent.required),
        "additionalProperties": False,
    }


class TypeStringValidator:
    """The contract's own type strings as a validator: no coercion, no state model."""

    checks_state = False

    def __init__(self, contract: Contract, options: Mapping[str, Any] | None = None) -> None:
        self.contract = contract

    def validate_payload(self, intent: str, values: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        compiled = self.contract.intents[intent]
        self.contract.check_values(compiled, values, where=f"payload of {intent}")
        return dict(values)

    def validate_state(self, state: Mapping[str, Any]) -> None:
        return None

    def intent_schema(self, intent: str) -> dict[str, Any]:
        return intent_json_schema(self.contract.intents[intent])


@hookimpl
def register_validators() -> dict[str, Any]:
    return {"types": TypeStringValidator}


def build_validator(contract: Contract, options: Mapping[str, Any]) -> Validator:
    """The validator named by ``options["validator"]`` (default ``"pydantic"``), or the
    validator object given there."""
    from .plugins import registered

    known = {"strict", "schema", "state", "coerce", "validator"}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"validation: unknown options {sorted(unknown)} (expected {sorted(known)})")
    name = options.get("validator", "pydantic")
    if not isinstance(name, str):
        if not isinstance(name, Validator):
            raise ConfigError("validation['validator'] must be a name or a clp_core.validation.Validator")
        return name
    factory = registered("register_validators").get(name)
    if factory is None:
        hint = "pip install 'clp-core[pydantic]' (the clp-pydantic plugin)" if name == "pydantic" else (
            f"no installed plugin registers a validator named {name!r}")
        raise ConfigError(f"validation= needs the {name!r} validator: {hint}")
    validator = factory(contract, dict(options))
    if not isinstance(validator, Validator):
        raise ConfigError(f"validator {name!r} does not implement clp_core.validation.Validator")
    return validator
