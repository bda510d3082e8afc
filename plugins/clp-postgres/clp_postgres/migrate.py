"""``clp migrate``: create the tables ahead of time (as a role that may create them)."""

from __future__ import annotations

from typing import Any


async def migrate(
    dsn: str,
    *,
    table: str = "clp_state",
    schema: str = "public",
    events_table: str | None = "clp_events",
    toast_compression: str | None = None,
) -> list[str]:
    """Create the state table ``schema.table`` and its ``schema.<table>_patches`` (or give a
    state table made by an older version its ``base_version`` column and patches table) and,
    unless ``events_table`` is None, the event tables ``schema.events_table`` and
    ``schema.<events_table>_snapshots`` (``CREATE ... IF NOT EXISTS``: running it again is
    harmless); their big ``data`` columns, new or not, get ``toast_compression`` (None: lz4;
    an ALTER, which takes each table's lock, where the column has another). Returns the tables."""
    # asyncpg loads here, not when the package is imported (the package exports this function)
    from ._common import DEFAULT_TOAST_COMPRESSION, PoolClient, check_identifier
    from .schema import create_tables, event_tables_ddl, patches_table_name, snapshots_table_name, state_table_ddl

    toast_compression = DEFAULT_TOAST_COMPRESSION if toast_compression is None else toast_compression
    schema = check_identifier(schema, "schema")
    table = check_identifier(table, "table")
    tables, ddl = [table, patches_table_name(table)], state_table_ddl(schema, table, toast_compression, existing=True)
    if events_table is not None:
        events_table = check_identifier(events_table, "events table")
        snapshots = snapshots_table_name(events_table)
        tables += [events_table, snapshots]
        ddl += event_tables_ddl(schema, events_table, snapshots, toast_compression, existing=True)
    client = PoolClient(dsn, min_size=1, max_size=1)

    async def run(connection: Any) -> None:
        await create_tables(connection, schema, tables, ddl, state_table=table, where=client.where)

    try:
        await client.run("migrate", run)
    finally:
        await client.close()
    return [f"{schema}.{t}" for t in tables]
