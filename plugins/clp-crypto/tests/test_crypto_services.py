"""clp-crypto on the shared Redis and PostgreSQL servers: read the raw stored bytes (HGETALL,
XRANGE, a plain SELECT of the jsonb column) and find no plaintext; read back through CLP.
Each test uses keys under a prefix of its own, or tables of its own, and removes them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from clp_crypto import Encryption

from clp_core.testing.pytest_plugin import service_unavailable

from .conftest import SECRET, read_back, write_notes

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = os.environ.get("CLP_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
async def redis_prefix(request: pytest.FixtureRequest) -> AsyncIterator[tuple[object, str]]:
    redis = pytest.importorskip("redis.asyncio")
    client = redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        service_unavailable(request.config, "Redis at 127.0.0.1:6379")
    prefix = f"clp-crypto-test:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _redis_dump(client: object, prefix: str) -> bytes:
    found: list[bytes] = []
    async for key in client.scan_iter(match=prefix + "*"):  # type: ignore[attr-defined]
        kind = (await client.type(key)).decode()  # type: ignore[attr-defined]
        if kind == "hash":
            for field, value in (await client.hgetall(key)).items():  # type: ignore[attr-defined]
                found += [field, value]
        elif kind == "stream":
            for _, fields in await client.xrange(key):  # type: ignore[attr-defined]
                for field, value in fields.items():
                    found += [field, value]
        elif kind == "string":
            found.append(await client.get(key))  # type: ignore[attr-defined]
        elif kind == "zset":
            found += [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]  # type: ignore[attr-defined]
        elif kind == "list":
            found += await client.lrange(key, 0, -1)  # type: ignore[attr-defined]
        elif kind == "set":
            found += list(await client.smembers(key))  # type: ignore[attr-defined]
    assert found, "nothing was stored"
    return b"\n".join(found)


async def test_redis_storage_and_streams_hold_no_plaintext(encrypted: Encryption,
                                                           redis_prefix: tuple[object, str]) -> None:
    client, prefix = redis_prefix
    url = f"{REDIS_URL}?prefix={prefix}"
    state = await write_notes(storage=url, storage_key="doc")
    events = await write_notes(5, event_store=url, storage_key="stream", snapshot_every=2)
    raw = await _redis_dump(client, prefix)
    assert SECRET.encode() not in raw and b"clp/1+enc" in raw
    assert await read_back(storage=url, storage_key="doc") == state
    assert await read_back(event_store=url, storage_key="stream") == events


@pytest.fixture
async def pg_tables(request: pytest.FixtureRequest) -> AsyncIterator[tuple[object, str]]:
    asyncpg = pytest.importorskip("asyncpg")
    try:
        connection = await asyncpg.connect(PG_DSN, timeout=5)
    except Exception:
        service_unavailable(request.config, "PostgreSQL at 127.0.0.1:5432")
    table = f"clp_crypto_{uuid.uuid4().hex[:16]}"
    try:
        yield connection, table
    finally:
        for name in (table, f"{table}_snapshots"):
            await connection.execute(f'DROP TABLE IF EXISTS "{name}"')
        await connection.close()


async def test_postgres_storage_and_events_hold_no_plaintext(encrypted: Encryption,
                                                             pg_tables: tuple[object, str]) -> None:
    pytest.importorskip("clp_postgres")
    connection, table = pg_tables
    url = f"{PG_DSN}?table={table}"
    state = await write_notes(storage=url, storage_key="doc")
    rows = await connection.fetch(f'SELECT data::text FROM "{table}"')  # type: ignore[attr-defined]
    raw = "\n".join(row[0] for row in rows)
    assert rows and SECRET not in raw and "clp/1+enc" in raw
    assert await read_back(storage=url, storage_key="doc") == state
    await connection.execute(f'DROP TABLE "{table}"')  # type: ignore[attr-defined]

    events = await write_notes(5, event_store=url, storage_key="stream", snapshot_every=2)
    rows = [*await connection.fetch(f'SELECT data::text FROM "{table}"'),  # type: ignore[attr-defined]
            *await connection.fetch(f'SELECT data::text FROM "{table}_snapshots"')]  # type: ignore[attr-defined]
    raw = "\n".join(row[0] for row in rows)
    assert len(rows) > 5 and SECRET not in raw and "clp/1+enc" in raw
    assert await read_back(event_store=url, storage_key="stream") == events
