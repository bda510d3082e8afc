"""The clp-redis plugin: ``redis://`` and ``rediss://`` URLs for storage and event stores.

Registered through the ``clp`` entry-point group, so ``create_runtime(storage="redis://...")``
and ``event_store="redis://..."`` find it once the distribution is installed.
"""

from __future__ import annotations

from typing import Any

from clp_core.plugin_api import hookimpl

name = "clp-redis"


@hookimpl
def register_storage() -> dict[str, Any]:
    from .adapter import RedisAdapter

    return {"redis": RedisAdapter, "rediss": RedisAdapter}


@hookimpl
def register_event_stores() -> dict[str, Any]:
    from .events import RedisEventStore

    return {"redis": RedisEventStore, "rediss": RedisEventStore}
