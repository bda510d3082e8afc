"""``clp state``, ``clp history``, ``clp outbox`` and ``resolve_*(read_only=True)`` create
nothing: a missing database, folder or table is a clear error, writes are refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("typer")

from typer.testing import CliRunner

from clp_core.cli import build_app
from clp_core.errors import ClpError, StorageError
from clp_core.resolve import resolve_event_store, resolve_storage, with_read_only
from clp_core.storage import FileSystemAdapter, SQLiteAdapter
from clp_core.storage.sqlite_events import SQLiteEventStore


def _run(args: list[str], cwd: Path) -> Any:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(build_app(), args, env={"COLUMNS": "200"})
    finally:
        os.chdir(old)


@pytest.mark.parametrize("args", [
    ["state", "sqlite:///nope.db", "k"],
    ["history", "sqlite:///nope.db", "k"],
    ["outbox", "sqlite:///nope.db", "k"],
    ["outbox", "--events", "sqlite:///nope.db", "k"],
    ["outbox", "file:///{tmp}/nodir", "k"],
])
def test_a_missing_database_is_an_error_and_nothing_is_created(tmp_path: Path, args: list[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _run(args, tmp_path)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("clp: error: "), result.stderr
    assert "no such database" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no nope.db, no -wal/-shm, no folder


@pytest.mark.parametrize("command", [["state"], ["history"], ["outbox", "--events"]])
def test_an_sqlite_file_without_clp_tables_is_left_alone(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    result = _run([*command, "sqlite:///other.db", "k"], tmp_path)
    assert result.exit_code == 1, result.output
    assert "no table clp_events" in result.stderr
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"unrelated"}


def test_outbox_of_a_storage_file_without_clp_state_is_left_alone(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    result = _run(["outbox", "sqlite:///other.db", "k"], tmp_path)
    assert result.exit_code == 1 and "no table clp_state" in result.stderr


def test_the_url_option_and_the_resolver_open_read_only(tmp_path: Path) -> None:
    assert with_read_only("sqlite:////abs/x.db") == "sqlite:////abs/x.db?mode=ro"
    assert with_read_only("redis://h/0?prefix=a&mode=rw") == "redis://h/0?prefix=a&mode=ro"
    db = tmp_path / "app.db"

    async def scenario() -> None:
        writer = SQLiteAdapter(db)
        await writer.save("k", {"state": {"n": 1}})
        await writer.close()
        for reader in (resolve_storage(f"sqlite:///{db}", read_only=True),
                       resolve_storage(f"sqlite:///{db}?mode=ro")):
            assert reader.read_only
            assert await reader.load("k") == {"state": {"n": 1}}
            with pytest.raises(StorageError, match="read-only"):
                await reader.save("k", {"state": {}})
            with pytest.raises(StorageError, match="read-only"):
                await reader.delete("k")
            await reader.close()
        store = resolve_event_store(f"sqlite:///{tmp_path}/events.db", read_only=True)
        with pytest.raises(StorageError, match="no such database"):
            await store.last_seq("k")
        await store.close()
        folder = FileSystemAdapter(tmp_path / "docs", read_only=True)
        with pytest.raises(StorageError, match="no such database"):
            await folder.load("k")

    asyncio.run(scenario())
    assert not (tmp_path / "events.db").exists() and not (tmp_path / "docs").exists()


def test_read_only_event_store_refuses_writes(tmp_path: Path) -> None:
    from clp_core.events import Event

    async def scenario() -> None:
        writable = SQLiteEventStore(str(tmp_path / "e.db"))
        await writable.last_seq("k")  # creates the tables
        await writable.close()
        store = SQLiteEventStore(str(tmp_path / "e.db"), read_only=True)
        assert await store.last_seq("k") == 0
        for call in (lambda: store.append(Event(aggregate_id="k", seq=1, kind="x"), 0),
                     lambda: store.prune("k", 1), lambda: store.delete("k")):
            with pytest.raises(ClpError, match="read-only"):
                await call()
        await store.close()

    asyncio.run(scenario())


def test_a_factory_that_ignores_read_only_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageError, match="cannot open read-only"):
        resolve_storage("memory://", read_only=True)
    with pytest.raises(StorageError, match="not read-only"):
        resolve_storage(SQLiteAdapter(":memory:"), read_only=True)
