"""A read-only open (``read_only=True`` or ``?mode=ro``) creates no collection or index and
refuses writes."""

from __future__ import annotations

from typing import Any

import pytest
from clp_mongo import MongoAdapter, MongoEventStore

from clp_core.errors import StorageError
from clp_core.events import Event


def test_the_url_option_is_taken_out_of_the_url() -> None:
    adapter = MongoAdapter("mongodb://127.0.0.1:27017/app?mode=ro&appname=x")
    assert adapter.read_only and adapter.url == "mongodb://127.0.0.1:27017/app?appname=x"
    assert not MongoEventStore("mongodb://127.0.0.1:27017/app").read_only


async def test_read_only_creates_nothing_and_refuses_writes(mongo_backend: Any) -> None:
    options: dict[str, Any] = ({"client": mongo_backend.client} if mongo_backend.is_standin
                               else {**mongo_backend.options})
    url = mongo_backend.url or "mongodb://127.0.0.1:27017"
    adapter = MongoAdapter(url, database=mongo_backend.database, read_only=True, **options)
    store = MongoEventStore(url, database=mongo_backend.database, read_only=True, **options)
    try:
        assert await adapter.load("k") is None and await store.last_seq("k") == 0
        for write in (lambda: adapter.save("k", {}), lambda: adapter.delete("k"),
                      lambda: store.append(Event("k", 1, "commit"), 0), lambda: store.prune("k", 1)):
            with pytest.raises(StorageError, match="read-only"):
                await write()
    finally:
        await adapter.close()
        await store.close()
    assert await mongo_backend.client[mongo_backend.database].list_collection_names() == []
