"""PostgresAdapter: CLP documents in a jsonb column, versioned saves in one round trip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clp_core import codec
from clp_core.plugin_api import ConflictError

from ._common import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DSN,
    DEFAULT_OPERATION_TIMEOUT,
    TableClient,
    from_jsonb,
    qualified,
    to_jsonb,
)
from .schema import create_tables, state_table_ddl

Document = dict[str, Any]


class PostgresAdapter(TableClient):
    """A storage adapter on PostgreSQL through an asyncpg pool.

    Documents live in ``schema.table`` (``key text primary key, version bigint, data jsonb,
    updated_at timestamptz``), the data as the CLP envelope ``{"format": "clp/1", "data": ...}``.
    The pool is created on first use (or ``pool=`` is used, and left open by :meth:`close`);
    the table is created on first use unless ``create_table=False`` (then ``clp migrate``).

    Every statement is one round trip with its values bound (``$1``...); a versioned save
    is a single conditional ``INSERT``/``UPDATE ... RETURNING version``.
    """

    name = "postgresql"

    def __init__(
        self,
        dsn: str = DEFAULT_DSN,
        *,
        table: str = "clp_state",
        schema: str = "public",
        pool: Any = None,
        min_size: int = 1,
        max_size: int = 10,
        create_table: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        pool_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(dsn, table=table, schema=schema, pool=pool, min_size=min_size, max_size=max_size,
                         create_table=create_table, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, pool_options=pool_options,
                         operation_timeout=operation_timeout, read_only=read_only)
        name = qualified(self.schema, self.table)
        self._select = f"SELECT data::text, version FROM {name} WHERE key = $1"
        self._upsert = (
            f"INSERT INTO {name} AS t (key, version, data, updated_at) VALUES ($1, 1, $2::text::jsonb, now()) "
            "ON CONFLICT (key) DO UPDATE SET version = t.version + 1, data = excluded.data, updated_at = now()"
        )
        self._insert_new = (
            f"INSERT INTO {name} (key, version, data, updated_at) VALUES ($1, 1, $2::text::jsonb, now()) "
            "ON CONFLICT (key) DO NOTHING RETURNING version"
        )
        self._update_if = (
            f"UPDATE {name} SET version = version + 1, data = $2::text::jsonb, updated_at = now() "
            "WHERE key = $1 AND version = $3 RETURNING version"
        )
        self._delete = f"DELETE FROM {name} WHERE key = $1"
        self._keys = f"SELECT key FROM {name} WHERE left(key, length($1)) = $1"

    async def _create(self, connection: Any) -> None:
        await create_tables(connection, self.schema, [self.table], state_table_ddl(self.schema, self.table))

    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        row = await self._run(f"load of {key!r}", lambda c: c.fetchrow(self._select, key))
        if row is None:
            return None, 0
        return codec.decode_document(from_jsonb(row[0]), backend=self.name, key=key), int(row[1])

    async def save(self, key: str, document: Document) -> None:
        data = to_jsonb(codec.encode(document))
        await self._run(f"save of {key!r}", lambda c: c.execute(self._upsert, key, data))

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        data = to_jsonb(codec.encode(document))
        if expected_version == 0:
            version = await self._run(f"save of {key!r}", lambda c: c.fetchval(self._insert_new, key, data))
        else:
            version = await self._run(
                f"save of {key!r}", lambda c: c.fetchval(self._update_if, key, data, int(expected_version)))
        if version is None:
            raise ConflictError(f"key {key!r} changed since version {expected_version}", backend=self.name)
        return int(version)

    async def delete(self, key: str) -> None:
        await self._run(f"delete of {key!r}", lambda c: c.execute(self._delete, key))

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted by code point."""
        rows = await self._run(f"list of keys under {prefix!r}", lambda c: c.fetch(self._keys, prefix))
        return sorted(row[0] for row in rows)
