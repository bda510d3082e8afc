"""Where the clp-mongo tests run.

Every backend test runs twice, and its id says where:

* ``[stand-in:mongomock-motor]``: always. mongomock-motor (Motor's async API over mongomock,
  in this process's memory) passed as ``client=``. It is NOT a MongoDB server: it proves the
  adapter's logic (filters, the versioned write, duplicate keys, unique indexes, sorting),
  not PyMongo's AsyncMongoClient, the wire protocol, BSON limits or a server's concurrency.
* ``[server:CLP_MONGO_URL]``: against the real server named by the environment variable
  ``CLP_MONGO_URL`` (for example ``mongodb://127.0.0.1:27017``), through adapters that make
  their own ``pymongo.AsyncMongoClient`` from that URL, in a fresh database dropped
  afterwards. Unset, these tests are skipped with the reason "CLP_MONGO_URL not set", even
  under ``--require-services``: no MongoDB server can be assumed to exist. Set but not
  reachable, they are skipped, or failed under ``--require-services``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from clp_mongo import MongoAdapter, MongoEventStore
from clp_mongo._common import redact

from clp_core.testing.pytest_plugin import service_unavailable

STANDIN_ID = "stand-in:mongomock-motor"
SERVER_ID = "server:CLP_MONGO_URL"
NO_SERVER_REASON = "CLP_MONGO_URL not set"

BACKENDS = [pytest.param("stand-in", id=STANDIN_ID), pytest.param("server", id=SERVER_ID)]
MARKS = {STANDIN_ID: "mongo_standin", SERVER_ID: "mongo_server"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mongo_standin: runs on the mongomock-motor stand-in, not a MongoDB server")
    config.addinivalue_line("markers", "mongo_server: runs on the MongoDB server named by CLP_MONGO_URL")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # marked here rather than in BACKENDS: this conftest's markers are registered only once
    # it is imported, and a mark named at import time would warn as unknown
    for item in items:
        for backend, marker in MARKS.items():
            if backend in item.nodeid:
                item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts: dict[str, dict[str, int]] = {STANDIN_ID: {}, SERVER_ID: {}}
    for outcome in ("passed", "failed", "skipped", "error"):  # one report per test, setup errors apart
        for report in terminalreporter.stats.get(outcome, []):
            for backend, by_outcome in counts.items():
                if backend in getattr(report, "nodeid", ""):
                    by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
    if not any(counts.values()):
        return
    terminalreporter.write_sep("-", "clp-mongo backends")
    url = os.environ.get("CLP_MONGO_URL")
    for backend, by_outcome in counts.items():
        tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(by_outcome.items())) or "none run"
        if backend == STANDIN_ID:
            note = "mongomock in memory: a stand-in, NOT a MongoDB server"
        elif url:
            note = f"real server at {redact(url)}"
        else:
            note = f"no real server: {NO_SERVER_REASON}"
        terminalreporter.write_line(f"{backend}: {tally} ({note})")


def server_options(url: str | None) -> dict[str, Any]:
    """A 5 s server selection timeout, unless the URL sets its own."""
    if url is None or "serverselectiontimeoutms=" in url.lower():
        return {}
    return {"serverSelectionTimeoutMS": 5000}


class Backend:
    """One place the tests can store things: a fresh database on the stand-in or the server."""

    def __init__(self, kind: str, client: Any, url: str | None) -> None:
        self.kind = kind
        self.client = client  # for looking at / writing raw documents
        self.url = url
        self.database = f"clp_test_{uuid.uuid4().hex[:12]}"
        self.options = server_options(url)

    @property
    def is_standin(self) -> bool:
        return self.kind == "stand-in"

    def adapter(self, collection: str = "clp_state") -> MongoAdapter:
        if self.is_standin:
            return MongoAdapter(database=self.database, collection=collection, client=self.client)
        assert self.url is not None
        return MongoAdapter(self.url, database=self.database, collection=collection, **self.options)

    def event_store(self, collection: str = "clp_events", snapshots: str = "clp_snapshots") -> MongoEventStore:
        if self.is_standin:
            return MongoEventStore(database=self.database, collection=collection, snapshots_collection=snapshots,
                                   client=self.client)
        assert self.url is not None
        return MongoEventStore(self.url, database=self.database, collection=collection,
                               snapshots_collection=snapshots, **self.options)

    def raw(self, collection: str) -> Any:
        return self.client[self.database][collection]


@pytest.fixture(params=BACKENDS)
async def mongo_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "stand-in":
        from mongomock_motor import AsyncMongoMockClient

        yield Backend("stand-in", AsyncMongoMockClient(), None)
        return
    url = os.environ.get("CLP_MONGO_URL")
    if not url:
        pytest.skip(NO_SERVER_REASON)
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url, **server_options(url))
    try:
        await client.admin.command("ping")
    except Exception:
        await client.close()
        service_unavailable(request.config, f"MongoDB at {redact(url)} (CLP_MONGO_URL)")
    backend = Backend("server", client, url)
    try:
        yield backend
    finally:
        await client.drop_database(backend.database)
        await client.close()
