"""clp-mongo: MongoDB storage and event store for CLP, on PyMongo's async API.

::

    runtime = clp.create_runtime(contract, storage="mongodb://127.0.0.1:27017/app",
                                 storage_key="order:42", event_store="mongodb://127.0.0.1:27017/app")

or with objects (``client=`` takes a :class:`pymongo.AsyncMongoClient`, a Motor client, or
any client with the same async collection API)::

    from clp_mongo import MongoAdapter, MongoEventStore
    storage = MongoAdapter("mongodb://db.internal:27017", database="app", collection="clp_state")

The classes are imported on first use, so discovering the plugin does not import PyMongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["MongoAdapter", "MongoEventStore", "__version__"]

if TYPE_CHECKING:
    from .adapter import MongoAdapter
    from .events import MongoEventStore


def __getattr__(attribute: str) -> Any:
    if attribute == "MongoAdapter":
        from .adapter import MongoAdapter

        return MongoAdapter
    if attribute == "MongoEventStore":
        from .events import MongoEventStore

        return MongoEventStore
    raise AttributeError(f"module 'clp_mongo' has no attribute {attribute!r}")
