"""A read-only open (``read_only=True`` or ``?mode=ro``) creates no key and refuses writes."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from clp_redis import RedisAdapter, RedisEventStore

from clp_core import codec
from clp_core.errors import StorageError
from clp_core.events import Event
from clp_core.plugin_api import Write
from clp_core.resolve import resolve_event_store, resolve_storage

from .conftest import REDIS_URL


async def _keys(client: aioredis.Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]


async def test_read_only_opens_create_no_key_and_refuse_writes(shared_redis: aioredis.Redis, prefix: str) -> None:
    adapter = resolve_storage(f"{REDIS_URL}?prefix={prefix}", read_only=True)
    store = resolve_event_store(f"{REDIS_URL}?prefix={prefix}ev:", read_only=True)
    assert isinstance(adapter, RedisAdapter) and isinstance(store, RedisEventStore)
    assert adapter.read_only and store.read_only
    try:
        assert await adapter.load("k") is None and await adapter.keys() == []
        assert await store.last_seq("k") == 0 and await store.get_events("k") == []
        assert await store.load_snapshot("k") is None and await store.aggregates() == []
        for write in (lambda: adapter.save("k", {"state": {}}), lambda: adapter.save_versioned("k", {}, 0),
                      lambda: adapter.save_logged("k", Write(codec.encode({}), compacts=True), 0),
                      lambda: adapter.delete("k"), lambda: store.append(Event("k", 1, "commit"), 0),
                      lambda: store.delete("k"), lambda: store.prune("k", 1)):
            with pytest.raises(StorageError, match="read-only") as caught:
                await write()
            assert caught.value.outcome == "not_applied"
    finally:
        await adapter.close()
        await store.close()
    assert await _keys(shared_redis, prefix) == []


async def test_the_url_option_mode_ro_and_the_keyword(prefix: str, shared_redis: aioredis.Redis) -> None:
    assert RedisAdapter(f"{REDIS_URL}?mode=ro&prefix={prefix}").read_only
    assert RedisEventStore(REDIS_URL, prefix=prefix, read_only=True).read_only
    assert not RedisAdapter(f"{REDIS_URL}?mode=rw").read_only
    writer = RedisAdapter(REDIS_URL, prefix=prefix)
    await writer.save("k", {"state": {"n": 1}})
    await writer.close()
    reader = RedisAdapter(REDIS_URL, prefix=prefix, read_only=True)
    assert await reader.load("k") == {"state": {"n": 1}}
    await reader.close()
