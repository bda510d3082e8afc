"""Deep state: paths, read-only views, owned copies, and in-place writes with an undo log.

The runtime owns one nested ``dict``. A commit writes into it in place, recording how to
undo each write, so its cost follows the paths written, not the size of the state; on any
failure the undo log restores the state exactly. Callers only ever see copies
(:func:`copy_value`) or read-only views (:class:`StateView`).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from . import ops
from .errors import NestingError, PathError, StateValueError

Path = tuple[str, ...]
State = dict[str, Any]
_SCALARS = (str, int, float, bool, type(None), _dt.date)  # datetime is a date

#: The deepest a value may sit in state: a path has at most ``MAX_DEPTH`` segments, and no
#: value written at a path of ``n`` segments may nest more than ``MAX_DEPTH - n`` levels of
#: containers. Checked at write time (paths, effect results, ``ops``, replayed changes), so
#: whatever commits can be stored and read back (see :data:`clp_core.codec.MAX_NESTING`).
MAX_DEPTH = 100


#: The deepest :func:`plain` copies (payloads and other values that are not state may nest
#: deeper than :data:`MAX_DEPTH`); beyond it, or on a cycle, it raises :class:`NestingError`.
MAX_COPY_DEPTH = 1000


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def is_reserved(segment: str) -> bool:
    return segment.startswith("__") and segment.endswith("__")


def parse_path(text: object) -> Path:
    """``"a.b.0"`` -> ``("a", "b", "0")``; rejects empty and dunder segments, and paths of
    more than :data:`MAX_DEPTH` segments."""
    if not isinstance(text, str) or not text:
        raise PathError(_short(str(text)), "a path must be a non-empty string")
    if text.count(".") >= MAX_DEPTH:
        raise PathError(_short(text), f"more than {MAX_DEPTH} segments (MAX_DEPTH)")
    path = tuple(text.split("."))
    for segment in path:
        if not segment:
            raise PathError(text, "empty segment")
        if is_reserved(segment):
            raise PathError(text, f"segment {segment!r} is reserved")
    return path


def format_path(path: Path) -> str:
    return ".".join(path)


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
        return view(self._data[key])

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
            return view(data[key])
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


def array_index(segment: str) -> int | None:
    """The array index a segment names: a canonical non-negative integer (``"0"``, ``"12"``;
    not ``"01"``, ``"+1"``, ``"-1"`` or an Arabic-Indic digit), else ``None``. Under an object every segment
    is a key, so ``"01"`` is the key ``"01"``."""
    if segment == "0":
        return 0
    if segment[:1] in "123456789" and segment[:1] and segment.isascii() and segment.isdigit():
        return int(segment)
    return None


def _index(segment: str, length: int, path: Path, depth: int, *, allow_end: bool = False) -> int:
    index = array_index(segment)
    if index is None:
        raise PathError(_short(format_path(path)),
                        f"segment {segment!r} is not an array index (0, 1, 2... without leading zeros)")
    if index > length or (index == length and not allow_end):
        array = format_path(path[:depth])
        raise PathError(format_path(path), f"index {index} out of range (array {array!r} has {length} elements)")
    return index


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1``, ``1.0`` and ``True`` differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def lookup(root: Any, path: Path) -> Any:
    """The value at ``path``, or ``None`` when any part of it is missing."""
    node = root
    for segment in path:
        if isinstance(node, dict):
            node = node.get(segment)
        elif isinstance(node, list):
            index = array_index(segment)
            if index is None or index >= len(node):
                return None
            node = node[index]
        else:
            return None
    return node


@attrs.frozen
class Change:
    """One write of a commit, replayable: ``set``, ``unset``, ``push`` or ``splice``.

    ``value`` is the value written (``set``) or the items inserted (``push``, ``splice``).
    """

    op: str
    path: str
    value: Any = attrs.field(default=None, converter=view)
    start: int | None = None
    delete_count: int | None = None


class Writer:
    """Applies writes to one state dict in place, keeping an undo log until committed."""

    def __init__(self, root: State) -> None:
        self.root = root
        self.changes: list[Change] = []
        self._undo: list[tuple[Any, ...]] = []

    def rollback(self) -> None:
        for record in reversed(self._undo):
            kind, container, key, old = record
            if kind == "restore":
                container[key] = old
            elif kind == "delete":
                del container[key]
            elif kind == "truncate":
                del container[key:]
            elif kind == "slice":
                start, inserted = key
                container[start : start + inserted] = old
        self._undo.clear()
        self.changes.clear()

    # -- navigation --------------------------------------------------------------------
    def _parent(self, path: Path) -> Any:
        node: Any = self.root
        for depth, segment in enumerate(path[:-1]):
            if isinstance(node, dict):
                child = node.get(segment)
                if child is None:
                    child = {}
                    self._set_in(node, segment, child)
            elif isinstance(node, list):
                child = node[_index(segment, len(node), path, depth)]
                if child is None:
                    child = {}
                    self._set_in(node, segment, child)
            else:  # pragma: no cover - checked below before descending
                raise AssertionError
            if not isinstance(child, (dict, list)):
                raise PathError(
                    format_path(path),
                    f"crosses {format_path(path[: depth + 1])!r}, which holds a {type(child).__name__}",
                )
            node = child
        return node

    def _set_in(self, container: Any, segment: str, value: Any) -> None:
        if isinstance(container, dict):
            if segment in container:
                self._undo.append(("restore", container, segment, container[segment]))
            else:
                self._undo.append(("delete", container, segment, None))
            container[segment] = value
        else:
            index = int(segment)  # checked by _index before
            self._undo.append(("restore", container, index, container[index]))
            container[index] = value

    # -- writes --------------------------------------------------------------------------
    def set(self, path: Path, value: Any) -> None:
        """Write an owned value (already copied) at ``path``; writing an identical value is
        not a change (no diff entry, no subscriber call)."""
        parent = self._parent(path)
        last = path[-1]
        if isinstance(parent, list):
            current = parent[_index(last, len(parent), path, len(path) - 1)]
            if _same(current, value):
                return
        elif last in parent and _same(parent[last], value):
            return
        self._set_in(parent, last, value)
        self.changes.append(Change("set", format_path(path), plain(value)))

    def unset(self, path: Path) -> None:
        parent = lookup(self.root, path[:-1])
        last = path[-1]
        if isinstance(parent, dict) and last in parent:
            self._undo.append(("restore", parent, last, parent[last]))
            del parent[last]
        elif isinstance(parent, list):
            index = array_index(last)
            if index is None:
                raise PathError(_short(format_path(path)),
                                f"segment {last!r} is not an array index (0, 1, 2... without leading zeros)")
            if index >= len(parent):
                return
            self._undo.append(("slice", parent, (index, 0), [parent[index]]))
            del parent[index]
        else:
            return
        self.changes.append(Change("unset", format_path(path)))

    def _array(self, path: Path) -> list[Any]:
        parent = self._parent(path)
        last = path[-1]
        if isinstance(parent, list):
            current = parent[_index(last, len(parent), path, len(path) - 1)]
        else:
            current = parent.get(last)
        if current is None:
            current = []
            self._set_in(parent, last, current)
        if not isinstance(current, list):
            raise PathError(format_path(path), f"holds a {type(current).__name__}, not an array")
        return current

    def push(self, path: Path, items: list[Any]) -> None:
        array = self._array(path)
        self._undo.append(("truncate", array, len(array), None))
        array.extend(items)
        self.changes.append(Change("push", format_path(path), plain(items)))

    def splice(self, path: Path, start: int, delete_count: int, items: list[Any]) -> None:
        if not _is_int(start) or not _is_int(delete_count) or delete_count < 0:
            raise PathError(format_path(path), "splice needs an integer start and a non-negative delete count")
        array = self._array(path)
        if start < 0:
            start = max(len(array) + start, 0)
        start = min(start, len(array))
        removed = array[start : start + delete_count]
        self._undo.append(("slice", array, (start, len(items)), removed))
        array[start : start + delete_count] = items
        self.changes.append(Change("splice", format_path(path), plain(items), start, delete_count))

    # -- effects ------------------------------------------------------------------------
    def apply_effects(self, result: Mapping[str, Any]) -> None:
        """Apply an effect's result: dot-path keys, deep-merged dicts and :mod:`ops`."""
        for key, value in result.items():
            self._apply(parse_path(key), value)

    def _apply(self, path: Path, value: Any) -> None:
        where = format_path(path)
        if len(path) > MAX_DEPTH:
            raise PathError(_short(where), f"more than {MAX_DEPTH} segments (MAX_DEPTH)")
        if isinstance(value, ops.Op):
            self._apply_op(path, value)
        elif isinstance(value, Mapping):
            current = lookup(self.root, path)
            if isinstance(current, dict):
                for key, sub in value.items():
                    self._apply((*path, _check_key(key, where)), sub)
            else:
                self.set(path, copy_value(value, where))
        else:
            self.set(path, copy_value(value, where))

    def _apply_op(self, path: Path, op: ops.Op) -> None:
        where = format_path(path)
        if isinstance(op, ops.Push):
            self.push(path, [copy_value(v, where, depth=len(path) + 1) for v in op.items])
        elif isinstance(op, ops.Splice):
            self.splice(path, op.start, op.delete_count,
                        [copy_value(v, where, depth=len(path) + 1) for v in op.items])
        elif isinstance(op, ops.Unset):
            self.unset(path)
        elif isinstance(op, ops.Replace):
            self.set(path, copy_value(op.value, where))
        elif isinstance(op, ops.Filter):
            current = lookup(self.root, path)
            if current is None:
                return
            if not isinstance(current, list):
                raise PathError(where, f"holds a {type(current).__name__}, not an array")
            kept = [item for item in current if op.predicate(view(item))]
            if len(kept) != len(current):
                self.set(path, kept)
        else:
            raise PathError(where, f"unknown operation {type(op).__name__}")

    def apply_change(self, change: Change) -> None:
        """Re-apply a recorded :class:`Change` (replay)."""
        path = parse_path(change.path)
        if change.op == "set":
            self.set(path, copy_value(change.value, change.path))
        elif change.op == "unset":
            self.unset(path)
        elif change.op == "push":
            self.push(path, copy_value(change.value, change.path))
        elif change.op == "splice":
            self.splice(path, change.start or 0, change.delete_count or 0, copy_value(change.value, change.path))
        else:
            raise PathError(change.path, f"unknown change op {change.op!r}")


def touches(changed: Sequence[Path], watched: Path) -> bool:
    """Whether a change at any of ``changed`` is at, under or above ``watched``."""
    for path in changed:
        n = min(len(path), len(watched))
        if path[:n] == watched[:n]:
            return True
    return False


def changed_paths(changes: Sequence[Change]) -> list[Path]:
    return [tuple(c.path.split(".")) for c in changes]

