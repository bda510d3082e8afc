"""PostgresAdapter: CLP documents in a jsonb column, each commit one statement: an appended
patch on a big document, the whole document on a small one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clp_core import codec
from clp_core.plugin_api import ConflictError, CorruptStateError, PatchLog, StorageError, Write, patched_document

from ._common import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DSN,
    DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_TOAST_COMPRESSION,
    TableClient,
    from_jsonb,
    qualified,
    to_jsonb,
)
from .schema import create_tables, outdated, patches_table_name, state_table_ddl, state_tables

Document = dict[str, Any]


class PostgresAdapter(TableClient):
    """A storage adapter on PostgreSQL through an asyncpg pool.

    Documents live in ``schema.table`` (``key text primary key, version bigint, data jsonb,
    updated_at timestamptz, base_version bigint``), the data as the CLP envelope
    ``{"format": "clp/1", "data": ...}``. ``version`` is the head version; when patches follow
    ``data`` (:mod:`clp_core.storage.patch`), ``base_version`` is the version of ``data`` and
    the patches of the versions after it are rows of ``schema.<table>_patches`` (``key,
    version, data jsonb``); NULL means none. An appended patch updates only the row's small
    columns, so PostgreSQL keeps the big TOASTed ``data`` as it is.

    The pool is created on first use (or ``pool=`` is used, and left open by :meth:`close`);
    the tables are created (or given the patches of this version) on first use unless
    ``create_table=False`` (then ``clp migrate``). Every save and load is one statement, one
    round trip, its values bound (``$1``...), compare-and-set on the head version.
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
        toast_compression: str = DEFAULT_TOAST_COMPRESSION,
    ) -> None:
        super().__init__(dsn, table=table, schema=schema, pool=pool, min_size=min_size, max_size=max_size,
                         create_table=create_table, connect_timeout=connect_timeout,
                         command_timeout=command_timeout, pool_options=pool_options,
                         operation_timeout=operation_timeout, read_only=read_only,
                         toast_compression=toast_compression)
        self.patches_table = patches_table_name(self.table)
        self._ready = False  # without create_table, the tables are checked on first use
        name, patches = qualified(self.schema, self.table), qualified(self.schema, self.patches_table)
        base = "coalesce(t.base_version, t.version)"
        # one statement, so one snapshot: the row and the patches after its base
        self._select = (
            f"SELECT t.data::text, t.version, {base}, ARRAY(SELECT p.data::text FROM {patches} p "
            f"WHERE p.key = t.key AND p.version > {base} AND p.version <= t.version ORDER BY p.version) "
            f"FROM {name} t WHERE t.key = $1"
        )
        self._select_patched = self._select
        # a table made before patches, read-only (nothing to migrate it), until a migration
        # elsewhere makes the patches table (the last column: then read as above)
        self._select_unpatched = (f"SELECT data::text, version, version, ARRAY[]::text[], "
                                  f"to_regclass('{patches}') IS NOT NULL FROM {name} WHERE key = $1")
        # Whole-document writes drop the patches in the same statement (when they wrote and the
        # row had patches: a base_version, read in the statement's snapshot, as it was before
        # the write; a one-time filter, so a row without patches costs no scan of the patches
        # table). A patch row a racing write missed is harmless: loads read only the versions
        # after the base, and an append overwrites any row at its version.
        drop = (f"dropped AS (DELETE FROM {patches} p USING written WHERE p.key = written.key AND "
                f"(SELECT o.base_version FROM {name} o WHERE o.key = $1) IS NOT NULL)")
        self._upsert = (
            f"WITH written AS (INSERT INTO {name} AS t (key, version, data, updated_at) "
            "VALUES ($1, 1, $2::text::jsonb, now()) ON CONFLICT (key) DO UPDATE SET version = t.version + 1, "
            "data = excluded.data, base_version = NULL, updated_at = now() RETURNING key, version), "
            f"{drop} SELECT version FROM written"
        )
        self._insert_new = (
            f"WITH written AS (INSERT INTO {name} (key, version, data, updated_at) "
            "VALUES ($1, 1, $2::text::jsonb, now()) ON CONFLICT (key) DO NOTHING RETURNING key, version), "
            f"{drop} SELECT version FROM written"
        )
        self._update_if = (
            f"WITH written AS (UPDATE {name} SET version = version + 1, data = $2::text::jsonb, "
            "base_version = NULL, updated_at = now() WHERE key = $1 AND version = $3 RETURNING key, version), "
            f"{drop} SELECT version FROM written"
        )
        # the same writes by a writer that knows no patch follows the base (Write.over_patches)
        self._insert_plain = (f"INSERT INTO {name} (key, version, data, updated_at) VALUES ($1, 1, $2::text::jsonb, "
                              "now()) ON CONFLICT (key) DO NOTHING RETURNING version")
        self._update_plain = (f"UPDATE {name} SET version = version + 1, data = $2::text::jsonb, base_version = NULL, "
                              "updated_at = now() WHERE key = $1 AND version = $3 RETURNING version")
        # an append sets only small columns (data keeps its TOAST pointer) and adds a row
        self._append = (
            f"WITH bumped AS (UPDATE {name} SET version = version + 1, base_version = coalesce(base_version, "
            "version), updated_at = now() WHERE key = $1 AND version = $2 RETURNING version) "
            f"INSERT INTO {patches} (key, version, data) SELECT $1, version, $3::text::jsonb FROM bumped "
            "ON CONFLICT (key, version) DO UPDATE SET data = excluded.data RETURNING version"
        )
        self._delete = (
            f"WITH written AS (DELETE FROM {name} WHERE key = $1 RETURNING key) "
            f"DELETE FROM {patches} p USING written WHERE p.key = written.key"
        )
        self._keys = f"SELECT key FROM {name} WHERE left(key, length($1)) = $1"

    async def _create(self, connection: Any) -> None:
        await create_tables(connection, self.schema, [self.table, self.patches_table],
                            state_table_ddl(self.schema, self.table, self.toast_compression), state_table=self.table,
                            where=self._client.where)

    async def _check_tables(self, connection: Any) -> None:
        found = await state_tables(connection, self.schema, self.table)
        if not found.table:
            why = ("a read-only open creates nothing; run `clp migrate` or the application that writes it first"
                   if self.read_only else "create_table=False: run `clp migrate` first")
            raise StorageError(f"no such database table {self.schema}.{self.table} at {self._client.where} "
                               f"({why})", backend=self.name)
        if self.read_only and found.legacy:
            self._select = self._select_unpatched
        elif not found.complete:
            raise StorageError(outdated(self.schema, self.table, found, self._client.where), backend=self.name)

    async def load(self, key: str) -> Document | None:
        return (await self.load_logged(key, PatchLog()))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return await self.load_logged(key, PatchLog())

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        row = await self._run(f"load of {key!r}", lambda c: c.fetchrow(self._select, key))
        if row is None:
            log.loaded(0, ())
            return None, 0
        if len(row) > 4 and row[4]:  # migrated since this read-only open checked
            self._select = self._select_patched
            return await self.load_logged(key, log)
        base, version, base_version = from_jsonb(row[0]), int(row[1]), int(row[2])
        texts = [from_jsonb(text) for text in row[3]]
        if len(texts) != version - base_version:
            raise CorruptStateError(
                f"stored key {key!r} is at version {version} on a base of version {base_version}, but "
                f"{len(texts)} patches follow it in {self.schema}.{self.patches_table}", backend=self.name)
        return patched_document(base, texts, log, key=key, backend=self.name), version

    async def save(self, key: str, document: Document) -> None:
        data = to_jsonb(codec.encode(document))
        await self._run(f"save of {key!r}", lambda c: c.fetchval(self._upsert, key, data))

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        return await self.save_logged(key, Write(codec.encode(document), compacts=True), expected_version)

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        data, expected = to_jsonb(write.text), int(expected_version)
        args: tuple[Any, ...]
        if not write.compacts:
            statement, args = self._append, (key, expected, data)
        elif expected == 0:
            statement, args = self._insert_new if write.over_patches else self._insert_plain, (key, data)
        else:
            statement, args = self._update_if if write.over_patches else self._update_plain, (key, data, expected)
        version = await self._run(f"save of {key!r}", lambda c: c.fetchval(statement, *args))
        if version is None:
            raise ConflictError(f"key {key!r} changed since version {expected_version}"
                                + ("" if write.compacts else " (or has no stored document to patch)"),
                                backend=self.name)
        return int(version)

    async def delete(self, key: str) -> None:
        await self._run(f"delete of {key!r}", lambda c: c.execute(self._delete, key))

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted by code point."""
        rows = await self._run(f"list of keys under {prefix!r}", lambda c: c.fetch(self._keys, prefix))
        return sorted(row[0] for row in rows)
