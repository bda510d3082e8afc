"""The built-in event stores pass the event store conformance suite."""

from __future__ import annotations

from typing import Any

from clp_core import MemoryEventStore, SQLiteEventStore
from clp_core.testing.events import EventStoreSuite


class TestMemoryEventStore(EventStoreSuite):
    async def make_store(self) -> Any:
        return MemoryEventStore()


class TestSQLiteEventStore(EventStoreSuite):
    async def make_store(self) -> Any:
        return SQLiteEventStore(str(self.tmp_path / "events.db"))
