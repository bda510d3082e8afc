"""MemoryAdapter: the conformance suite, plus resolution of storage arguments and URLs."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from clp_core.errors import StateValueError, StorageError
from clp_core.resolve import resolve_storage, storage_schemes
from clp_core.storage import FileSystemAdapter, MemoryAdapter, SQLiteAdapter
from clp_core.storage.memory import _Stored
from clp_core.testing.storage import StorageAdapterSuite


class TestMemoryAdapter(StorageAdapterSuite):
    async def make_adapter(self) -> MemoryAdapter:
        return MemoryAdapter()

    async def write_raw(self, adapter: MemoryAdapter, key: str, raw: bytes) -> None:
        adapter._data[key] = _Stored(raw, 1)  # type: ignore[arg-type]


async def test_fresh_adapters_share_nothing() -> None:
    first, second = MemoryAdapter(), MemoryAdapter()
    await first.save("k", {"x": 1})
    assert await second.load("k") is None
    assert await first.load("k") == {"x": 1}


# -- resolve_storage -------------------------------------------------------------------


def test_none_resolves_to_a_fresh_memory_adapter() -> None:
    first, second = resolve_storage(None), resolve_storage(None)
    assert isinstance(first, MemoryAdapter) and isinstance(second, MemoryAdapter)
    assert first is not second


def test_memory_url() -> None:
    assert isinstance(resolve_storage("memory://"), MemoryAdapter)
    assert resolve_storage("memory://") is not resolve_storage("memory://")


def test_adapter_instance_is_used_as_is(tmp_path: Any) -> None:
    for adapter in (MemoryAdapter(), FileSystemAdapter(tmp_path), SQLiteAdapter(tmp_path / "x.db")):
        assert resolve_storage(adapter) is adapter


def test_third_party_object_with_the_methods_is_accepted() -> None:
    class Custom:
        async def load(self, key: str) -> Any:
            return None

        async def save(self, key: str, document: Any) -> None:
            pass

        async def delete(self, key: str) -> None:
            pass

    custom = Custom()
    assert resolve_storage(custom) is custom


@pytest.mark.parametrize("missing", ["load", "save", "delete"])
def test_object_missing_a_method_is_refused(missing: str) -> None:
    methods = {name: (lambda self, *a: None) for name in ("load", "save", "delete") if name != missing}
    incomplete = type("Incomplete", (), methods)()
    with pytest.raises(StorageError, match=rf"{missing}\(\)"):
        resolve_storage(incomplete)


def test_object_whose_save_is_not_callable_is_refused() -> None:
    class NotCallable:
        save = "nope"

        async def load(self, key: str) -> Any:
            return None

        async def delete(self, key: str) -> None:
            pass

    with pytest.raises(StorageError, match=r"save\(\)"):
        resolve_storage(NotCallable())


@pytest.mark.parametrize(
    ("url", "distribution"),
    [
        ("redis://localhost:6379/0", "clp-redis"),
        ("rediss://localhost:6380/0", "clp-redis"),
        ("postgresql://u@localhost/db", "clp-postgres"),
        ("postgres://u@localhost/db", "clp-postgres"),
        ("mongodb://localhost/db", "clp-mongo"),
    ],
)
def test_a_disabled_plugin_scheme_says_what_disabled_it(
    url: str, distribution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clp_core.plugins import discover, process_config

    if distribution not in {r.name for r in discover()}:
        pytest.skip(f"{distribution} is not installed")
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", distribution)
    process_config(refresh=True)
    try:
        assert urllib.parse.urlsplit(url).scheme not in storage_schemes()
        with pytest.raises(StorageError, match=rf"{distribution} is installed but disabled by CLP_DISABLE_PLUGINS"):
            resolve_storage(url)
    finally:
        monkeypatch.delenv("CLP_DISABLE_PLUGINS")
        process_config(refresh=True)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StorageError, match="unknown storage scheme 'nosuchdb'"):
        resolve_storage("nosuchdb://host/x")


def test_url_without_scheme_is_refused() -> None:
    with pytest.raises(StorageError, match="no scheme"):
        resolve_storage("just/a/path.db")


@pytest.mark.parametrize(
    "document",
    [{"s": "lone \ud800"}, {"n": float("nan")}, {"n": float("-inf")}, {"o": object()}, {"b": b"bytes"}],
    ids=["surrogate", "nan", "minus-inf", "object", "bytes"],
)
async def test_memory_refuses_what_durable_backends_refuse(document: dict[str, Any]) -> None:
    adapter = MemoryAdapter()
    with pytest.raises(StateValueError, match="cannot be stored"):
        await adapter.save("k", document)
    with pytest.raises(StateValueError):
        await adapter.save_versioned("k", document, 0)
    assert await adapter.load_versioned("k") == (None, 0)


def test_provides_answers_as_isinstance_does() -> None:
    import types

    from clp_core.storage.base import PatchingStorage, VersionedStorage, provides

    async def method(*args: object) -> None:
        return None

    candidates: list[object] = [
        MemoryAdapter(), object(), types.SimpleNamespace(load_versioned=method, save_versioned=method),
        types.SimpleNamespace(load_versioned=method), types.SimpleNamespace(load_logged=method, save_logged=None),
        types.SimpleNamespace(load_logged=method, save_logged=method, load_versioned=method, save_versioned=method),
    ]
    for candidate in candidates:
        for protocol in (VersionedStorage, PatchingStorage):
            assert provides(candidate, protocol) == isinstance(candidate, protocol), (candidate, protocol)
