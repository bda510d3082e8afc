"""The tables: DDL, creation on first use (or by ``clp migrate``)."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
import attrs

from clp_core.plugin_api import StorageError

from ._common import BACKEND, DEFAULT_TOAST_COMPRESSION, check_identifier, check_toast_compression, lock_key, qualified


def patches_table_name(table: str) -> str:
    return check_identifier(f"{table}_patches", "patches table (state table + '_patches')")


def state_table_ddl(schema: str, table: str, toast_compression: str = DEFAULT_TOAST_COMPRESSION, *,
                    existing: bool = False) -> list[str]:
    """The state table (``version`` is the head version; ``base_version`` that of ``data``,
    NULL when no patch follows it) and its patches table, ``(key, version)`` each. A state
    table made before patches (no ``base_version``) gets the column (a catalog-only change).
    Its ``data`` column gets ``toast_compression`` when the table is made here, or, with
    ``existing`` (``clp migrate``), when it exists already (see :func:`compression_ddl`)."""
    name, patches = qualified(schema, table), qualified(schema, patches_table_name(table))
    regclass = f"'{name}'::regclass"
    return [
        new_table_flag("clp.new_state", name),
        f"CREATE TABLE IF NOT EXISTS {name} ("
        " key text PRIMARY KEY,"
        " version bigint NOT NULL,"
        " data jsonb NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now(),"
        " base_version bigint)",
        f"CREATE TABLE IF NOT EXISTS {patches} ("
        " key text NOT NULL,"
        " version bigint NOT NULL,"
        " data jsonb NOT NULL,"
        " PRIMARY KEY (key, version))",
        # only when missing: ALTER TABLE locks the table even with IF NOT EXISTS
        f"DO $$ BEGIN IF NOT EXISTS ({has_base_version(regclass)}) "
        f"THEN ALTER TABLE {name} ADD COLUMN base_version bigint; END IF; END $$",
        compression_ddl(name, toast_compression, None if existing else "clp.new_state"),
    ]


def new_table_flag(flag: str, name: str) -> str:
    """Remember, for the rest of the transaction, whether table ``name`` is missing (so about to
    be made by the DDL after this statement)."""
    return f"SELECT set_config('{flag}', (to_regclass('{name}') IS NULL)::text, true)"


#: pg_attribute.attcompression of each method ('' : the server's default_toast_compression)
_COMPRESSION_CODES = {"lz4": "l", "pglz": "p", "default": ""}


def compression_ddl(name: str, method: str, new_only: str | None) -> str:
    """Give ``name``'s ``data`` column the compression ``method`` where the server has it
    (PostgreSQL 14 and later; lz4 where it was built with it) and the column has another.
    With ``new_only`` (a :func:`new_table_flag`), only to a table this transaction made: an
    application's first use never alters a table that exists (the ALTER takes the table's
    ACCESS EXCLUSIVE lock), ``clp migrate`` does. Values stored keep their method."""
    check_toast_compression(method)
    regclass = f"'{name}'::regclass"
    made_here = f"current_setting('{new_only}', true) = 'true' AND " if new_only else ""
    # the inner IF is planned only when reached: attcompression is new in PostgreSQL 14
    return (f"DO $$ BEGIN IF {made_here}EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            f"AND '{method}' = ANY(enumvals || ARRAY['default'])) THEN "
            f"IF (SELECT attcompression::text FROM pg_attribute WHERE attrelid = {regclass} AND attname = 'data') "
            f"IS DISTINCT FROM '{_COMPRESSION_CODES[method]}' THEN "
            f"ALTER TABLE {name} ALTER COLUMN data SET COMPRESSION {method}; END IF; END IF; END $$")


def has_base_version(regclass: str) -> str:
    return (f"SELECT 1 FROM pg_attribute WHERE attrelid = {regclass} AND attname = 'base_version' "
            "AND NOT attisdropped")


@attrs.frozen
class StateTables:
    """What exists of a state table's schema: the table, its ``base_version`` column, its
    patches table."""

    table: bool
    base_version: bool
    patches: bool

    @property
    def complete(self) -> bool:
        return self.table and self.base_version and self.patches

    @property
    def legacy(self) -> bool:
        """Made by a clp-postgres without patches (readable as it is: nothing is patched)."""
        return self.table and not self.base_version and not self.patches


async def state_tables(connection: Any, schema: str, table: str) -> StateTables:
    name, patches = qualified(schema, table), qualified(schema, patches_table_name(table))
    row = await connection.fetchrow(
        f"SELECT to_regclass($1) IS NOT NULL, EXISTS ({has_base_version('to_regclass($1)')}), "
        "to_regclass($2) IS NOT NULL", name, patches)
    return StateTables(*row)


def outdated(schema: str, table: str, found: StateTables, where: str) -> str:
    """What to say of a state table made by an older clp-postgres (or half migrated)."""
    missing = [part for part, present in (("base_version column", found.base_version),
                                          (f"{patches_table_name(table)} table", found.patches)) if not present]
    return (f"database table {schema}.{table} at {where} was made by an older clp-postgres (no "
            f"{' and no '.join(missing)}): run `clp migrate <dsn> --table {table} --schema {schema}` "
            "as a role that may alter it (or open it once with create_table=True)")


def snapshots_table_name(events_table: str) -> str:
    return check_identifier(f"{events_table}_snapshots", "snapshots table (events table + '_snapshots')")


def event_tables_ddl(schema: str, table: str, snapshots_table: str,
                     toast_compression: str = DEFAULT_TOAST_COMPRESSION, *, existing: bool = False) -> list[str]:
    """The events and snapshots tables; the snapshots' ``data`` (a whole state) gets
    ``toast_compression`` as the state table's does (see :func:`state_table_ddl`)."""
    events, snapshots = qualified(schema, table), qualified(schema, snapshots_table)
    return [
        new_table_flag("clp.new_snapshots", snapshots),
        f"CREATE TABLE IF NOT EXISTS {events} ("
        " aggregate_id text NOT NULL,"
        " seq bigint NOT NULL CHECK (seq > 0),"
        " data jsonb NOT NULL,"
        " recorded_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (aggregate_id, seq))",
        f"CREATE TABLE IF NOT EXISTS {snapshots} ("
        " aggregate_id text NOT NULL,"
        " seq bigint NOT NULL,"
        " data jsonb NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (aggregate_id, seq))",
        compression_ddl(snapshots, toast_compression, None if existing else "clp.new_snapshots"),
    ]


async def create_tables(connection: Any, schema: str, tables: list[str], ddl: list[str], *,
                        state_table: str | None = None, where: str = "") -> None:
    """Run ``ddl`` (``CREATE ... IF NOT EXISTS``) in one transaction, serialised across
    processes by an advisory lock (two concurrent ``CREATE TABLE IF NOT EXISTS`` of one
    name can otherwise fail on the catalog's unique index).

    A role without the right to create, whose tables already exist (made by ``clp migrate``
    under an owner role), is fine; ``state_table`` must then have its ``base_version`` column.
    """
    script = [f"SELECT pg_advisory_xact_lock({lock_key(schema, *tables)})"]
    if schema != "public":
        script.append(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    script.extend(ddl)
    try:
        async with connection.transaction():
            await connection.execute(";\n".join(script))
    except asyncpg.InsufficientPrivilegeError as exc:
        missing = [t for t in tables
                   if await connection.fetchval("SELECT to_regclass($1) IS NULL", qualified(schema, t))]
        if missing:
            raise StorageError(
                f"cannot create {', '.join(f'{schema}.{t}' for t in missing)}: {exc}; "
                "run `clp migrate <dsn>` as a role that may create tables", backend=BACKEND) from exc
        if state_table is not None:
            found = await state_tables(connection, schema, state_table)
            if not found.complete:
                raise StorageError(outdated(schema, state_table, found, where), backend=BACKEND) from exc
