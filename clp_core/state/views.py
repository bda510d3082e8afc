"""Values for callers: owned copies checked to be storable (:func:`copy_value`), plain
copies (:func:`plain`), and read-only, no-copy views (:class:`StateView`, :class:`ListView`).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import NestingError, PathError, StateValueError
from .paths import MAX_DEPTH, _short, is_reserved, lookup, parse_path

_SCALARS = (str, int, float, bool, type(None), _dt.date)  # datetime is a date
_FLAT = frozenset({str, int, float, bool, type(None)})


#: The deepest :func:`plain` copies (payloads and other values that are not state may nest
#: deeper than :data:`MAX_DEPTH`); beyond it, or on a cycle, it raises :class:`NestingError`.
MAX_COPY_DEPTH = 1000


def _check_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not key or "." in key or is_reserved(key):
        raise StateValueError(
            f"Key {key!r} under {where or 'the root'} is not allowed: state keys are "
            "non-empty strings without '.' and not dunder names"
        )
    return key


def copy_value(value: Any, where: str = "", *, depth: int | None = None) -> Any:
    """A deep copy the caller owns, checked to be storable (JSON-like, dates allowed).

    ``depth`` is how many segments the path of ``value`` has (default: those of ``where``);
    a value nesting below :data:`MAX_DEPTH` segments from the root is a :class:`PathError`.
    """
    if depth is None:
        depth = where.count(".") + 1 if where else 0
    return _copy(value, where, depth)


def _copy(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise PathError(_short(where), f"value nests deeper than {MAX_DEPTH} segments from the root (MAX_DEPTH)")
    if isinstance(value, _View):
        value = value._data
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StateValueError(f"Value at {_short(where) or 'the root'} is a non-finite float")
        return value
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return {_check_key(k, where): _copy(v, f"{where}.{k}" if where else k, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v, f"{where}.{i}" if where else str(i), depth + 1) for i, v in enumerate(value)]
    raise StateValueError(
        f"Value at {_short(where) or 'the root'} has type {type(value).__name__}, which state cannot hold"
    )


def plain(value: Any) -> Any:
    """Copy of a state value for a caller: containers copied, scalars as they are. Iterative;
    a cyclic value or one nested deeper than :data:`MAX_COPY_DEPTH` is a :class:`NestingError`."""
    if isinstance(value, _View):
        value = value._data
    if isinstance(value, dict):
        root: Any = {}
    elif isinstance(value, list):
        root = []
    else:
        return value
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_COPY_DEPTH:
            raise NestingError(f"value is cyclic or nested deeper than {MAX_COPY_DEPTH} levels")
        items = source.items() if isinstance(source, dict) else enumerate(source)
        is_dict = isinstance(target, dict)
        for key, child in items:
            if isinstance(child, _View):
                child = child._data
            if isinstance(child, dict):
                copy: Any = {}
                stack.append((child, copy, depth + 1))
            elif isinstance(child, list):
                copy = []
                stack.append((child, copy, depth + 1))
            else:
                copy = child
            if is_dict:
                target[key] = copy
            else:
                target.append(copy)
    return root


class _View:
    __slots__ = ("_data",)
    _data: Any


def view(value: Any) -> Any:
    """Wrap a container in a read-only view; scalars pass through."""
    if type(value) in _FLAT:
        return value
    if isinstance(value, dict):
        return StateView(value)
    if isinstance(value, list):
        return ListView(value)
    return value


class StateView(_View, Mapping[str, Any]):
    """A read-only, no-copy view of a state object (nested containers are views too)."""

    __slots__ = ()

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return value if type(value) in _FLAT else view(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, a key or a dot path (``"a.b.0"``), as ``runtime.get_state``
        reads it, or ``default`` when it is missing. A literal key that exists wins over a
        path (state keys cannot contain ``.``; a payload's field names can)."""
        data = self._data
        if key in data:
            value = data[key]
            return value if type(value) in _FLAT else view(value)
        if isinstance(key, str) and "." in key:
            found = lookup(data, parse_path(key))
            return default if found is None else view(found)
        return default

    def path(self, path: str) -> Any:
        """The value at a dot path, or ``None``."""
        return view(lookup(self._data, parse_path(path)))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy the caller owns."""
        return plain(self._data)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"StateView({self._data!r})"


class ListView(_View, Sequence[Any]):
    """A read-only, no-copy view of a state array."""

    __slots__ = ()

    def __init__(self, data: list[Any]) -> None:
        self._data = data

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [view(v) for v in self._data[index]]
        return view(self._data[index])

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListView):
            other = other._data
        return isinstance(other, (list, tuple)) and self._data == list(other)

    def __hash__(self) -> int:  # views are not values
        raise TypeError("unhashable type: 'ListView'")

    def to_list(self) -> list[Any]:
        return plain(self._data)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"ListView({self._data!r})"
