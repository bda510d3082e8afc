"""Type strings (``"number?"``, ``"date"``...) compiled into pydantic-core schemas.

The checks are the ones clp-core applies without a validator:

- ``number`` is an int or a finite float, never a bool; ``integer`` an int, never a bool;
- ``date`` / ``datetime`` are date (datetime) objects or ISO 8601 strings, kept as given;
- ``array`` is a list or tuple, ``object`` any mapping, ``any`` anything;
- ``None`` fits every field (it means "not filled yet": completeness is the contract's call).

In strict mode nothing is converted. In lax mode (``"coerce": True``) the scalar types follow
pydantic's lax rules (``"5"`` -> ``5``); dates and containers are checked the same way in
both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import PydanticCustomError, SchemaValidator
from pydantic_core import core_schema as cs

from clp_core.plugin_api import FieldType, ListView

#: Containers nested deeper than this in a payload value are refused: deeper (or cyclic)
#: values would exhaust the interpreter's stack when the runtime copies them.
MAX_DEPTH = 100

TYPE_ERROR = "clp_type"  # custom error type carrying {"expected": "<type string>"}
DEPTH_ERROR = "clp_too_deep"


class TooDeep(Exception):
    """A value nests containers deeper than :data:`MAX_DEPTH` (or is cyclic)."""


def owned_copy(value: Any, depth: int = 0) -> Any:
    """A copy of a payload value the runtime can own: mappings (read-only state views
    included) become dicts, lists and list views lists, tuples tuples, scalars stay.
    Raises :class:`TooDeep` past :data:`MAX_DEPTH` levels."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise TooDeep()
        return {k: owned_copy(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, ListView)):
        if depth >= MAX_DEPTH:
            raise TooDeep()
        items = [owned_copy(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _type_error(expected: str) -> PydanticCustomError:
    return PydanticCustomError(TYPE_ERROR, "Input should be {expected}", {"expected": expected})


def _depth_error() -> PydanticCustomError:
    return PydanticCustomError(DEPTH_ERROR, "Input nests deeper than {max_depth} levels", {"max_depth": MAX_DEPTH})


def _checked(base: str, expected: str, *, copy: bool) -> Callable[[Any], Any]:
    """A plain validator function: core's check for ``base``, then (for payloads) an owned
    copy of containers."""
    accepts = FieldType(base).accepts

    def validate(value: Any) -> Any:
        if not accepts(value):
            raise _type_error(expected)
        if not copy or base in ("date", "datetime"):
            return value
        try:
            return owned_copy(value)
        except (TooDeep, RecursionError):
            raise _depth_error() from None

    return validate


_FUNCTION_TYPES = ("date", "datetime", "array", "object", "any")


def field_schema(ftype: FieldType, *, nullable: bool, copy: bool = True) -> cs.CoreSchema:
    """The schema of one field. ``copy``: containers are copied (payloads), or only
    checked (state: its check must not cost a copy)."""
    expected = str(ftype)
    if ftype.base in _FUNCTION_TYPES:
        schema: cs.CoreSchema = cs.no_info_plain_validator_function(_checked(ftype.base, expected, copy=copy))
    else:
        native: cs.CoreSchema
        if ftype.base == "string":
            native = cs.str_schema()
        elif ftype.base == "integer":
            native = cs.int_schema()
        elif ftype.base == "boolean":
            native = cs.bool_schema()
        else:  # number: an int stays an int, a float must be finite
            native = cs.union_schema([cs.int_schema(), cs.float_schema(allow_inf_nan=False)])
        schema = cs.custom_error_schema(
            native, custom_error_type=TYPE_ERROR, custom_error_message="Input should be {expected}",
            custom_error_context={"expected": expected},
        )
    return cs.nullable_schema(schema) if nullable else schema


def payload_validator(inputs: Mapping[str, FieldType], *, complete: bool) -> SchemaValidator:
    """A validator of an intent's payload: all fields optional and nullable (``complete``
    False: a dispatch before the AI fills fields, a proposal), or required fields present
    and not None (``complete`` True). Undeclared keys are refused."""
    fields = {}
    for name, ftype in inputs.items():
        required = complete and not ftype.optional
        fields[name] = cs.typed_dict_field(field_schema(ftype, nullable=not required), required=required)
    return SchemaValidator(cs.typed_dict_schema(fields, extra_behavior="forbid"))


def state_schema(schema: Mapping[str, Any]) -> cs.CoreSchema:
    """The schema of a (nested) state schema. Every key may be absent or None; undeclared
    keys are ignored, and not even visited, so the check costs the declared keys only."""
    fields = {}
    for key, spec in schema.items():
        inner = state_schema(spec) if isinstance(spec, Mapping) else field_schema(spec, nullable=False, copy=False)
        fields[key] = cs.typed_dict_field(cs.nullable_schema(inner), required=False)
    return cs.typed_dict_schema(fields, extra_behavior="ignore")


def state_validator(schema: Mapping[str, Any]) -> SchemaValidator:
    return SchemaValidator(state_schema(schema))
