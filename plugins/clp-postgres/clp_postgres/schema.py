"""The tables: DDL, creation on first use (or by ``clp migrate``)."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]

from clp_core.plugin_api import StorageError

from ._common import BACKEND, check_identifier, lock_key, qualified


def state_table_ddl(schema: str, table: str) -> list[str]:
    name = qualified(schema, table)
    return [
        f"CREATE TABLE IF NOT EXISTS {name} ("
        " key text PRIMARY KEY,"
        " version bigint NOT NULL,"
        " data jsonb NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now())"
    ]


def snapshots_table_name(events_table: str) -> str:
    return check_identifier(f"{events_table}_snapshots", "snapshots table (events table + '_snapshots')")


def event_tables_ddl(schema: str, table: str, snapshots_table: str) -> list[str]:
    events, snapshots = qualified(schema, table), qualified(schema, snapshots_table)
    return [
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
    ]


async def create_tables(connection: Any, schema: str, tables: list[str], ddl: list[str]) -> None:
    """Run ``ddl`` (``CREATE ... IF NOT EXISTS``) in one transaction, serialised across
    processes by an advisory lock (two concurrent ``CREATE TABLE IF NOT EXISTS`` of one
    name can otherwise fail on the catalog's unique index).

    A role without the right to create, whose tables already exist (made by ``clp migrate``
    under an owner role), is fine.
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
