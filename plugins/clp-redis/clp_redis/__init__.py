"""Redis for CLP: a storage adapter with compare-and-set saves and a Redis Streams event store.

``create_runtime(contract, storage="redis://localhost:6379/0")`` and
``event_store="redis://localhost:6379/0"`` resolve to these classes through the plugin's
entry point; build them directly to pass options (``prefix``, ``ttl``, a shared ``client``).

The classes are imported on first use, so discovering the plugin does not import redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import RedisAdapter
    from .events import RedisEventStore

__version__ = "0.2.0"

__all__ = ["RedisAdapter", "RedisEventStore", "__version__"]


def __getattr__(attribute: str) -> Any:
    if attribute == "RedisAdapter":
        from .adapter import RedisAdapter

        return RedisAdapter
    if attribute == "RedisEventStore":
        from .events import RedisEventStore

        return RedisEventStore
    raise AttributeError(f"module 'clp_redis' has no attribute {attribute!r}")
