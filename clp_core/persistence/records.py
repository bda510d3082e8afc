"""Idempotency records: the entries of recent commits by idempotency key, oldest first."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from ..log import LogEntry, entry_from_dict, entry_to_dict


class Records:
    """At most ``limit`` records, the oldest dropped first (after the save that added one)."""

    def __init__(self, limit: int, items: Mapping[str, Any] | None = None) -> None:
        self.limit = limit
        self._items: collections.OrderedDict[str, Any] = collections.OrderedDict(items or {})

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> LogEntry | None:
        stored = self._items.get(key)
        return None if stored is None else entry_from_dict(stored)

    def add(self, entry: LogEntry) -> None:
        assert entry.idempotency_key is not None
        self._items[entry.idempotency_key] = entry_to_dict(entry)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def trim(self) -> None:
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def to_list(self) -> list[list[Any]]:
        """As stored: a list of ``[key, entry]`` keeps their age order through stores that sort keys (jsonb)."""
        return [[k, v] for k, v in self._items.items()]

    def to_dict(self) -> dict[str, Any]:
        return dict(self._items)
