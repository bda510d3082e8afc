"""Fixtures of the clp-inspect tests: the flight writer (loaded by path: the tests run with
``--import-mode=importlib``) and SQLite stores it filled."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent


def _load_writer() -> ModuleType:
    name = "clp_inspect_tests_flight_writer"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "inspect_flight_writer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def writer() -> ModuleType:
    """tests/inspect_flight_writer.py: ``fill(db)``, ``commit_one(db)``, ``KEY``, ``SCRIPT``..."""
    return _load_writer()


@pytest.fixture(scope="module")
def flight_db(tmp_path_factory: pytest.TempPathFactory, writer: ModuleType) -> Path:
    """A SQLite file the flight example filled (3 events, 3 denials, 2 errors, a pending
    intent with a hostile staged proposal). Tests must not write to it."""
    path = tmp_path_factory.mktemp("inspect") / "flights.db"
    asyncio.run(writer.fill(str(path)))
    return path


@pytest.fixture
def fresh_flight_db(tmp_path: Path, writer: ModuleType) -> Path:
    """Like ``flight_db``, for a test that commits more."""
    path = tmp_path / "flights.db"
    asyncio.run(writer.fill(str(path)))
    return path
