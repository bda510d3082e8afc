"""``clp outbox``, ``clp prune``, ``clp delete`` and the lineage line of ``clp history``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("typer")

from typer.testing import CliRunner

import clp_core as clp
from clp_core.cli import build_app


def _contract() -> clp.Contract:
    return clp.create_contract(
        intents={"pay": {"inputs": {"amount": "number"}}},
        transitions={"charge": {
            "effects": lambda ctx: {"paid": (ctx.state.get("paid") or 0) + ctx.intent.payload["amount"]},
            "emit": lambda ctx: [("paid", {"amount": ctx.intent.payload["amount"]})]}},
    )


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(build_app(), args, env={"COLUMNS": "200"})


def _fill(tmp_path: Path, **options: Any) -> None:
    async def fill() -> None:
        async with clp.create_runtime(_contract(), storage_key="w", delivery_attempts=1, **options) as runtime:
            for amount in (5, 7):
                await runtime.execute("pay", {"amount": amount})
            await runtime.drain()

    asyncio.run(fill())


def test_outbox_lists_undelivered_messages_of_a_document_and_of_a_stream(tmp_path: Path) -> None:
    _fill(tmp_path, storage=f"sqlite:///{tmp_path}/state.db")
    table = _run(["outbox", f"sqlite:///{tmp_path}/state.db", "w"])
    assert table.exit_code == 0, table.output
    assert "2 undelivered" in table.output and "failed after 1 tries" in table.output and "no handler" in table.output
    listed = json.loads(_run(["outbox", f"sqlite:///{tmp_path}/state.db", "w", "--json"]).output)
    assert [m["payload"] for m in listed] == [{"amount": 5}, {"amount": 7}]
    _fill(tmp_path, event_store=f"sqlite:///{tmp_path}/events.db")
    streamed = json.loads(_run(["outbox", f"sqlite:///{tmp_path}/events.db", "w", "--events", "--json"]).output)
    assert [m["topic"] for m in streamed] == ["paid", "paid"]


def test_outbox_of_a_missing_key_says_so(tmp_path: Path) -> None:
    _fill(tmp_path, storage=f"sqlite:///{tmp_path}/state.db")
    result = _run(["outbox", f"sqlite:///{tmp_path}/state.db", "nope"])
    assert result.exit_code == 1 and "nothing stored under key 'nope'" in result.output


def test_prune_and_delete_with_a_dry_run_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"

    async def fill() -> None:
        async with clp.create_runtime(_contract(), storage_key="w", event_store=url, snapshot_every=2,
                                      handlers={"paid": lambda m: None}) as runtime:
            for amount in range(1, 6):
                await runtime.execute("pay", {"amount": amount})

    asyncio.run(fill())
    dry = json.loads(_run(["prune", url, "w", "--before", "4", "--dry-run", "--json"]).output)
    assert dry["dry_run"] and dry["events"] == 3 and dry["kept_from"] == 4
    assert "removed 3 events; replay starts at snapshot 4" in _run(["prune", url, "w", "--before", "4"]).output
    assert json.loads(_run(["state", url, "w", "--json"]).output) == {"paid": 15}
    assert "would remove 2 events" in _run(["delete", url, "w", "--events", "--dry-run"]).output
    assert "removed 2 events" in _run(["delete", url, "w", "--events"]).output
    storage = f"sqlite:///{tmp_path}/state.db"
    _fill(tmp_path, storage=storage)
    assert "removed 1 document" in _run(["delete", storage, "w"]).output
    assert _run(["outbox", storage, "w"]).exit_code == 1


def test_history_names_the_parent_of_a_fork(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"

    async def fork() -> None:
        async with clp.create_runtime(_contract(), storage_key="chat:1", event_store=url,
                                      handlers={"paid": lambda m: None}) as runtime:
            for amount in (1, 2, 3):
                await runtime.execute("pay", {"amount": amount})
            child = await runtime.fork(at=2, key="chat:2")
            await child.execute("pay", {"amount": 10})
            await child.drain()

    asyncio.run(fork())
    output = _run(["history", url, "chat:2"]).output
    assert "forked from chat:1@2" in output
