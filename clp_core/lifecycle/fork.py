"""Forks: a new aggregate whose history starts from another's state at some seq.

The fork's stream starts with snapshot 0 holding that state and the ancestry
``((parent key, seq), (grandparent key, seq), ...)`` (``Snapshot.lineage``); it has no events
yet, so its sequence numbers count its own commits from 1, like any aggregate's. Every later
snapshot of the fork carries the ancestry, so pruning its snapshot 0 keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, HistoryError
from ..events import Snapshot, lineage
from ..state import plain

if TYPE_CHECKING:
    from .runtime import Runtime


async def fork(parent: Runtime, at: int, key: str) -> Runtime:
    """A new runtime (same contract, provider and options) on aggregate ``key``, starting
    from ``parent``'s state at ``at``; ``key`` must have no events and no snapshots."""
    store = parent.event_store
    if store is None:
        raise ConfigError("fork() needs a runtime created with event_store=...")
    if not isinstance(key, str) or not key:
        raise ConfigError("fork() needs key=<a non-empty storage key>")
    if key == parent.storage_key:
        raise HistoryError(f"cannot fork {key!r} onto itself")
    await parent.hydrate()
    state = await parent.state_at(at)
    if await store.last_seq(key) > 0 or await store.load_snapshot(key) is not None:
        raise HistoryError(f"cannot fork onto {key!r}: it already has history (forks need a new key)")
    ancestry = ((parent.storage_key, at), *await lineage(store, parent.storage_key))
    await store.save_snapshot(key, Snapshot(0, plain(state), lineage=ancestry))
    options: dict[str, Any] = {**parent.options, "storage_key": key, "initial_state": state,
                               "storage": parent.storage, "event_store": store}
    child = type(parent)(parent.contract, parent.ai_provider, **options)
    child.owns_resources = False  # the parent's storage and event store: closing the fork leaves them open
    await child.hydrate()
    return child
