"""In-place writes with an undo log (:class:`Writer`), the :class:`Change` each write
records, and which paths a list of changes touches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .. import ops
from ..errors import PathError
from ..slots import new, slot_setters
from .paths import MAX_DEPTH, Path, State, _short, array_index, format_path, lookup, parse_path
from .views import _FLAT, _check_key, copy_value, plain, view


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


_new = new
_c_op, _c_path, _c_value, _c_start, _c_delete_count = slot_setters(Change, "op path value start delete_count")


_top_keys: set[str] = set()  # top-level state keys written before (no ".", not empty, no leading "__")


class _Discard(list[Any]):
    """A journal that keeps nothing (a replay has nothing to undo or to report)."""

    def append(self, item: Any) -> None:
        pass


class Writer:
    """Applies writes to one state dict in place, keeping an undo log until committed.

    ``journal=False`` keeps neither the undo log nor the :attr:`changes` (replay's fast path).
    """

    def __init__(self, root: State, *, journal: bool = True) -> None:
        self.root = root
        self.journal = journal
        self.changes: list[Change] = [] if journal else _Discard()
        self._undo: list[tuple[Any, ...]] = [] if journal else _Discard()

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
        if self.journal:
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
        if self.journal:
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
        if self.journal:
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
        if self.journal:
            self.changes.append(Change("splice", format_path(path), plain(items), start, delete_count))

    # -- effects ------------------------------------------------------------------------
    def apply_effects(self, result: Mapping[str, Any]) -> None:
        """Apply an effect's result: dot-path keys, deep-merged dicts and :mod:`ops`."""
        root = self.root
        for key, value in result.items():
            kind = type(value)
            if kind not in _FLAT or key not in _top_keys or (kind is float and not math.isfinite(value)):
                self._apply(parse_path(key), value)
                if type(key) is str and key and "." not in key and key[:2] != "__" and len(_top_keys) < 10_000:
                    _top_keys.add(key)  # a key the general path took: the next writes skip the walk
                continue
            # a scalar at a top-level key (the usual effect): what set() does, without the walk
            if key in root:
                old = root[key]
                if type(old) is kind and old == value:
                    continue
                self._undo.append(("restore", root, key, old))
            else:
                self._undo.append(("delete", root, key, None))
            root[key] = value
            if self.journal:  # Change("set", key, value), made as its __init__ would (value is flat)
                change = _new(Change)
                _c_op(change, "set")
                _c_path(change, key)
                _c_value(change, value)
                _c_start(change, None)
                _c_delete_count(change, None)
                self.changes.append(change)

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

    def apply_change(self, change: Change, *, owned: bool = False) -> None:
        """Re-apply a recorded :class:`Change` (replay). ``owned``: its value was decoded for
        this call and may go into the state as it is (no copy)."""
        value = getattr(change.value, "_data", change.value) if owned else copy_value(change.value, change.path)
        path = parse_path(change.path)
        if change.op == "set":
            self.set(path, value)
        elif change.op == "unset":
            self.unset(path)
        elif change.op == "push":
            self.push(path, value)
        elif change.op == "splice":
            self.splice(path, change.start or 0, change.delete_count or 0, value)
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
