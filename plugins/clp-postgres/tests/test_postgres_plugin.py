"""The plugin: entry point, URL schemes and their options, ``clp migrate``."""

from __future__ import annotations

from typing import Any

import asyncpg
import clp_postgres.plugin
import pytest
from clp_postgres import PostgresAdapter, PostgresEventStore
from clp_postgres.testing import run_sync
from typer.testing import CliRunner

from clp_core.cli import build_app, plugin_rows
from clp_core.errors import ConfigError
from clp_core.resolve import resolve_event_store, resolve_storage
from clp_core.testing.plugins import PluginSuite


class TestPostgresPluginConformance(PluginSuite):
    test_a_refusal_changes_nothing = None  # it has no before_* hook: it never refuses

    def make_plugin(self) -> Any:
        return clp_postgres.plugin


def test_plugin_is_discovered_with_its_hooks() -> None:
    (row,) = [r for r in plugin_rows() if r["name"] == "clp-postgres"]
    assert row["distribution"] == "clp-postgres" and row["version"] == "0.2.0" and row["enabled"]
    assert {"register_storage", "register_event_stores", "register_commands"} <= set(row["hooks"])


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_urls_resolve_to_the_adapter_and_the_event_store(scheme: str) -> None:
    url = f"{scheme}://app:pw@db.example:6543/prod?table=orders&schema=shop&min_size=0&max_size=3&sslmode=disable"
    adapter = resolve_storage(url)
    assert isinstance(adapter, PostgresAdapter)
    assert (adapter.table, adapter.schema) == ("orders", "shop")
    assert adapter._client.min_size == 0 and adapter._client.max_size == 3
    assert "table=" not in adapter.dsn and "sslmode=disable" in adapter.dsn  # ours taken out, asyncpg's kept
    store = resolve_event_store(url)
    assert isinstance(store, PostgresEventStore)
    assert (store.table, store.snapshots_table, store.schema) == ("orders", "orders_snapshots", "shop")
    plain = resolve_storage(f"{scheme}://localhost/db")
    assert (plain.table, plain.schema) == ("clp_state", "public")
    assert resolve_event_store(f"{scheme}://localhost/db").table == "clp_events"


def test_url_with_a_bad_table_is_refused() -> None:
    with pytest.raises(ConfigError):
        resolve_storage("postgresql://localhost/db?table=x;%20DROP%20TABLE%20y")
    with pytest.raises(ConfigError):
        resolve_storage("postgresql://localhost/db?max_size=lots")


async def _tables(dsn: str, schema: str, names: list[str]) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name = ANY($2)",
            schema, names)
        return sorted(r["table_name"] for r in rows)
    finally:
        await connection.close()


def test_clp_migrate_creates_the_tables(pg_dsn: str, names: Any) -> None:
    state, events = names.table(), names.table("clp_e")
    runner = CliRunner()
    result = runner.invoke(build_app(), ["migrate", pg_dsn, "--table", state, "--events-table", events])
    assert result.exit_code == 0, result.output
    assert f"public.{state}" in result.output and f"public.{events}_snapshots" in result.output
    expected = sorted([state, f"{state}_patches", events, f"{events}_snapshots"])
    assert run_sync(_tables(pg_dsn, "public", expected)) == expected
    again = runner.invoke(build_app(), ["migrate", pg_dsn, "--table", state, "--events-table", events])
    assert again.exit_code == 0, again.output  # idempotent


def test_clp_migrate_in_a_schema_then_adapters_without_create(pg_dsn: str, names: Any) -> None:
    schema, state = names.schema(), names.table()
    result = CliRunner().invoke(build_app(), ["migrate", pg_dsn, "--table", state, "--schema", schema, "--no-events"])
    assert result.exit_code == 0, result.output
    assert run_sync(_tables(pg_dsn, schema, [state, f"{state}_patches"])) == [state, f"{state}_patches"]

    async def use() -> Any:
        adapter = PostgresAdapter(pg_dsn, table=state, schema=schema, create_table=False)
        try:
            await adapter.save("k", {"x": 1})
            return await adapter.load("k")
        finally:
            await adapter.close()

    assert run_sync(use()) == {"x": 1}


@pytest.mark.parametrize("option", ["--table", "--schema", "--events-table"])
def test_clp_migrate_refuses_bad_identifiers(pg_dsn: str, names: Any, option: str) -> None:
    victim = names.table("y")
    result = CliRunner().invoke(build_app(), ["migrate", pg_dsn, option, f"x; DROP TABLE {victim}"])
    assert result.exit_code == 1
    assert "not a plain identifier" in result.output


def test_clp_migrate_reports_an_unreachable_server() -> None:
    from clp_postgres.testing import free_port

    result = CliRunner().invoke(build_app(), ["migrate", f"postgresql://postgres@127.0.0.1:{free_port()}/x"])
    assert result.exit_code == 1
    assert "[postgresql]" in result.output


def test_clp_migrate_is_in_the_help() -> None:
    result = CliRunner().invoke(build_app(), ["migrate", "--help"])
    assert result.exit_code == 0
    assert "--table" in result.output and "--schema" in result.output
