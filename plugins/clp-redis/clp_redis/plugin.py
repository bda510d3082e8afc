"""The clp-redis plugin: ``redis://`` and ``rediss://`` URLs for storage and event stores.

Registered through the ``clp`` entry-point group, so ``create_runtime(storage="redis://...")``
and ``event_store="redis://..."`` find it once the distribution is installed.
"""

from __future__ import annotations

from typing import Any

from clp_core.plugin_api import hookimpl

name = "clp-redis"


def storage_from_url(url: str) -> Any:
    from .adapter import RedisAdapter  # redis is imported when a URL asks for it, not at discovery

    return RedisAdapter(url)


def event_store_from_url(url: str) -> Any:
    from .events import RedisEventStore

    return RedisEventStore(url)


@hookimpl
def register_storage() -> dict[str, Any]:
    return {"redis": storage_from_url, "rediss": storage_from_url}


@hookimpl
def register_event_stores() -> dict[str, Any]:
    return {"redis": event_store_from_url, "rediss": event_store_from_url}
