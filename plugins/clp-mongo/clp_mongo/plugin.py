"""The ``clp-mongo`` entry-point plugin: ``mongodb://`` and ``mongodb+srv://`` URLs for
``storage=`` and ``event_store=``.

Building an adapter from a URL does not connect (nor resolve a ``mongodb+srv`` name): the
client is made on the first load, save or append.
"""

from __future__ import annotations

from typing import Any

from clp_core.plugin_api import hookimpl

name = "clp-mongo"


def storage_from_url(url: str) -> Any:
    from .adapter import MongoAdapter

    return MongoAdapter(url)


def event_store_from_url(url: str) -> Any:
    from .events import MongoEventStore

    return MongoEventStore(url)


@hookimpl
def register_storage() -> dict[str, Any]:
    return {"mongodb": storage_from_url, "mongodb+srv": storage_from_url}


@hookimpl
def register_event_stores() -> dict[str, Any]:
    return {"mongodb": event_store_from_url, "mongodb+srv": event_store_from_url}
