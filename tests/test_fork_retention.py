"""Forks (Runtime.fork, lineage) and retention (clp_core.retention) on the built-in stores;
the same cases run on Redis, PostgreSQL and MongoDB through clp_core.testing.events."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest

import clp_core as clp
from clp_core import retention
from clp_core.errors import ConfigError, HistoryError
from clp_core.events import Event, MemoryEventStore, Snapshot, lineage


def counter() -> clp.Contract:
    return clp.create_contract(
        intents={"add": {"inputs": {"amount": "number"}}},
        transitions={"add": {"when": lambda ctx: True, "effects": lambda ctx: {
            "count": (ctx.state.get("count") or 0) + ctx.intent.payload["amount"]}}})


@pytest.fixture(params=["memory", "sqlite"])
def store(request: Any, tmp_path: Any) -> Any:
    return MemoryEventStore() if request.param == "memory" else clp.SQLiteEventStore(str(tmp_path / "e.db"))


async def test_a_fork_keeps_contract_options_and_its_own_history(store: Any) -> None:
    seen: list[str] = []

    class Spy:
        def after_commit(self, intent: Any, entry: Any) -> None:
            seen.append(intent.name)

    root = clp.create_runtime(counter(), event_store=store, storage_key="acct", snapshot_every=2,
                              initial_state={"count": 0}, middleware=[Spy()])
    for amount in (1, 2, 3):
        await root.execute("add", {"amount": amount})
    child = await root.fork(at=2, key="acct:what-if")
    assert child.options["snapshot_every"] == 2 and child.storage_key == "acct:what-if"
    await child.execute("add", {"amount": 10})
    assert seen == ["add"] * 4  # the middleware came along
    assert child.get_state() == {"count": 13} and root.get_state() == {"count": 6}
    assert [e.seq for e in await store.get_events("acct:what-if")] == [1]
    assert await child.state_at(0) == {"count": 3}
    assert await child.lineage() == [("acct", 2)]
    await child.close()  # borrows the parent's store: closing it leaves the parent working
    await root.execute("add", {"amount": 1})
    # a restarted runtime on the fork's key sees its state and its lineage
    again = clp.create_runtime(counter(), event_store=store, storage_key="acct:what-if", initial_state={"count": 0})
    await again.execute("add", {"amount": 100})
    assert again.get_state() == {"count": 113}
    assert await lineage(store, "acct:what-if") == [("acct", 2)]
    assert (await store.load_snapshot("acct:what-if", 0)).state == {"count": 3}  # not overwritten
    await root.close()


async def test_the_lineage_survives_pruning_the_forks_base_snapshot(store: Any) -> None:
    root = clp.create_runtime(counter(), event_store=store, storage_key="a", snapshot_every=2)
    await root.execute("add", {"amount": 1})
    child = await root.fork(at=1, key="b")
    grandchild = await child.fork(at=0, key="c")
    for amount in (1, 2, 3):
        await grandchild.execute("add", {"amount": amount})
    removal = await retention.prune(store, "c", before=3)
    assert removal.kept_from == 2 and removal.events == 1
    assert await store.load_snapshot("c", 0) is None
    assert await lineage(store, "c") == [("b", 0), ("a", 1)]
    with pytest.raises(HistoryError, match="pruned"):
        await grandchild.state_at(0)
    assert await grandchild.state_at(2) == {"count": 4}


async def test_fork_refusals_write_nothing(store: Any) -> None:
    root = clp.create_runtime(counter(), event_store=store, storage_key="r")
    await root.execute("add", {"amount": 1})
    await store.save_snapshot("only-a-snapshot", Snapshot(0, {"x": 1}))
    for key in ("r", "only-a-snapshot"):
        with pytest.raises(HistoryError):
            await root.fork(at=1, key=key)
    with pytest.raises(HistoryError):
        await root.fork(at=5, key="new")
    with pytest.raises(ConfigError):
        await root.fork(at=1, key="")
    assert await store.load_snapshot("new") is None and await store.aggregates() == ["r"]
    with pytest.raises(ConfigError, match="event_store"):
        await clp.create_runtime(counter()).fork(at=0, key="x")


async def test_retention_dry_runs_change_nothing(store: Any) -> None:
    rt = clp.create_runtime(counter(), event_store=store, storage_key="k", snapshot_every=3)
    for _ in range(7):
        await rt.execute("add", {"amount": 1})
    plan = await retention.prune(store, "k", before=7, dry_run=True)
    assert (plan.events, plan.kept_from, plan.dry_run) == (5, 6, True)
    assert await store.last_seq("k") == 7 and len(await store.get_events("k")) == 7
    assert (await retention.delete(store, "k", dry_run=True)).events == 7
    assert len(await store.get_events("k")) == 7
    with pytest.raises(HistoryError, match="replay would be impossible"):
        await retention.prune(store, "k", before=2)
    assert (await retention.delete(store, "k")).events == 7
    assert await store.aggregates() == []


async def test_delete_a_storage_document_and_list_keys(tmp_path: Any) -> None:
    for adapter in (clp.MemoryAdapter(), clp.FileSystemAdapter(tmp_path), clp.SQLiteAdapter(tmp_path / "s.db")):
        await adapter.save("user:1", {"state": {}})
        await adapter.save("user:2", {"state": {}})
        assert isinstance(adapter, retention.ListableStorage)
        assert await adapter.keys("user:") == ["user:1", "user:2"]
        plan = await retention.delete(adapter, "user:1", dry_run=True)
        assert (plan.kind, plan.documents, plan.removed_anything) == ("document", 1, True)
        assert (await retention.delete(adapter, "user:1")).documents == 1
        assert (await retention.delete(adapter, "user:1")).documents == 0
        assert await adapter.keys() == ["user:2"]
        await adapter.close()
    with pytest.raises(ConfigError):
        await retention.delete(object(), "x")


async def test_prune_sagas_deletes_only_finished_old_saga_streams() -> None:
    store = MemoryEventStore()
    rt = clp.create_runtime(counter(), event_store=store, storage_key="acct")
    saga = clp.Saga(name="s", steps={"one": clp.Step(intent="add", payload={"amount": 1})})
    done = await rt.run_saga(saga, saga_id="done")
    assert done.status == "completed"
    old = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=2)).isoformat()
    await store.append(Event("saga:acct:running", 1, "saga_started", timestamp=old,
                             data={"saga": "s", "aggregate": "acct"}), 0)
    assert await retention.prune_sagas(store, older_than=3600) == []  # "done" finished just now
    plan = await retention.prune_sagas(store, older_than=0, key="acct", dry_run=True)
    assert [r.key for r in plan] == ["saga:acct:done"]
    assert [r.key for r in await retention.prune_sagas(store, older_than=0)] == ["saga:acct:done"]
    assert await store.aggregates() == ["acct", "saga:acct:running"]
    with pytest.raises(ConfigError):
        await retention.prune_sagas(store, older_than=-1)
