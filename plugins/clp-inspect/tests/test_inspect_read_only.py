"""The inspector opens its stores read-only (``resolve_*(read_only=True)``): nothing is
created, and the adapters underneath refuse writes even if the proxies were bypassed."""

from __future__ import annotations

from pathlib import Path

import pytest
from clp_inspect import StoreReader

from clp_core.plugin_api import StorageError


async def test_the_reader_opens_read_only_adapters(flight_db: Path) -> None:
    reader = await StoreReader(f"sqlite:///{flight_db}").open()
    try:
        assert reader.storage is not None and reader.events is not None
        assert reader.storage._inner.read_only is True
        assert reader.events._inner.read_only is True
    finally:
        await reader.close()


async def test_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    reader = StoreReader(f"file://{tmp_path}/nowhere", keys=["k"])
    try:
        await reader.open()
        with pytest.raises(StorageError, match="no such database"):
            await reader.storage.load("k")  # type: ignore[union-attr]
    finally:
        await reader.close()
    assert not (tmp_path / "nowhere").exists()
