"""A small JSON Schema check for model output: the subset CLP's intent schemas use.

Intent schemas come from type strings (``clp_core.validation.intent_json_schema``) or from
pydantic models (clp-pydantic). This checks ``type``, ``enum``, ``const``, ``anyOf``/
``oneOf``/``allOf``, local ``$ref``, ``format`` (date, date-time), string lengths, number
bounds, ``items`` and object ``properties``/``required``/``additionalProperties``. Unknown
keywords are ignored: the runtime validates the values again before staging them.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    while isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
        ref = schema.get("$ref")
    return schema


def problems(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None,
             where: str = "") -> list[str]:
    """Why ``value`` does not fit ``schema`` (empty: it fits). Messages name the field,
    never quote the value."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    at = where or "the answer"
    found: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES.get(t, lambda v: True)(value) for t in names):
            return [f"{at}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: must be {schema['const']!r}")
    for key in ("anyOf", "oneOf"):
        if key in schema and all(problems(value, s, root, where) for s in schema[key]):
            found.append(f"{at}: fits none of the allowed shapes")
    for sub in schema.get("allOf", ()):
        found.extend(problems(value, sub, root, where))
    if isinstance(value, str):
        fmt = schema.get("format")
        parse = {"date": _dt.date.fromisoformat, "date-time": _dt.datetime.fromisoformat}.get(fmt or "")
        if parse is not None:
            try:
                parse(value)
            except ValueError:
                found.append(f"{at}: not an ISO 8601 {fmt}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            found.append(f"{at}: length out of bounds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            found.append(f"{at}: out of bounds")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            found.extend(problems(item, schema["items"], root, f"{where}[{i}]" if where else f"[{i}]"))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{(where + '.') if where else ''}{name}: missing")
        for name, item in value.items():
            child = f"{where}.{name}" if where else str(name)
            if name in props:
                found.extend(problems(item, props[name], root, child))
            elif schema.get("additionalProperties") is False:
                found.append(f"{child}: not a field of this intent")
    return found
