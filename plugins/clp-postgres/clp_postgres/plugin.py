"""The ``clp-postgres`` plugin: ``postgresql://`` and ``postgres://`` storage and event store
URLs, and the ``clp migrate`` command.

URL query parameters ``table``, ``schema``, ``min_size`` and ``max_size`` are the
adapter's (``postgresql://app@db/prod?table=orders_state``); the others go to asyncpg.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clp_core.plugin_api import ClpError, hookimpl

name = "clp-postgres"

SCHEMES = ("postgresql", "postgres")


def storage_from_url(url: str) -> Any:
    from ._common import split_url, url_kwargs  # asyncpg is imported when a URL asks for it
    from .adapter import PostgresAdapter

    dsn, options = split_url(url)
    return PostgresAdapter(dsn, **url_kwargs(options))


def event_store_from_url(url: str) -> Any:
    from ._common import split_url, url_kwargs
    from .events import PostgresEventStore

    dsn, options = split_url(url)
    return PostgresEventStore(dsn, **url_kwargs(options))


@hookimpl
def register_storage() -> dict[str, Any]:
    return dict.fromkeys(SCHEMES, storage_from_url)


@hookimpl
def register_event_stores() -> dict[str, Any]:
    return dict.fromkeys(SCHEMES, event_store_from_url)


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    @cli.command("migrate")  # type: ignore[untyped-decorator]
    def migrate_command(
        dsn: str = typer.Argument(..., help="postgresql://user@host:5432/database"),
        table: str = typer.Option(None, "--table", help="State table (default clp_state)."),
        schema: str = typer.Option(None, "--schema", help="Schema (default public; created if missing)."),
        events_table: str = typer.Option(
            None, "--events-table", help="Events table (default clp_events; snapshots go to <it>_snapshots)."),
        no_events: bool = typer.Option(False, "--no-events", help="Only the state table."),
        toast_compression: str = typer.Option(
            None, "--toast-compression",
            help="Compression of the big data columns: lz4 (default, where the server has it), pglz, default."),
    ) -> None:
        """Create CLP's PostgreSQL tables (state and its patches, events, snapshots) if they do not
        exist, and bring a state table made by an older clp-postgres up to date."""
        from ._common import split_url
        from .migrate import migrate

        url, options = split_url(dsn)
        try:
            created = asyncio.run(migrate(
                url,
                table=table or options.get("table", "clp_state"),
                schema=schema or options.get("schema", "public"),
                events_table=None if no_events else (events_table or "clp_events"),
                toast_compression=toast_compression or options.get("toast_compression"),
            ))
        except ClpError as exc:
            typer.echo(f"clp migrate: {exc}", err=True)
            raise typer.Exit(1) from None
        for qualified_name in created:
            typer.echo(f"ready: {qualified_name}")
