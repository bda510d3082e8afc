"""Operations an effect may return as a value, for a path: ``{"items": ops.push(x)}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Op:
    """Base class of the path operations understood by the runtime."""


@attrs.frozen
class Push(Op):
    items: tuple[Any, ...]


@attrs.frozen
class Splice(Op):
    start: int
    delete_count: int
    items: tuple[Any, ...]


@attrs.frozen
class Filter(Op):
    predicate: Callable[[Any], Any]


@attrs.frozen
class Unset(Op):
    pass


@attrs.frozen
class Replace(Op):
    value: Any


def push(*items: Any) -> Push:
    """Append ``items`` to the array at the path (created if missing)."""
    return Push(items)


def splice(start: int, delete_count: int, *items: Any) -> Splice:
    """Remove ``delete_count`` elements at ``start`` and insert ``items`` there (like JS)."""
    return Splice(start, delete_count, items)


def filter(predicate: Callable[[Any], Any]) -> Filter:
    """Keep the array elements for which ``predicate(element)`` is true."""
    return Filter(predicate)


def unset() -> Unset:
    """Remove the key (or array element) at the path; a missing path is not an error."""
    return Unset()


def replace(value: Any) -> Replace:
    """Write ``value`` as is, without deep-merging it into an existing object."""
    return Replace(value)


__all__ = ["Op", "Push", "Splice", "Filter", "Unset", "Replace", "push", "splice", "filter", "unset", "replace"]
