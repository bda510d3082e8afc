"""LiveInspector: what a runtime that opts in publishes for `clp inspect` (its pending intent,
staged proposal, recent denials, errors and replays), and that publishing never hurts it."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
from pathlib import Path
from typing import Any

import pytest
from clp_inspect import INDEX_KEY, LiveInspector, StoreReader, live_key
from clp_inspect._live import jsonable

import clp_core as clp
from clp_core.config import PluginConfig
from clp_core.plugins import plugin_statuses

KEY = "order:7"

contract = clp.create_contract(
    intents={"order": {"inputs": {"item": "string", "qty": "number", "note": "string?"}},
             "pay": {"inputs": {"ref": "string"}}},
    guards=[{"name": "max_qty", "deny": lambda ctx: (ctx.intent.payload.get("qty") or 0) > 5,
             "suggest": lambda ctx: {"qty": 5}}],
    transitions={
        "order": {"when": lambda ctx: ctx.intent.name == "order",
                  "effects": lambda ctx: {f"items.{ctx.intent.payload['item']}": ctx.intent.payload["qty"]}},
        "pay": {"when": lambda ctx: ctx.intent.name == "pay",
                "effects": lambda ctx: {"paid": ctx.intent.payload["ref"]},
                "idempotency_key": lambda ctx: ctx.intent.payload["ref"]},
    },
)


def provider(intent: clp.Intent) -> dict[str, Any]:
    return {"note": "<b>gift wrap</b>"}


async def document(storage: Any, key: str = KEY) -> dict[str, Any]:
    found = await storage.load(live_key(key))
    assert isinstance(found, dict)
    return found


def entry(doc: dict[str, Any], inspector: LiveInspector) -> dict[str, Any]:
    return doc["runtimes"][inspector.runtime_id]  # type: ignore[no-any-return]


async def test_it_follows_the_pending_intent_and_the_staged_proposal() -> None:
    storage = clp.MemoryAdapter()
    inspector = LiveInspector(storage, KEY, initial_state={"items": {}})
    async with clp.create_runtime(contract, provider, storage_key=KEY, initial_state={"items": {}},
                                  middleware=[inspector]) as runtime:
        await runtime.dispatch("order", {"item": "tea", "qty": 2})
        live = entry(await document(storage), inspector)
        assert live["pending_intent"]["name"] == "order"
        assert live["pending_intent"]["payload"] == {"item": "tea", "qty": 2}
        assert live["staged_proposal"] is None

        await runtime.propose("order")
        live = entry(await document(storage), inspector)
        assert live["staged_proposal"]["values"] == {"note": "<b>gift wrap</b>"}
        assert live["staged_proposal"]["source"] == "ai"

        await runtime.accept_proposal("order")
        live = entry(await document(storage), inspector)
        assert live["pending_intent"]["payload"] == {"item": "tea", "qty": 2, "note": "<b>gift wrap</b>"}
        assert live["pending_intent"]["source"] == "ai" and live["staged_proposal"] is None

        await runtime.commit()
        doc = await document(storage)
        live = entry(doc, inspector)
        assert live["pending_intent"] is None and live["staged_proposal"] is None and live["closed"] is None
        assert doc["initial_state"] == {"items": {}} and doc["storage_key"] == KEY
        assert await storage.load(INDEX_KEY) == {"format": "clp-inspect/1", "keys": [KEY]}
    assert entry(await document(storage), inspector)["closed"] is not None  # on_close said so


async def test_denials_errors_and_replays_are_recorded_once_each() -> None:
    storage = clp.MemoryAdapter()
    inspector = LiveInspector(storage, KEY)
    async with clp.create_runtime(contract, storage_key=KEY, middleware=[inspector]) as runtime:
        await runtime.dispatch("order", {"item": "tea", "qty": 9})
        with pytest.raises(clp.errors.GuardDeniedError):
            await runtime.commit()  # denied; the guard's suggestion is staged
        live = entry(await document(storage), inspector)
        assert live["staged_proposal"]["values"] == {"qty": 5}
        assert live["staged_proposal"]["source"] == "guard:max_qty"
        await runtime.reject_proposal("order")
        assert entry(await document(storage), inspector)["staged_proposal"] is None

        await runtime.dispatch("order", {"item": "tea", "qty": 1})
        with pytest.raises(clp.errors.ClpError, match="No matching transition"):
            await runtime.commit("pay")  # commit(): on_error first, then the log entry
        with pytest.raises(clp.errors.ClpError, match="No matching transition"):
            await runtime.execute("order", {"item": "tea", "qty": 1}, transition="pay")  # execute(): the other order
        with pytest.raises(clp.errors.ClpError, match="Unknown intent"):
            await runtime.dispatch("refund", {})  # not logged: on_error only

        await runtime.execute("pay", {"ref": "r-1"})
        await runtime.execute("pay", {"ref": "r-1"})  # answered from its idempotency record

    recent = entry(await document(storage), inspector)["recent"]
    assert [r["kind"] for r in recent] == ["denial", "error", "error", "error", "replay"]
    denial, commit_error, execute_error, unknown, replay = recent
    assert denial["denied_guard"] == "max_qty" and denial["suggestion"] == {"qty": 5}
    assert denial["guard_outcomes"] == [{"name": "max_qty", "denied": True}]
    assert denial["intent_payload"] == {"item": "tea", "qty": 9}
    for record in (commit_error, execute_error):
        assert record["intent_name"] == "order" and record["phase"] == "commit"
        assert record["error"] == "NoMatchingTransitionError: No matching transition"
    assert unknown["phase"] == "dispatch" and unknown["intent_name"] is None
    assert unknown["error"] == "UnknownIntentError: Unknown intent refund"
    assert replay["intent_name"] == "pay" and replay["idempotency_key"] == "r-1"


async def test_runtimes_of_one_key_share_the_document(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    inspectors = [LiveInspector(url, KEY) for _ in range(3)]
    runtimes = [clp.create_runtime(contract, storage_key=KEY, middleware=[i]) for i in inspectors]

    async def work(runtime: clp.Runtime, n: int) -> None:
        for qty in range(1, 4):
            await runtime.dispatch("order", {"item": f"item{n}", "qty": qty})

    await asyncio.gather(*(work(r, n) for n, r in enumerate(runtimes)))
    for runtime in runtimes:
        await runtime.close()
    reader = StoreReader(url)
    try:
        live = await reader.live(KEY)
        assert live is not None
        assert set(live["runtimes"]) == {i.runtime_id for i in inspectors}  # compare-and-set: nobody lost
        for n, inspector in enumerate(inspectors):
            assert live["runtimes"][inspector.runtime_id]["pending_intent"]["payload"] == {"item": f"item{n}", "qty": 3}
        assert await reader.live_keys() == [KEY]
    finally:
        await reader.close()


class BrokenStorage(clp.MemoryAdapter):
    async def save(self, key: str, document: Any) -> None:
        raise OSError("disk on fire")

    async def save_versioned(self, key: str, document: Any, expected_version: int) -> int:
        raise OSError("disk on fire")


async def test_a_failure_to_publish_never_reaches_the_runtime(caplog: pytest.LogCaptureFixture) -> None:
    inspector = LiveInspector(BrokenStorage(), KEY)
    errors: list[Any] = []

    class Watch:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append((phase, error))

    with caplog.at_level(logging.WARNING, logger="clp.inspect"):
        async with clp.create_runtime(contract, storage_key=KEY, middleware=[inspector, Watch()]) as runtime:
            await runtime.execute("order", {"item": "tea", "qty": 1})
            assert runtime.get_state("items.tea") == 1
    assert inspector.failures >= 1
    assert "disk on fire" in caplog.text
    assert errors == []  # nothing the runtime has to hear about


async def test_a_runtime_that_did_nothing_writes_nothing() -> None:
    storage = clp.MemoryAdapter()
    async with clp.create_runtime(contract, storage_key=KEY, middleware=[LiveInspector(storage, KEY)]):
        pass
    assert await storage.load(live_key(KEY)) is None and await storage.load(INDEX_KEY) is None


async def test_stale_runtimes_are_dropped() -> None:
    storage = clp.MemoryAdapter()
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    await storage.save(live_key(KEY), {"runtimes": {
        "gone": {"id": "gone", "updated": old, "closed": old},
        "killed": {"id": "killed", "updated": old, "closed": None},
        "recent": {"id": "recent", "updated": dt.datetime.now(dt.UTC).isoformat(), "closed": None},
        "junk": "not an entry",
    }})
    inspector = LiveInspector(storage, KEY)
    async with clp.create_runtime(contract, storage_key=KEY, middleware=[inspector]) as runtime:
        await runtime.dispatch("order", {"item": "tea", "qty": 1})
    assert set((await document(storage))["runtimes"]) == {"recent", inspector.runtime_id}


def test_values_are_made_storable() -> None:
    day = dt.date(2026, 6, 1)
    assert jsonable({"d": day, "n": decimal.Decimal("1.5"), "t": (1, 2), "x": float("nan"), 3: None}) == {
        "d": day, "n": "Decimal('1.5')", "t": [1, 2], "x": "nan", "3": None}
    deep: Any = []
    for _ in range(60):
        deep = [deep]
    assert "…" in repr(jsonable(deep))


def test_a_storage_key_is_required() -> None:
    with pytest.raises(ValueError, match="storage_key"):
        LiveInspector(clp.MemoryAdapter(), "")


def test_the_entry_point_plugin_only_adds_the_command() -> None:
    status = {s.name: s for s in plugin_statuses(PluginConfig())}["clp-inspect"]
    assert status.distribution == "clp-inspect" and status.enabled
    assert status.hooks == ["register_commands"]  # runtimes are untouched by it being installed
