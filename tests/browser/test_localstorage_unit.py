"""LocalStorageAdapter in CPython, against a dict-backed stand-in for ``window.localStorage``.

The conformance suite runs here; the real browser is exercised by test_pyodide_reload.py.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

import clp_core as clp
from clp_core import codec
from clp_core.errors import ConflictError, CorruptStateError, StorageError
from clp_core.storage.localstorage import LocalStorageAdapter
from clp_core.testing.storage import StorageAdapterSuite


class FakeLocalStorage:
    """``getItem``/``setItem``/``removeItem`` over a dict; ``quota`` (characters of keys and
    values, as browsers count) makes ``setItem`` raise as a full localStorage does."""

    def __init__(self, quota: int | None = None) -> None:
        self.items: dict[str, str] = {}
        self.quota = quota

    def getItem(self, key: str) -> str | None:
        return self.items.get(key)

    def setItem(self, key: str, value: str) -> None:
        if self.quota is not None:
            used = sum(len(k) + len(v) for k, v in self.items.items() if k != key)
            if used + len(key) + len(value) > self.quota:
                raise RuntimeError("QuotaExceededError: Setting the value of 'x' exceeded the quota.")
        self.items[key] = str(value)

    def removeItem(self, key: str) -> None:
        self.items.pop(key, None)


class TestLocalStorageAdapter(StorageAdapterSuite):
    async def make_adapter(self) -> LocalStorageAdapter:
        return LocalStorageAdapter(storage=FakeLocalStorage())

    async def write_raw(self, adapter: LocalStorageAdapter, key: str, raw: bytes) -> None:
        # localStorage holds text only: undecodable bytes arrive as replacement characters
        adapter.storage.setItem(adapter.prefix + key, raw.decode("utf-8", errors="replace"))


def _counter() -> Any:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": {"when": lambda ctx: ctx.intent.complete,
                               "effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                       + (ctx.intent.payload.get("amount") or 1)}}},
    )


def test_outside_pyodide_without_storage_is_a_clear_storage_error() -> None:
    assert sys.platform != "emscripten"
    with pytest.raises(StorageError) as info:
        LocalStorageAdapter()
    assert info.value.backend == "localstorage"
    assert "Pyodide" in str(info.value) and "storage=" in str(info.value)


def test_storage_object_must_have_the_web_storage_methods() -> None:
    with pytest.raises(StorageError, match="setItem"):
        LocalStorageAdapter(storage=type("Half", (), {"getItem": lambda self, k: None})())


def test_from_url_reads_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageError, match="Pyodide"):
        LocalStorageAdapter.from_url("localstorage://")
    fake = FakeLocalStorage()
    monkeypatch.setattr("clp_core.storage.localstorage.browser_local_storage", lambda: fake)
    assert LocalStorageAdapter.from_url("localstorage://").prefix == "clp:"
    adapter = LocalStorageAdapter.from_url("localstorage://?prefix=my%20app:")
    assert adapter.prefix == "my app:" and adapter.storage is fake


async def test_items_are_prefixed_versioned_envelopes() -> None:
    fake = FakeLocalStorage()
    adapter = LocalStorageAdapter("app:", storage=fake)
    v1 = await adapter.save_versioned("counter", {"state": {"count": 1}}, 0)
    await adapter.save("counter", {"state": {"count": 2}})
    assert list(fake.items) == ["app:counter"]
    raw = json.loads(fake.items["app:counter"])
    assert raw == {"format": codec.FORMAT, "data": {"version": v1 + 1, "document": {"state": {"count": 2}}}}
    other = LocalStorageAdapter("other:", storage=fake)
    assert await other.load("counter") is None  # prefixes keep applications apart
    await adapter.delete("counter")
    assert fake.items == {}


async def test_quota_exceeded_is_a_storage_error_and_keeps_the_old_value() -> None:
    fake = FakeLocalStorage(quota=2_000)
    adapter = LocalStorageAdapter(storage=fake)
    await adapter.save("k", {"small": "x"})
    with pytest.raises(StorageError) as info:
        await adapter.save("k", {"big": "x" * 5_000})
    assert not isinstance(info.value, (ConflictError, CorruptStateError))
    assert info.value.backend == "localstorage" and "[localstorage]" in str(info.value)
    assert "quota" in str(info.value).lower()
    assert await adapter.load_versioned("k") == ({"small": "x"}, 1)


@pytest.mark.parametrize(
    "raw",
    [
        '{"format":"clp/1","data":{"state":{}}}',
        '{"format":"clp/1","data":{"version":"1","document":{}}}',
        '{"format":"clp/1","data":{"version":true,"document":{}}}',
        '{"format":"clp/1","data":{"version":0,"document":{}}}',
        '{"format":"clp/1","data":{"version":1,"document":[1]}}',
    ],
)
async def test_envelope_without_a_sound_version_is_corrupt(raw: str) -> None:
    fake = FakeLocalStorage()
    fake.items["clp:k"] = raw
    adapter = LocalStorageAdapter(storage=fake)
    with pytest.raises(CorruptStateError, match="'k'"):
        await adapter.load_versioned("k")
    with pytest.raises(CorruptStateError):
        await adapter.save_versioned("k", {"x": 1}, 1)


async def test_browser_errors_on_read_and_delete_are_storage_errors() -> None:
    class Broken(FakeLocalStorage):
        def getItem(self, key: str) -> str | None:
            raise RuntimeError("SecurityError: access is denied for this document")

        def removeItem(self, key: str) -> None:
            raise RuntimeError("SecurityError")

    adapter = LocalStorageAdapter(storage=Broken())
    with pytest.raises(StorageError, match=r"\[localstorage\].*getItem"):
        await adapter.load("k")
    with pytest.raises(StorageError, match="removeItem"):
        await adapter.delete("k")


async def test_a_runtime_hydrates_what_an_earlier_runtime_committed() -> None:
    fake = FakeLocalStorage()
    async with clp.create_runtime(_counter(), storage=LocalStorageAdapter(storage=fake),
                                  storage_key="clp:counter") as runtime:
        for _ in range(3):
            await runtime.execute("increment", {})
    async with clp.create_runtime(_counter(), storage=LocalStorageAdapter(storage=fake),
                                  storage_key="clp:counter") as runtime:
        assert runtime.get_state("count") == 3
        await runtime.execute("increment", {})
    stored = json.loads(fake.items["clp:clp:counter"])
    assert stored["format"] == codec.FORMAT
    assert stored["data"]["version"] == 4
    assert stored["data"]["document"]["state"] == {"count": 4}


async def test_a_stale_runtime_gets_a_conflict_not_a_lost_update() -> None:
    """Two runtimes on one key in one page: the second writer re-reads and retries."""
    fake = FakeLocalStorage()
    first = clp.create_runtime(_counter(), storage=LocalStorageAdapter(storage=fake), storage_key="c")
    second = clp.create_runtime(_counter(), storage=LocalStorageAdapter(storage=fake), storage_key="c")
    await first.hydrate()
    await second.hydrate()
    await first.execute("increment", {})
    await second.execute("increment", {})
    assert json.loads(fake.items["clp:c"])["data"]["document"]["state"] == {"count": 2}
