"""Redis for CLP: a storage adapter with compare-and-set saves and a Redis Streams event store.

``create_runtime(contract, storage="redis://localhost:6379/0")`` and
``event_store="redis://localhost:6379/0"`` resolve to these classes through the plugin's
entry point; build them directly to pass options (``prefix``, ``ttl``, a shared ``client``).
"""

from __future__ import annotations

from .adapter import RedisAdapter
from .events import RedisEventStore

__version__ = "0.2.0"

__all__ = ["RedisAdapter", "RedisEventStore", "__version__"]
