"""An intent's inputs from a Python class: type strings from annotations (pydantic models,
``TypedDict`` and annotated classes), for ``@contract.intent`` on a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _base_type(annotation: Any) -> tuple[str, bool]:
    """The type string base of a Python annotation, and whether it admits ``None``."""
    import datetime as _dt
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return "any", True
    if origin is typing.Annotated:
        return _base_type(args[0])
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        base = _base_type(rest[0])[0] if len(rest) == 1 else "any"
        return base, len(rest) != len(args)
    if origin is typing.Literal:
        kinds = {type(a) for a in args if a is not None}
        names = {str: "string", bool: "boolean", int: "integer"}
        if len(kinds) == 1 and next(iter(kinds)) in names:
            base = names[next(iter(kinds))]
        elif kinds <= {int, float}:
            base = "number"
        else:
            base = "any"
        return base, None in args
    target = origin if origin is not None else annotation
    if not isinstance(target, type):
        return "any", False
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number"),
                       (_dt.datetime, "datetime"), (_dt.date, "date"), (list, "array"), (tuple, "array"),
                       (set, "array"), (frozenset, "array"), (dict, "object")):
        if issubclass(target, kind):
            return name, False
    import collections.abc as cabc

    if issubclass(target, cabc.Mapping) or typing.is_typeddict(target) or hasattr(target, "model_fields"):
        return "object", False
    if issubclass(target, cabc.Sequence):
        return "array", False
    return "any", False


def inputs_from_class(cls: type) -> dict[str, str]:
    """Type strings of a class's fields: a pydantic model (duck-typed: ``model_fields``, with
    string aliases as payload keys), a ``TypedDict``, or an annotated class. A field is
    optional (``?``) when it has a default, is not required, or admits ``None``."""
    import typing

    inputs: dict[str, str] = {}
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, Mapping):
        for name, info in fields.items():
            alias = getattr(info, "validation_alias", None) or getattr(info, "alias", None)
            key = alias if isinstance(alias, str) else name
            base, nullable = _base_type(info.annotation)
            inputs[key] = base + ("?" if nullable or not info.is_required() else "")
        return inputs
    hints = typing.get_type_hints(cls, include_extras=True)
    required_keys = getattr(cls, "__required_keys__", None)
    for name, annotation in hints.items():
        if name.startswith("_") or typing.get_origin(annotation) is typing.ClassVar:
            continue
        base, nullable = _base_type(annotation)
        required = name in required_keys if required_keys is not None else not hasattr(cls, name)
        inputs[name] = base + ("?" if nullable or not required else "")
    return inputs


def _is_model(cls: Any) -> bool:
    return isinstance(cls, type) and isinstance(getattr(cls, "model_fields", None), Mapping) and hasattr(
        cls, "model_json_schema")
