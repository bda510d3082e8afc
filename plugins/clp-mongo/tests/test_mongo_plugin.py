"""clp-mongo as an installed plugin: the entry point, URL resolution without connecting, the
wiring of the real-server tests (CLP_MONGO_URL), and that the docs page's runnable example says
it runs on the stand-in."""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata

import clp_mongo
import pytest
from clp_mongo import MongoAdapter, MongoEventStore

import clp_core as clp
from clp_core.config import PluginConfig
from clp_core.plugins import plugin_statuses
from clp_core.resolve import resolve_event_store, resolve_storage, storage_schemes

HERE = pathlib.Path(__file__).resolve().parent
DOCS = HERE.parents[2] / "docs" / "plugins" / "mongo.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the entry point ---------------------------------------------------------------------------


def test_the_entry_point_is_declared() -> None:
    [entry] = [ep for ep in metadata.entry_points(group="clp") if ep.name == "clp-mongo"]
    assert entry.value == "clp_mongo.plugin"
    assert entry.dist is not None and (entry.dist.name, entry.dist.version) == ("clp-mongo", clp_mongo.__version__)


def test_the_plugin_is_discovered_with_both_registration_hooks() -> None:
    status = {s.name: s for s in plugin_statuses(PluginConfig())}["clp-mongo"]
    assert status.enabled, status.reason
    assert status.hooks == ["register_event_stores", "register_storage"]
    assert {"mongodb", "mongodb+srv"} <= set(storage_schemes())


def test_discovery_does_not_import_pymongo() -> None:
    code = ("import sys; import clp_mongo.plugin as p; p.register_storage(); p.register_event_stores(); "
            "assert 'pymongo' not in sys.modules, 'pymongo imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- URLs: resolved through the entry point, nothing connects ----------------------------------


def test_mongodb_url_resolves_to_an_unconnected_adapter() -> None:
    adapter = resolve_storage(f"mongodb://ada:pw@127.0.0.1:{_closed_port()}/shop?replicaSet=rs0")
    assert isinstance(adapter, MongoAdapter)
    assert (adapter.database, adapter.collection_name) == ("shop", "clp_state")
    assert adapter._client is None


def test_mongodb_srv_url_resolves_without_a_dns_lookup() -> None:
    adapter = resolve_storage("mongodb+srv://cluster0.nowhere.invalid/")  # .invalid never resolves
    assert isinstance(adapter, MongoAdapter) and adapter._client is None
    assert adapter.database == "clp"


def test_event_store_urls_resolve() -> None:
    for url in ("mongodb://127.0.0.1:27017/ledger", "mongodb+srv://cluster0.nowhere.invalid/ledger"):
        store = resolve_event_store(url)
        assert isinstance(store, MongoEventStore)
        assert (store.database, store.collection_name, store.snapshots_collection_name) == (
            "ledger", "clp_events", "clp_snapshots")
        assert store._client is None


def test_create_runtime_with_mongo_urls_does_not_connect() -> None:
    """create_runtime is a plain call made outside any event loop; nothing may connect there."""
    contract = clp.create_contract(intents={"noop": {"inputs": {}}}, state={},
                                   transitions={"apply": {"effects": lambda ctx: {}}})
    url = f"mongodb://127.0.0.1:{_closed_port()}/app"
    runtime = clp.create_runtime(contract, storage=url, storage_key="k", event_store=url)
    assert isinstance(runtime.storage, MongoAdapter) and runtime.storage._client is None
    assert isinstance(runtime.event_store, MongoEventStore) and runtime.event_store._client is None


# -- the real-server tests are wired to CLP_MONGO_URL ------------------------------------------


def _run_server_tests(tmp_path: pathlib.Path, url: str | None, *args: str) -> tuple[int, str, list[ET.Element]]:
    env = {k: v for k, v in os.environ.items() if k not in ("CLP_MONGO_URL", "CLP_REQUIRE_SERVICES", "PYTEST_ADDOPTS")}
    if url is not None:
        env["CLP_MONGO_URL"] = url
    report = tmp_path / "report.xml"
    modules = [str(HERE / "test_mongo_adapter.py"), str(HERE / "test_mongo_event_store.py")]
    command = [sys.executable, "-m", "pytest", *modules, "-m", "mongo_server", "-p", "no:cacheprovider",
               "--import-mode=importlib", "-o", "asyncio_mode=auto", "-rs", f"--junitxml={report}", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    cases = list(ET.parse(report).getroot().iter("testcase"))
    return proc.returncode, proc.stdout + proc.stderr, cases


def test_without_clp_mongo_url_server_tests_skip_even_under_require_services(tmp_path: pathlib.Path) -> None:
    code, output, cases = _run_server_tests(tmp_path, None, "--require-services")
    assert code == 0, output
    assert len(cases) > 40, output
    for case in cases:
        assert "server:CLP_MONGO_URL" in case.get("name", ""), case.attrib
        [skipped] = case.findall("skipped")
        assert skipped.get("message", "").endswith("CLP_MONGO_URL not set"), skipped.attrib
    assert "server:CLP_MONGO_URL: " in output and "no real server: CLP_MONGO_URL not set" in output


def test_with_clp_mongo_url_the_server_is_used(tmp_path: pathlib.Path) -> None:
    """Set to a URL where nothing listens: the server tests try it, so they skip as
    'not reachable', and fail under --require-services."""
    url = f"mongodb://127.0.0.1:{_closed_port()}/?serverSelectionTimeoutMS=100"
    select = ("-k", "test_stored_document_is_id_version_and_envelope or test_event_documents")
    code, output, cases = _run_server_tests(tmp_path, url, *select)
    assert code == 0, output
    assert len(cases) == 2 and all("is not reachable" in c.find("skipped").get("message", "") for c in cases), output
    code, output, cases = _run_server_tests(tmp_path, url, *select, "--require-services")
    assert code == 1, output
    assert output.count("is not reachable and --require-services is set") >= 2, output


# -- docs ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not DOCS.is_file(), reason="docs/plugins/mongo.md is not beside this checkout")
def test_the_docs_page_runnable_example_says_it_runs_on_the_stand_in() -> None:
    # the example itself is run by tests/test_docs.py, with every runnable block under docs/
    text = DOCS.read_text(encoding="utf-8")
    assert "pip install clp-core clp-mongo" in text
    blocks = [m.group(1) for m in FENCE.finditer(text) if m.group(1).lstrip("\n").startswith("# runnable")]
    assert blocks, "docs/plugins/mongo.md has no runnable example"
    for code in blocks:
        assert "stand-in" in code, "a runnable example here runs on the stand-in and must say so"
