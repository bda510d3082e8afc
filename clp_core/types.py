"""Type strings (``"number"``, ``"date?"``...) and the run-time check of a value against one."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import ContractError

TYPE_NAMES = ("string", "number", "integer", "boolean", "date", "datetime", "array", "object", "any")


def _is_date(value: Any) -> bool:
    if isinstance(value, _dt.datetime):
        return False
    if isinstance(value, _dt.date):
        return True
    if isinstance(value, str):
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return False


def _is_datetime(value: Any) -> bool:
    if isinstance(value, _dt.datetime):
        return True
    if isinstance(value, str):
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return False


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "date": _is_date,
    "datetime": _is_datetime,
    "array": lambda v: isinstance(v, (list, tuple)),
    "object": lambda v: isinstance(v, Mapping),
    "any": lambda v: True,
}


@attrs.frozen
class FieldType:
    """A parsed type string: ``base`` is one of :data:`TYPE_NAMES`."""

    base: str
    optional: bool = False

    @classmethod
    def parse(cls, text: object, *, field: str) -> FieldType:
        if not isinstance(text, str):
            raise ContractError(field, f"type must be a string, got {type(text).__name__}")
        spec = text.strip()
        optional = spec.endswith("?")
        base = spec[:-1] if optional else spec
        if base not in _CHECKS:
            raise ContractError(
                field, f"unknown type {text!r} (expected one of {', '.join(TYPE_NAMES)}, with optional '?')"
            )
        return cls(base, optional)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` fits. ``None`` always fits: completeness is judged separately."""
        return value is None or _CHECKS[self.base](value)

    def __str__(self) -> str:
        return self.base + ("?" if self.optional else "")


def type_name(value: Any) -> str:
    """The name reported as ``got`` in validation errors (a type, never the value)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "non-finite float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__
