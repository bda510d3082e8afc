"""Type scoping with ``on=``: which intents a guard or a transition applies to.

``on=`` takes one intent name or several (kept as a frozenset) or ``None``, every intent.
The compile step checks it against the declared intents; a compiled contract selects, per
intent, the guards and transitions in scope.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ContractError


def _to_on(value: Any) -> Any:
    """``on=``: one intent name or several -> a frozenset; ``None`` (every intent) kept.
    Other values are kept as given, for the compile step to report."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return frozenset(items)
    return value



def _scoped(items: Iterable[Any], intent: str) -> list[Any]:
    return [item for item in items if item.on is None or intent in item.on]



def _check_on(on: Any, where: str, intents: Mapping[str, Any]) -> None:
    if on is None:
        return
    if not isinstance(on, frozenset):
        raise ContractError(where, f"must be an intent name or a list of intent names, got {type(on).__name__}")
    if not on:
        raise ContractError(where, "names no intent (leave it out to apply to every intent)")
    unknown = sorted(name for name in on if name not in intents)
    if unknown:
        raise ContractError(where, f"unknown intent {', '.join(map(repr, unknown))} (intents: {sorted(intents)})")

