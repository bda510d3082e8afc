"""Stored changes applied as they were decoded: replay's fast path.

A stored event's diff is a list of dicts ``{"op", "path", "value", "start", "delete_count"}``
(the JSON form of :class:`~.writer.Change`). :func:`apply_stored` applies them to a state
in place, with no undo log, no journal and no :class:`Change` objects, and the values go
into the state as they are (the caller decoded them for this call). The result, and every
:class:`~clp_core.errors.PathError` or ``TypeError`` raised, is what
``Writer(state, journal=False).apply_change(change, owned=True)`` gives for the same change;
``tests/test_replay_fast.py`` holds the two to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import PathError
from .paths import Path, _short, array_index, format_path, lookup, parse_path
from .views import plain
from .writer import _index, _is_int

#: A parsed path as :func:`apply_stored` caches it: the path, all but its last segment, its last segment.
Parsed = tuple[Path, Path, str]


_CONTAINERS = frozenset({dict, list})


def _own(value: Any) -> Any:
    """A copy of a decoded value's arrays and objects (scalars shared: they are immutable).
    Recursive: a decoded value nests at most ``codec.MAX_NESTING`` levels."""
    if type(value) is dict:
        return {k: _own(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if type(value) is list:
        return [_own(v) if type(v) in _CONTAINERS else v for v in value]
    return plain(value)  # a subclass of dict or list: the general copy


def apply_stored(root: dict[str, Any], changes: Iterable[Mapping[str, Any]], paths: dict[Any, Parsed],
                 *, shared: bool = False) -> None:
    """Apply ``changes`` (stored change dicts) to ``root`` in place. ``paths`` caches parsed
    paths by their text for the caller's whole replay (a stream writes few distinct paths).
    ``shared``: the changes are kept by someone else (a store's cache), so the arrays and
    objects they hold are copied into ``root``, not put there."""
    for change in changes:
        text = change["path"]
        try:
            parsed = paths.get(text)
        except TypeError:  # not a path at all (a list...): parse_path says so, as the Writer's does
            parsed = None
        if parsed is None:
            path = parse_path(text)
            parsed = paths[text] = (path, path[:-1], path[-1])
        path, head, last = parsed
        op = change["op"]
        if op == "set":
            parent: Any = root
            for segment in head:  # objects all the way: the common case, walked here
                child = parent.get(segment)
                if type(child) is not dict:  # to create, an array, a scalar: _parent does it all
                    parent = _parent(root, path)
                    break
                parent = child
            value = change.get("value")
            if shared and type(value) in _CONTAINERS:
                value = _own(value)
            if type(parent) is dict:
                parent[last] = value
            elif isinstance(parent, list):
                parent[_index(last, len(parent), path, len(path) - 1)] = value
            else:
                parent[last] = value
        elif op == "unset":
            _unset(root, path)
        elif op == "push":
            items = change.get("value")
            _array(root, path).extend(_own(items) if shared else items)  # type: ignore[arg-type]  # as Writer.push
        elif op == "splice":
            start, delete_count = change.get("start") or 0, change.get("delete_count") or 0
            if not _is_int(start) or not _is_int(delete_count) or delete_count < 0:
                raise PathError(format_path(path), "splice needs an integer start and a non-negative delete count")
            array = _array(root, path)
            if start < 0:
                start = max(len(array) + start, 0)
            start = min(start, len(array))
            items = change.get("value")
            array[start : start + delete_count] = _own(items) if shared else items  # type: ignore[assignment]
        else:
            raise PathError(text, f"unknown change op {op!r}")


def _parent(root: dict[str, Any], path: Path) -> Any:
    """The container holding ``path``'s last segment; missing or null objects on the way are
    created (as :meth:`Writer._parent <.writer.Writer._parent>` does)."""
    node: Any = root
    for depth, segment in enumerate(path[:-1]):
        if isinstance(node, dict):
            child = node.get(segment)
            if child is None:
                child = node[segment] = {}
        else:  # a list: containers only are descended into
            index = _index(segment, len(node), path, depth)
            child = node[index]
            if child is None:
                child = node[index] = {}
        if not isinstance(child, (dict, list)):
            raise PathError(
                format_path(path), f"crosses {format_path(path[: depth + 1])!r}, which holds a {type(child).__name__}"
            )
        node = child
    return node


def _array(root: dict[str, Any], path: Path) -> list[Any]:
    parent = _parent(root, path)
    last = path[-1]
    if isinstance(parent, list):
        index = _index(last, len(parent), path, len(path) - 1)
        current = parent[index]
        if current is None:
            current = parent[index] = []
    else:
        current = parent.get(last)
        if current is None:
            current = parent[last] = []
    if not isinstance(current, list):
        raise PathError(format_path(path), f"holds a {type(current).__name__}, not an array")
    return current


def _unset(root: dict[str, Any], path: Path) -> None:
    parent = lookup(root, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list):
        index = array_index(last)
        if index is None:
            raise PathError(_short(format_path(path)),
                            f"segment {last!r} is not an array index (0, 1, 2... without leading zeros)")
        if index < len(parent):
            del parent[index]
