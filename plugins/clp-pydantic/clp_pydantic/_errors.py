"""pydantic's errors turned into CLP's ``{"field", "expected", "got"}`` dicts.

``got`` is the *type* of the offending value, never the value: payloads may hold secrets.
So pydantic's own messages (``str(ValidationError)`` quotes the input) are never reused, and
the pydantic exception is never chained to the ClpError that replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from clp_core.plugin_api import type_name

from ._types import DEPTH_ERROR, MAX_DEPTH, TYPE_ERROR

_MAX_MESSAGE = 200  # a validator's own message is cut to this many characters

_TYPES = {
    "int_type": "integer", "int_parsing": "integer", "int_from_float": "integer",
    "int_parsing_size": "integer within the size limit",
    "float_type": "number", "float_parsing": "number", "finite_number": "finite number",
    "string_type": "string", "string_sub_type": "string", "string_unicode": "string (valid unicode)",
    "bool_type": "boolean", "bool_parsing": "boolean",
    "list_type": "array", "tuple_type": "tuple", "set_type": "set", "frozen_set_type": "frozenset",
    "iterable_type": "iterable", "dict_type": "object", "mapping_type": "object", "model_type": "object",
    "model_attributes_type": "object", "dataclass_type": "object", "dataclass_exact_type": "object",
    "date_type": "date", "date_parsing": "date", "date_from_datetime_parsing": "date",
    "date_from_datetime_inexact": "date (no time part)", "date_past": "date in the past",
    "date_future": "date in the future",
    "datetime_type": "datetime", "datetime_parsing": "datetime", "datetime_object_invalid": "datetime",
    "datetime_from_date_parsing": "datetime", "datetime_past": "datetime in the past",
    "datetime_future": "datetime in the future", "timezone_naive": "datetime without timezone",
    "timezone_aware": "datetime with timezone",
    "time_type": "time", "time_parsing": "time", "time_delta_type": "duration", "time_delta_parsing": "duration",
    "decimal_type": "decimal", "decimal_parsing": "decimal", "uuid_type": "UUID", "uuid_parsing": "UUID",
    "bytes_type": "bytes", "none_required": "null", "callable_type": "callable",
    "url_type": "URL", "url_parsing": "URL", "enum_type": "enum member",
    "missing": "a value", "extra_forbidden": "a declared field", "recursion_loop": "a value without cycles",
}

_WITH_CONTEXT = {  # templates over pydantic's ctx, which holds the constraint, not the input
    "greater_than": "a value > {gt}", "greater_than_equal": "a value >= {ge}",
    "less_than": "a value < {lt}", "less_than_equal": "a value <= {le}",
    "multiple_of": "a multiple of {multiple_of}",
    "string_too_short": "a string of at least {min_length} characters",
    "string_too_long": "a string of at most {max_length} characters",
    "too_short": "at least {min_length} items", "too_long": "at most {max_length} items",
    "string_pattern_mismatch": "a string matching {pattern}",
    "literal_error": "one of {expected}", "enum": "one of {expected}",
    "is_instance_of": "an instance of {class}", "is_subclass_of": "a subclass of {class}",
    "union_tag_invalid": "one of the tags {expected_tags} in {discriminator}",
    "union_tag_not_found": "a tag in {discriminator}",
    "decimal_max_digits": "a decimal of at most {max_digits} digits",
    "decimal_max_places": "a decimal of at most {decimal_places} decimal places",
    "decimal_whole_digits": "a decimal of at most {whole_digits} digits before the point",
    "uuid_version": "a UUID of version {expected_version}",
    "url_scheme": "a URL with scheme {expected_schemes}",
    TYPE_ERROR: "{expected}",
    DEPTH_ERROR: "at most {max_depth} levels of nesting",
}


def _expected(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        # The message a model's own validator raised: written by the model's author.
        message = str(ctx.get("error", "")).strip()
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        return f"a value its validator accepts ({message})" if message else "a value its validator accepts"
    if kind in _TYPES:
        return _TYPES[kind]
    template = _WITH_CONTEXT.get(kind)
    if template is not None:
        try:
            return template.format(**ctx)
        except (KeyError, IndexError, ValueError):
            return str(kind)
    return str(kind)  # unknown or custom error type: its name, never its message


def _got(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "undeclared field"
    value = error.get("input")
    if kind == TYPE_ERROR and isinstance(value, str):
        expected = str((error.get("ctx") or {}).get("expected", "")).rstrip("?")
        if expected in ("date", "datetime"):
            return f"str (not an ISO 8601 {expected})"
    return type_name(value)


def _contains(container: Mapping[str, Any], key: Any) -> bool:
    try:
        return key in container
    except Exception:  # unhashable key, a hostile mapping
        return False


def field_path(loc: Sequence[Any], data: Any, *, last_is_key: bool) -> list[str]:
    """The dot path of an error's ``loc`` in the data that was validated.

    pydantic puts union member tags (``"int"``, a model name, a literal tag) in ``loc``;
    they are dropped by walking ``loc`` against the data: a part that is not a key (or
    index) of the value reached so far is a tag. The last part of a ``missing`` error names
    a key that is, by definition, not in the data (``last_is_key``).
    """
    path: list[str] = []
    current = data
    for index, part in enumerate(loc):
        try:
            if isinstance(current, Mapping) and _contains(current, part):
                path.append(str(part))
                current = current[part]
                continue
            if (isinstance(current, (list, tuple)) and isinstance(part, int)
                    and not isinstance(part, bool) and -len(current) <= part < len(current)):
                path.append(str(part))
                current = current[part]
                continue
        except Exception:  # a value that cannot be read: keep the remaining parts as they are
            path.extend(str(p) for p in loc[index:])
            return path
        if index == len(loc) - 1 and last_is_key:
            path.append(str(part))
    return path


def convert(exc: PydanticValidationError, data: Any, *, root: str,
            names: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """CLP error dicts for ``exc``, raised validating ``data``; ``root`` names the whole
    value (``"<payload>"``, ``"<state>"``); ``names`` maps top-level model field names
    that pydantic may report to payload keys."""
    merged: dict[str, dict[str, Any]] = {}
    for error in exc.errors(include_url=False, include_context=True, include_input=True):
        loc = tuple(error.get("loc") or ())
        if names and loc and isinstance(loc[0], str) and loc[0] in names and not (
                isinstance(data, Mapping) and _contains(data, loc[0])):
            loc = (names[loc[0]], *loc[1:])
        path = field_path(loc, data, last_is_key=error["type"] in ("missing", "extra_forbidden"))
        field = ".".join(path) or root
        expected = _expected(error)
        if field in merged:  # the members of a union, or several checks of one value
            if expected not in merged[field]["expected"]:
                merged[field]["expected"].append(expected)
            continue
        merged[field] = {"expected": [expected], "got": _got(error)}
    return [{"field": field, "expected": " or ".join(e["expected"]), "got": e["got"]} for field, e in merged.items()]


__all__ = ["MAX_DEPTH", "convert", "field_path"]
