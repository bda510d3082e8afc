"""Fixtures of clp-postgres' tests: the shared server (skip, or fail under --require-services,
when it is down), fresh table names dropped afterwards, a private cluster a test may stop."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest
from clp_postgres.testing import PostgresCluster, find_server_binaries, run_sync

from clp_core.testing.pytest_plugin import service_unavailable

SHARED_DSN = os.environ.get("CLP_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SHARED_NAME = "PostgreSQL at 127.0.0.1:5432"

_reachable: bool | None = None


async def _probe(dsn: str) -> bool:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await connection.close()
    return True


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """The shared server's DSN; the test is skipped (or failed) when it is unreachable."""
    global _reachable
    if _reachable is None:
        _reachable = run_sync(_probe(SHARED_DSN))
    if not _reachable:
        service_unavailable(request.config, SHARED_NAME)
    return SHARED_DSN


async def drop_tables(dsn: str, names: list[str], schemas: list[str]) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        for name in names:
            for table in (name, f"{name}_snapshots", f"{name}_patches"):
                await connection.execute(f'DROP TABLE IF EXISTS "public"."{table}"')
        for schema in schemas:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


class Names:
    """Fresh table and schema names for one test; all dropped when it ends."""

    def __init__(self) -> None:
        self.tables: list[str] = []
        self.schemas: list[str] = []

    def table(self, prefix: str = "clp_t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        self.tables.append(name)
        return name

    def schema(self) -> str:
        name = f"clp_s_{uuid.uuid4().hex[:16]}"
        self.schemas.append(name)
        return name


@pytest.fixture
def names(pg_dsn: str) -> Iterator[Names]:
    created = Names()
    yield created
    run_sync(drop_tables(pg_dsn, created.tables, created.schemas))


@pytest.fixture
def table(names: Names) -> str:
    """A table name of this test alone (``clp_t_<hex>``), dropped afterwards."""
    return names.table()


@pytest.fixture
def private_cluster(request: pytest.FixtureRequest) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test alone (initdb in a temporary folder, a free port),
    which the test may stop and start; destroyed afterwards. The shared server is untouched."""
    if find_server_binaries() is None:
        service_unavailable(request.config, "PostgreSQL server binaries (initdb, postgres)")
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def counter_contract() -> Callable[[], object]:
    import clp_core as clp

    def make() -> object:
        return clp.create_contract(
            intents={"increment": {"inputs": {"amount": "number?"}}},
            state={"count": "number"},
            transitions={"apply": {"effects": lambda ctx: {
                "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}},
        )

    return make
