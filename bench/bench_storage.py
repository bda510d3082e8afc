#!/usr/bin/env python
"""Storage benchmarks: persisted commits per second next to the raw driver, and bytes per commit.

Run from the repository root::

    .venv/bin/python bench/bench_storage.py            # full run (about a minute)
    .venv/bin/python bench/bench_storage.py --quick    # smoke run (a few seconds)
    .venv/bin/python bench/bench_storage.py --profile  # also cProfile the CLP commit loops

For each backend (memory, file, sqlite, redis, postgresql; a server that is not reachable, or
whose plugin is not installed, is skipped with a note):

1. ``throughput``: ``await runtime.execute("increment")`` per second on the counter contract
   with that storage (persist on commit, the default versioned save: one compare-and-set
   write per commit; the plugins installed, with their default configuration, as a user
   gets them), next to the raw driver doing the same single write in the same run,
   without CLP around it, and the ratio CLP / raw. Target for Redis and PostgreSQL: at least
   0.8. The raw writes:

   - memory: ``codec.encode`` of the document and a dict store (what ``MemoryAdapter`` does);
   - file: temp file, write, fsync, rename, in one ``asyncio.to_thread`` call;
   - sqlite: ``sqlite3`` ``UPDATE ... WHERE key = ? AND version = ?`` in a thread (WAL,
     ``synchronous=NORMAL``, autocommit, as the adapter);
   - redis: ``EVALSHA`` of the adapter's own compare-and-set script through ``redis.asyncio``,
     with the adapter's arguments (version, text, a 32-hex-digit token, TTL, ``base`` or
     ``patch``; a plain ``HSET`` is printed too, for reference);
   - postgresql: the adapter's own ``UPDATE ... WHERE key = $1 AND version = $3 RETURNING version``
     with the same jsonb text, ``fetchval`` on one ``asyncpg`` connection.

   The raw side writes the exact bytes CLP writes for the counter document: the write the
   runtime handed the adapter on one commit just before the measured range is recorded (the
   whole document, with its idempotency and intent records, or the patch). CLP's side also
   pays for the lifecycle (dispatch, guards, transition, log entry), ``codec.encode`` of the
   document, and the adapter (a pool acquire for PostgreSQL, a token for Redis...). The
   lifecycle alone (``execute`` with no storage) is printed to split the difference.
2. ``bytes_per_commit``: commits with a 10-key state and with a 100,000-key state (``count``
   next to small records), per backend, alternating: the bytes the runtime hands the adapter
   per commit and commits/s, over a whole cycle of the patch log: the patches are timed, then
   one compaction (the whole document written again), and both figures are averaged over one
   compaction and the patches that come between two (``PatchLog``'s policy: until they outgrow
   the base), so rewriting the big document is counted; what the backend holds where it can tell
   (file size, SQLite ``length(data)``, Redis ``HSTRLEN``, PostgreSQL ``pg_column_size`` of
   the jsonb, compressed by TOAST), and commits/s. Targets on SQLite, Redis and PostgreSQL:
   at 100,000 keys, at least 0.8 of the 10-key commits/s, and at most 2x its bytes. The
   compaction of the cycle is a later one of a long-lived runtime (it encodes only the state
   values written since the last); a runtime's first, and a later one after a cycle whose every
   patch wrote another record, are timed and printed too.

Every figure is measured in this process: ``time.perf_counter``, warm-up rounds first, the best
of several repetitions, CLP and raw repetitions alternating. Results are printed as a table and
written to ``bench/results/storage.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    CORE_ONLY,
    Row,
    add_result_options,
    counter_contract,
    finish,
    fmt_bytes,
    fmt_rate,
    print_table,
    print_targets,
    profile_text,
    run_environment,
    settle,
    small_records,
    time_executes,
    verdict,
)

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp
from clp_core import codec
from clp_core.storage.filesystem import key_to_filename
from clp_core.testing.multiprocess import run_increments
from clp_core.testing.patching import compact_next

perf_counter = time.perf_counter

TARGET_RATIO = 0.8  # CLP persisted commits/s >= 0.8 x the raw driver's writes/s (Redis, PostgreSQL)
TARGETED = ("redis", "postgresql")
TARGET_BIG_RATE = 0.8  # commits/s on a 100,000-key state >= 0.8 x on a 10-key state
TARGET_BIG_BYTES = 2.0  # bytes written per commit on it <= 2 x on a 10-key state
SIZE_TARGETED = ("sqlite", "redis", "postgresql")
BACKENDS = ("memory", "file", "sqlite", "redis", "postgresql")
BIG_KEYS = 100_000
SMALL_KEYS = 10
KEY = "clp:bench:counter"
RAW_KEY = "clp:bench:raw"

# commits per repetition for each backend, warm-up commits, repetitions; commits for bytes/commit
FULL: dict[str, Any] = {
    "commits": {"memory": 20_000, "file": 1_000, "sqlite": 3_000, "redis": 5_000, "postgresql": 3_000},
    "warmup": 300, "reps": 5, "size_reps": 3,
    "size_commits": {"memory": 1000, "file": 20, "sqlite": 1000, "redis": 1000, "postgresql": 1000},
    "processes": 4, "increments": 500,
}
QUICK: dict[str, Any] = {
    "commits": {"memory": 3_000, "file": 200, "sqlite": 500, "redis": 800, "postgresql": 500},
    "warmup": 100, "reps": 3, "size_reps": 2,
    "size_commits": {"memory": 60, "file": 5, "sqlite": 60, "redis": 60, "postgresql": 60},
    "processes": 4, "increments": 100,
}


# -- the states (the contract is _common.counter_contract), what the runtime writes -----------
def wide_state(keys: int) -> dict[str, Any]:
    """``count`` and ``keys - 1`` small records (as bench_core's commit-scaling states)."""
    return {"count": 0, **small_records(keys - 1)}


class WriteMeter:
    """What a runtime hands its adapter: each ``save_logged`` write (a patch, or the whole
    document when compacting) and each whole-document ``save_versioned``, counted (``bytes``,
    ``writes``, ``compactions``), and the last one kept (``last``: its text, as the adapter
    stores it, and whether it was the whole document). Wraps the instance's methods, so the
    adapter's class (and whether it keeps patches) is unchanged; :meth:`close` unwraps them."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.bytes = self.writes = self.compactions = 0
        self.last: tuple[str, bool] | None = None
        self.replaced: dict[str, Any] = {}  # wrapped method -> the instance's own attribute, if any
        if callable(getattr(adapter, "save_logged", None)):
            inner = adapter.save_logged

            async def save_logged(key: str, write: Any, expected: int) -> int:
                version = await inner(key, write, expected)
                self.count(write.text, write.compacts)
                return version
            self.wrap("save_logged", save_logged)
        if callable(getattr(adapter, "save_versioned", None)):
            versioned = adapter.save_versioned

            async def save_versioned(key: str, document: Any, expected: int) -> int:
                version = await versioned(key, document, expected)
                self.count(codec.encode(document), True)
                return version
            self.wrap("save_versioned", save_versioned)

    def wrap(self, method: str, wrapper: Any) -> None:
        self.replaced[method] = vars(self.adapter).get(method)
        setattr(self.adapter, method, wrapper)

    def count(self, text: str, whole: bool) -> None:
        self.last = (text, whole)
        self.bytes += len(text.encode("utf-8"))
        self.writes += 1
        self.compactions += whole

    def close(self) -> None:
        """The adapter's own methods again."""
        for method, own in self.replaced.items():
            if own is None:
                delattr(self.adapter, method)  # the class's method again
            else:
                setattr(self.adapter, method, own)
        self.replaced.clear()


async def recorded_write(runtime: clp.Runtime, adapter: Any, key: str) -> tuple[str, str | None]:
    """One ``execute("increment")``, recording what the runtime hands ``adapter``: the whole
    document it persists (encoded, as the adapter stores it) and, when that commit wrote a
    patch instead, the patch's text (else ``None``)."""
    meter = WriteMeter(adapter)
    try:
        await clp_executes(runtime, 1)
    finally:
        meter.close()
    if meter.last is None:
        raise AssertionError("the runtime wrote nothing on commit")
    text, whole = meter.last
    if whole:
        return text, None
    return codec.encode(await adapter.load(key)), text  # the document that patch made


# -- helpers ----------------------------------------------------------------------------------
def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


async def adapter_saves(adapter: Any, key: str, document: dict[str, Any], version: int, n: int) -> tuple[float, int]:
    """Seconds for ``n`` versioned saves straight through the adapter (no runtime), and the last version."""
    save = adapter.save_versioned
    t0 = perf_counter()
    for _ in range(n):
        version = await save(key, document, version)
    return perf_counter() - t0, version


async def clp_executes(runtime: clp.Runtime, n: int) -> float:
    """Seconds for ``n`` ``execute("increment")`` (no payload), back to back."""
    return await time_executes(runtime, n, amount=None)


# -- backends ---------------------------------------------------------------------------------
class Unavailable(Exception):
    """The backend cannot be measured here (server down, plugin missing); the message says why."""


class Backend:
    """One storage backend: how to make its adapter, its raw write, and what it stores."""

    name = ""
    raw_label = ""
    extra_label: str | None = None  # a second raw write, for reference (Redis HSET)

    async def open(self) -> None:
        """Check the backend is usable and prepare shared resources; :class:`Unavailable` if not."""

    def adapter(self) -> Any:
        raise NotImplementedError

    def reader(self, adapter: Any) -> Any:
        """An adapter that reads what ``adapter`` wrote, for a fresh runtime (a new one by default)."""
        return self.adapter()

    def shared_url(self) -> str | None:
        """A storage URL other processes can share (``None``: this backend lives in one process)."""
        return None

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        """Prepare the raw write of ``payload`` (the encoded counter envelope, as CLP writes it;
        ``patch``: the patch CLP wrote instead, for a backend that keeps patches)."""

    async def raw_writes(self, n: int) -> float:
        """Seconds for ``n`` raw writes, each one round trip (or one thread hop) with no CLP."""
        raise NotImplementedError

    async def extra_writes(self, n: int) -> float:
        raise NotImplementedError

    async def stored_bytes(self, adapter: Any, key: str) -> int | None:
        """Bytes the backend holds for ``key`` (``None``: it cannot tell cheaply)."""
        return None

    async def close(self) -> None:
        """Release everything, delete what the run created."""


class MemoryBackend(Backend):
    name = "memory"
    raw_label = "codec.encode + dict store (MemoryAdapter's work)"

    def adapter(self) -> Any:
        return clp.MemoryAdapter()

    def reader(self, adapter: Any) -> Any:
        return adapter  # documents live in the adapter object itself

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        self.store: dict[str, tuple[str, int]] = {}
        self.document = json.loads(payload)["data"]

    async def raw_writes(self, n: int) -> float:
        store, document, encode = self.store, self.document, codec.encode
        t0 = perf_counter()
        for i in range(n):
            store[RAW_KEY] = (encode(document), i)
        return perf_counter() - t0


class FileBackend(Backend):
    name = "file"
    raw_label = "temp + write + fsync + rename, one to_thread"

    async def open(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="clp-bench-files-")
        self.directory = Path(self.tmp.name)

    def adapter(self) -> Any:
        return clp.FileSystemAdapter(self.directory / "clp")

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        # the adapter writes {"version": n, "document": ...} in the envelope; so does this
        document = json.loads(payload)["data"]
        self.payload = codec.encode({"version": 1, "document": document}).encode()
        self.path = self.directory / "raw" / key_to_filename(RAW_KEY)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    async def raw_writes(self, n: int) -> float:
        write, path, payload = self._write, self.path, self.payload
        t0 = perf_counter()
        for _ in range(n):
            await asyncio.to_thread(write, path, payload)
        return perf_counter() - t0

    async def stored_bytes(self, adapter: Any, key: str) -> int | None:
        return os.path.getsize(Path(adapter.directory) / key_to_filename(key))

    def shared_url(self) -> str | None:
        return (self.directory / "multiprocess").as_uri()

    async def close(self) -> None:
        self.tmp.cleanup()


class SQLiteBackend(Backend):
    name = "sqlite"
    raw_label = "sqlite3 UPDATE ... AND version = ?, in a thread"

    async def open(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="clp-bench-sqlite-")
        self.path = os.path.join(self.tmp.name, "bench.db")
        self.conn: sqlite3.Connection | None = None

    def adapter(self) -> Any:
        return clp.SQLiteAdapter(self.path)

    def _connect(self) -> sqlite3.Connection:
        if self.conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS clp_state (key TEXT PRIMARY KEY, version INTEGER NOT NULL,"
                         " data TEXT NOT NULL)")
            self.conn = conn
        return self.conn

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        conn = self._connect()
        conn.execute("INSERT OR REPLACE INTO clp_state (key, version, data) VALUES (?, 1, ?)", (RAW_KEY, payload))
        self.payload, self.version = payload, 1

    async def raw_writes(self, n: int) -> float:
        conn, payload = self._connect(), self.payload
        sql = "UPDATE clp_state SET data = ?, version = version + 1 WHERE key = ? AND version = ?"

        def write(version: int) -> int:
            return conn.execute(sql, (payload, RAW_KEY, version)).rowcount

        t0 = perf_counter()
        for _ in range(n):
            if await asyncio.to_thread(write, self.version) != 1:
                raise AssertionError("raw sqlite write lost its version")
            self.version += 1
        return perf_counter() - t0

    def shared_url(self) -> str | None:
        return f"sqlite:///{os.path.join(self.tmp.name, 'multiprocess.db')}"  # absolute: sqlite:////tmp/...

    async def stored_bytes(self, adapter: Any, key: str) -> int | None:
        row = self._connect().execute("SELECT length(CAST(data AS BLOB)) FROM clp_state WHERE key = ?",
                                      (key,)).fetchone()
        return None if row is None else int(row[0])

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.tmp.cleanup()


class RedisBackend(Backend):
    name = "redis"
    raw_label = "EVALSHA of the adapter's CAS script, redis.asyncio"
    extra_label = "HSET d, v: no compare-and-set, redis.asyncio"

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"clp-bench:{uuid.uuid4().hex}:"
        self.client: Any = None

    async def open(self) -> None:
        try:
            import redis.asyncio as aioredis
            from clp_redis.adapter import SAVE_VERSIONED, RedisAdapter
        except ImportError as exc:
            raise Unavailable(f"clp-redis not installed ({exc})") from None
        self.adapter_class, self.script_source = RedisAdapter, SAVE_VERSIONED
        self.client = aioredis.from_url(self.url, decode_responses=False, socket_connect_timeout=2)
        try:
            await self.client.ping()
            self.server_version = (await self.client.info("server")).get("redis_version")
        except Exception as exc:
            await self.client.aclose()
            self.client = None
            raise Unavailable(f"Redis at {self.url} not reachable ({type(exc).__name__})") from None

    def adapter(self) -> Any:
        return self.adapter_class(self.url, prefix=self.prefix)

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        # the adapter's arguments: version, text, token (32 hex digits), TTL ("" = none), mode
        self.payload = (payload if patch is None else patch).encode()
        self.mode = "base" if patch is None else "patch"
        self.key = (self.prefix + RAW_KEY).encode()
        self.script = self.client.register_script(self.script_source)
        self.token = uuid.uuid4().hex
        await self.client.delete(self.key)
        self.version = 0
        if patch is not None:  # a patch needs a base to extend
            await self.script(keys=[self.key], args=[0, payload.encode(), self.token, "", "base"])
            self.version = 1

    async def raw_writes(self, n: int) -> float:
        script, keys, payload, token, mode = self.script, [self.key], self.payload, self.token, self.mode
        t0 = perf_counter()
        for _ in range(n):
            ok, version = await script(keys=keys, args=[self.version, payload, token, "", mode])
            if ok != 1:
                raise AssertionError("raw redis write lost its version")
            self.version = int(version)
        return perf_counter() - t0

    async def extra_writes(self, n: int) -> float:
        hset, key, payload = self.client.hset, self.key + b":hset", self.payload
        t0 = perf_counter()
        for i in range(n):
            await hset(key, mapping={"d": payload, "v": i})
        return perf_counter() - t0

    async def stored_bytes(self, adapter: Any, key: str) -> int | None:
        return int(await self.client.hstrlen(adapter.redis_key(key), "d"))

    def shared_url(self) -> str | None:
        return f"{self.url}{'&' if '?' in self.url else '?'}prefix={self.prefix}"

    async def close(self) -> None:
        if self.client is None:
            return
        keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}*", count=1000)]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()


class PostgresBackend(Backend):
    name = "postgresql"
    raw_label = "asyncpg fetchval UPDATE ... RETURNING, one connection"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.table = f"clp_bench_{uuid.uuid4().hex[:16]}"
        self.conn: Any = None

    async def open(self) -> None:
        try:
            import asyncpg
            from clp_postgres import PostgresAdapter
        except ImportError as exc:
            raise Unavailable(f"clp-postgres not installed ({exc})") from None
        self.adapter_class = PostgresAdapter
        try:
            self.conn = await asyncpg.connect(self.dsn, timeout=5)
        except Exception as exc:
            raise Unavailable(f"PostgreSQL at {self.dsn} not reachable ({type(exc).__name__})") from None
        self.server_version = await self.conn.fetchval("SHOW server_version")
        await self.adapter_class(self.dsn, table=self.table).create()  # the table, as the adapter makes it

    def adapter(self) -> Any:
        return self.adapter_class(self.dsn, table=self.table)

    async def raw_open(self, payload: str, patch: str | None = None) -> None:
        from clp_postgres._common import to_jsonb

        self.payload = to_jsonb(payload)
        name = f'"public"."{self.table}"'
        await self.conn.execute(
            f"INSERT INTO {name} (key, version, data) VALUES ($1, 1, $2::text::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET version = 1, data = excluded.data", RAW_KEY, self.payload)
        # the statement the adapter sends for this document (a whole write, no patch to drop)
        self.sql = self.adapter_class(self.dsn, table=self.table)._update_plain
        self.version = 1

    async def raw_writes(self, n: int) -> float:
        fetchval, sql, payload = self.conn.fetchval, self.sql, self.payload
        t0 = perf_counter()
        for _ in range(n):
            version = await fetchval(sql, RAW_KEY, payload, self.version)
            if version is None:
                raise AssertionError("raw postgresql write lost its version")
            self.version = version
        return perf_counter() - t0

    def shared_url(self) -> str | None:
        return f"{self.dsn}{'&' if '?' in self.dsn else '?'}table={self.table}"

    async def stored_bytes(self, adapter: Any, key: str) -> int | None:
        value = await self.conn.fetchval(f'SELECT pg_column_size(data) FROM "public"."{self.table}" WHERE key = $1',
                                         key)
        return None if value is None else int(value)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.execute(f'DROP TABLE IF EXISTS "public"."{self.table}", "public"."{self.table}_patches"')
            await self.conn.close()


def make_backends(args: argparse.Namespace) -> list[Backend]:
    made: dict[str, Backend] = {
        "memory": MemoryBackend(), "file": FileBackend(), "sqlite": SQLiteBackend(),
        "redis": RedisBackend(args.redis_url), "postgresql": PostgresBackend(args.postgres_dsn),
    }
    return [made[name] for name in args.backends]


# -- 1. throughput ----------------------------------------------------------------------------
async def bench_throughput(backend: Backend, cfg: dict[str, Any]) -> dict[str, Any]:
    n, warm, reps = cfg["commits"][backend.name], cfg["warmup"], cfg["reps"]
    contract = counter_contract()
    adapter = backend.adapter()
    # default plugins, as installed (the measure): unconfigured ones are inactive
    runtime = clp.create_runtime(contract, storage=adapter, storage_key=KEY)
    bare = clp.create_runtime(contract, initial_state={"count": 0})  # the lifecycle alone
    direct = backend.adapter()  # the adapter alone, on a key of its own
    direct_key, direct_version = f"{KEY}:adapter", 0
    try:
        await runtime.hydrate()
        await clp_executes(runtime, warm - 1)
        await clp_executes(bare, warm)
        # the bytes CLP writes for this counter as it reaches the measured range
        payload, patch = await recorded_write(runtime, adapter, KEY)
        final = warm + n * reps
        document = codec.decode_document(payload, backend=backend.name, key=KEY)
        _, direct_version = await adapter_saves(direct, direct_key, document, direct_version, warm)
        await backend.raw_open(payload, patch)
        await backend.raw_writes(warm)
        if backend.extra_label:
            await backend.extra_writes(warm)

        clp_t: list[float] = []
        raw_t: list[float] = []
        bare_t: list[float] = []
        direct_t: list[float] = []
        extra_t: list[float] = []
        for _ in range(reps):  # alternate, so that drift of the machine hits every side alike
            settle()
            clp_t.append(await clp_executes(runtime, n))
            settle()
            raw_t.append(await backend.raw_writes(n))
            settle()
            bare_t.append(await clp_executes(bare, n))
            settle()
            elapsed, direct_version = await adapter_saves(direct, direct_key, document, direct_version, n)
            direct_t.append(elapsed)
            if backend.extra_label:
                settle()
                extra_t.append(await backend.extra_writes(n))
        assert runtime.get_state("count") == final, "CLP counter lost updates"
        async with clp.create_runtime(contract, storage=backend.reader(adapter), storage_key=KEY,
                                      config=CORE_ONLY) as fresh:
            assert fresh.get_state("count") == final, "the stored count is not the committed one"
    finally:
        await runtime.close()
        with contextlib.suppress(Exception):
            await direct.delete(direct_key)
        await direct.close()

    clp_rate, raw_rate = n / min(clp_t), n / min(raw_t)
    ratio = clp_rate / raw_rate
    result: dict[str, Any] = {
        "commits": n, "repetitions": reps,
        "clp_commits_per_s": clp_rate,
        "raw_writes_per_s": raw_rate,
        "raw_write": backend.raw_label,
        "ratio": ratio,
        "clp_us_per_commit": min(clp_t) / n * 1e6,
        "raw_us_per_write": min(raw_t) / n * 1e6,
        "lifecycle_alone_us": min(bare_t) / n * 1e6,
        "adapter_alone_us": min(direct_t) / n * 1e6,
        "overhead_us": (min(clp_t) - min(raw_t)) / n * 1e6,
        "all_runs_s": {"clp": clp_t, "raw": raw_t, "lifecycle_alone": bare_t, "adapter_alone": direct_t},
    }
    if backend.extra_label:
        result["extra_write"] = backend.extra_label
        result["extra_writes_per_s"] = n / min(extra_t)
        result["all_runs_s"]["extra"] = extra_t
    if backend.name in TARGETED:
        result["target"] = f"ratio >= {TARGET_RATIO}"
        result["pass"] = ratio >= TARGET_RATIO
    else:
        result["target"] = None
        result["pass"] = None
    return result


# -- 2. bytes per commit ----------------------------------------------------------------------
async def commit_size(backend: Backend, keys: int, commits: int) -> dict[str, Any]:
    """``commits`` timed commits, then (when they were patches) one compaction, timed too: the
    figures are per commit over a whole cycle of the patch log, one whole write and the
    patches that follow it until they outgrow it (``PatchLog``'s policy), so the cost of
    writing the big document again is in them, not left out of a short window.

    A runtime's first compaction of a patched document (and its first after any load: a
    conflict, an eviction from ``Runtimes``) encodes the whole state and keeps each top-level
    value's text; later ones encode only the values written since. The cycle figure is a
    long-lived writer's (later compactions); the cycle with a first compaction (a runtime that
    loads once a cycle), and with a later one after a cycle whose every patch wrote another
    record, are given too. Each compaction figure is the median of three."""
    adapter = backend.adapter()
    key = f"{KEY}:size:{keys}"
    runtime = clp.create_runtime(counter_contract(), storage=adapter, storage_key=key,
                                 initial_state=wide_state(keys), config=CORE_ONLY)
    persistence = runtime._persistence  # type: ignore[attr-defined]
    log = persistence._log

    async def compactions(before_each: Callable[[], None] = lambda: None, n: int = 3) -> tuple[list[float], int]:
        """``n`` commits made to write the whole document (as if the patches outgrew the base):
        their times, and the bytes of one."""
        times, size = [], 0
        for _ in range(n):
            before_each()
            compact_next(runtime)
            before, whole = meter.bytes, meter.compactions
            settle()
            times.append(await clp_executes(runtime, 1))
            assert meter.compactions == whole + 1, "the forced commit did not write the whole document"
            size = meter.bytes - before
        return times, size

    try:
        await runtime.hydrate()
        await runtime.execute("increment")  # the first write (an insert) is not timed
        meter = WriteMeter(adapter)
        patched = log is not None and log.patching
        # the first compaction of a patched document encodes every value (as after a load); one
        # now, before the timed patches, two after them (three here would leave SQLite
        # checkpointing 12 MB of WAL during the patches)
        reset = persistence._text.reset
        firsts = (await compactions(reset, 1))[0] if patched else []
        meter.bytes = meter.writes = meter.compactions = 0
        settle()
        elapsed = await clp_executes(runtime, commits)
        step_bytes, step_s = meter.bytes / commits, elapsed / commits
        whole_bytes, whole_s, per_base = step_bytes, step_s, 0.0
        first_whole_s = spread_whole_s = None
        if patched:
            assert meter.compactions == 0, "a compaction among the timed patches"
            laters, whole_bytes = await compactions()
            whole_s = statistics.median(laters)
            per_base = whole_bytes / step_bytes  # patches until they outgrow the base
            first_whole_s = statistics.median(firsts + (await compactions(reset, 2))[0])
            spread = [(f"k{i}",) for i in range(min(keys - 1, round(per_base)))]
            spread_whole_s = statistics.median((await compactions(lambda: persistence._text.forget(spread)))[0])
        stored = await backend.stored_bytes(adapter, key)
        state = runtime.get_state()
        assert state["count"] == commits + 1 + 9 * patched and len(state) == keys

        def cycle(whole: float | None) -> float | None:
            return None if whole is None else (whole + per_base * step_s) / (1 + per_base)

        return {
            "keys": keys,
            "written_bytes": (whole_bytes + per_base * step_bytes) / (1 + per_base),
            "commit_s": cycle(whole_s),
            "step_bytes": step_bytes, "step_s": step_s,
            "whole_write_bytes": whole_bytes, "whole_write_s": whole_s, "patches_per_base": per_base,
            "first_whole_write_s": first_whole_s, "reload_commit_s": cycle(first_whole_s),
            "spread_whole_write_s": spread_whole_s, "spread_commit_s": cycle(spread_whole_s),
            "stored_bytes": stored,
            "commits": commits,
        }
    finally:
        await runtime.close()
        with contextlib.suppress(Exception):
            cleanup = backend.adapter()
            await cleanup.delete(key)
            await cleanup.close()


async def bench_bytes(backend: Backend, cfg: dict[str, Any]) -> dict[str, Any]:
    """Alternating repetitions of the 10-key and the 100,000-key runtimes (each a fresh key)."""
    small_runs, big_runs = [], []
    for _ in range(cfg["size_reps"]):
        small_runs.append(await commit_size(backend, SMALL_KEYS, cfg["size_commits"][backend.name]))
        big_runs.append(await commit_size(backend, BIG_KEYS, cfg["size_commits"][backend.name]))
    small = min(small_runs, key=lambda r: r["commit_s"])
    big = min(big_runs, key=lambda r: r["commit_s"])
    rate_ratio = small["commit_s"] / big["commit_s"]
    spread_ratio = small["commit_s"] / big["spread_commit_s"] if big["spread_commit_s"] else None
    reload_ratio = small["commit_s"] / big["reload_commit_s"] if big["reload_commit_s"] else None
    bytes_ratio = big["written_bytes"] / small["written_bytes"]
    passed = rate_ratio >= TARGET_BIG_RATE and bytes_ratio <= TARGET_BIG_BYTES
    return {
        "small": small, "big": big, "bytes_ratio": bytes_ratio, "rate_ratio": rate_ratio,
        "spread_rate_ratio": spread_ratio, "reload_rate_ratio": reload_ratio,
        "time_ratio": big["commit_s"] / small["commit_s"],
        "pass": passed if backend.name in SIZE_TARGETED else None,
    }


# -- 3. several processes on one key ----------------------------------------------------------
async def bench_multiprocess(backend: Backend, cfg: dict[str, Any], retries: int | None) -> dict[str, Any] | None:
    url = backend.shared_url()
    if url is None:
        return None
    processes, increments = cfg["processes"], cfg["increments"]
    key = f"{KEY}:multiprocess"
    result = await run_increments(url, key, processes=processes, increments=increments, retries=retries)
    reports, final, wall = result.workers, result.final, result.elapsed_s
    committed = sum(r["successes"] for r in reports)
    expected = processes * increments
    return {
        "processes": processes, "increments": increments, "expected": expected, "final": final,
        "committed": committed, "lost": committed - (final or 0), "gave_up": expected - committed,
        "conflicts": sum(r["conflicts"] for r in reports),
        "most_conflicts_in_one_commit": max(r["most_conflicts_in_one_commit"] for r in reports),
        "max_conflict_retries": reports[0]["max_conflict_retries"],
        "wall_s": wall, "commits_per_s": committed / wall, "workers": reports,
        "pass": final == expected,
    }


# -- profile ----------------------------------------------------------------------------------
async def profile_commits(backend: Backend, n: int, top: int = 25) -> str:
    runtime = clp.create_runtime(counter_contract(), storage=backend.adapter(), storage_key=f"{KEY}:profile",
                                 config=CORE_ONLY)
    try:
        await runtime.hydrate()
        await clp_executes(runtime, 200)
        return await profile_text(lambda: clp_executes(runtime, n), top)
    finally:
        await runtime.close()


# -- main -------------------------------------------------------------------------------------
def _version(module: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # informative only
        return None


def print_report(res: dict[str, Any]) -> None:
    rows: list[Row] = []
    for name in res["backends"]:
        b = res["results"][name]
        if "skipped" in b:
            rows.append((f"{name}", "skipped", b["skipped"], "SKIP" if name in TARGETED else ""))
            continue
        tp = b["throughput"]
        rows.append((f"{name}: CLP execute, persisted", fmt_rate(tp["clp_commits_per_s"]),
                     f"{tp['clp_us_per_commit']:.0f} us/commit", ""))
        rows.append((f"{name}: raw write", fmt_rate(tp["raw_writes_per_s"]),
                     f"{tp['raw_us_per_write']:.0f} us: {tp['raw_write']}", ""))
        if "extra_writes_per_s" in tp:
            rows.append((f"{name}: raw HSET (reference)", fmt_rate(tp["extra_writes_per_s"]),
                         f"{1e6 / tp['extra_writes_per_s']:.0f} us: {tp['extra_write']}", ""))
        target = f"target >= {TARGET_RATIO:g}" if tp["pass"] is not None else "no target"
        rows.append(("  ratio CLP / raw", f"{tp['ratio']:.2f}", f"{target}; CLP adds {tp['overhead_us']:.0f} us",
                     verdict(tp["pass"]) if tp["pass"] is not None else ""))
        rows.append(("  split: adapter alone | lifecycle alone",
                     f"{tp['adapter_alone_us']:.0f} | {tp['lifecycle_alone_us']:.0f} us",
                     "save_versioned with no runtime | execute with no storage", ""))
        by = b["bytes_per_commit"]
        s, g = by["small"], by["big"]
        size_verdict = verdict(by["pass"]) if by["pass"] is not None else ""
        rows.append((f"  bytes written/commit, {SMALL_KEYS} vs {BIG_KEYS:,} keys",
                     f"{fmt_bytes(s['written_bytes'])} | {fmt_bytes(g['written_bytes'])}",
                     f"ratio {by['bytes_ratio']:.2f} (target <= {TARGET_BIG_BYTES:g}); over a cycle: one whole write "
                     f"({fmt_bytes(g['whole_write_bytes'])}, {g['whole_write_s'] * 1e3:.0f} ms) per "
                     f"{g['patches_per_base']:,.0f} patches of {fmt_bytes(g['step_bytes'])}; stored "
                     f"{fmt_bytes(s['stored_bytes'])} | {fmt_bytes(g['stored_bytes'])}", size_verdict))
        rows.append((f"  commits/s, {BIG_KEYS:,} vs {SMALL_KEYS} keys",
                     f"{1 / g['commit_s']:,.0f} | {1 / s['commit_s']:,.0f}",
                     f"ratio {by['rate_ratio']:.2f} (target >= {TARGET_BIG_RATE:g})", size_verdict))
        if g.get("spread_commit_s"):
            rows.append(("    whole write: later | first | after spread writes",
                         f"{g['whole_write_s'] * 1e3:.0f} | {g['first_whole_write_s'] * 1e3:.0f} | "
                         f"{g['spread_whole_write_s'] * 1e3:.0f} ms",
                         "medians of 3; later: a long-lived writer's (encodes the values written since: count); "
                         "first: after a load (encodes every value); spread: after a cycle whose every patch "
                         f"wrote another record ({g['patches_per_base']:,.0f} encoded again)", ""))
            rows.append(("    commits/s ratio with first | spread",
                         f"{by['reload_rate_ratio']:.2f} | {by['spread_rate_ratio']:.2f}",
                         "the cycle with that compaction instead (first: a runtime that loads once a cycle)", ""))
        mp = b.get("multiprocess")
        if mp is not None:
            rows.append((f"  {mp['processes']} processes x {mp['increments']}, one key",
                         f"{mp['final']} / {mp['expected']}",
                         f"{fmt_rate(mp['commits_per_s'])} in all; {mp['conflicts']} conflicts, worst commit "
                         f"{mp['most_conflicts_in_one_commit']}/{mp['max_conflict_retries']}; lost {mp['lost']}, "
                         f"gave up {mp['gave_up']}", verdict(mp["pass"])))

    env = res["environment"]
    servers = ", ".join(f"{k} {v}" for k, v in res.get("servers", {}).items())
    print(f"clp_core {env['clp_core']} | redis-py {env['redis_py']} | asyncpg {env['asyncpg']} | "
          f"Python {env['python']} | {env['platform']} | {env['cpus']} CPUs | {env['mode']} run")
    if servers:
        print(f"servers: {servers}")
    print_table(rows)
    print("bytes written/commit: what the runtime hands the adapter over the commits (patches, and whole documents")
    print("when compacting, averaged); stored: file size, SQLite length(data), Redis HSTRLEN d, PostgreSQL")
    print("pg_column_size(data) (TOAST-compressed): the base document only")
    print_targets(res["verdicts"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = QUICK if args.quick else FULL
    t0 = perf_counter()
    environment = run_environment(args.quick, cpus=os.cpu_count(), redis_py=_version("redis"),
                                  asyncpg=_version("asyncpg"))
    res: dict[str, Any] = {"environment": environment, "config": cfg, "backends": list(args.backends),
                           "results": {}, "servers": {}, "profiles": {}}
    for backend in make_backends(args):
        try:
            await backend.open()
        except Unavailable as exc:
            res["results"][backend.name] = {"skipped": str(exc)}
            print(f"{backend.name}: skipped: {exc}", file=sys.stderr)
            continue
        try:
            if getattr(backend, "server_version", None):
                res["servers"][backend.name] = backend.server_version  # type: ignore[attr-defined]
            print(f"{backend.name}: measuring...", file=sys.stderr)
            res["results"][backend.name] = {
                "throughput": await bench_throughput(backend, cfg),
                "bytes_per_commit": await bench_bytes(backend, cfg),
            }
            if not args.no_multiprocess:
                multi = await bench_multiprocess(backend, cfg, args.retries)
                if multi is not None:
                    res["results"][backend.name]["multiprocess"] = multi
            if args.profile:
                res["profiles"][backend.name] = await profile_commits(backend, cfg["commits"][backend.name])
        finally:
            await backend.close()
    res["verdicts"] = {
        f"{name}_ratio_vs_raw": res["results"][name].get("throughput", {}).get("pass")
        for name in TARGETED if name in res["results"]
    }
    for name, result in res["results"].items():
        if result.get("bytes_per_commit", {}).get("pass") is not None:
            res["verdicts"][f"{name}_big_state_commits"] = result["bytes_per_commit"]["pass"]
        if "multiprocess" in result:
            res["verdicts"][f"{name}_multiprocess_exact"] = result["multiprocess"]["pass"]
    res["elapsed_s"] = perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds, looser figures")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of each backend's CLP commit loop (top 25 by own time)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="which backends")
    parser.add_argument("--no-multiprocess", action="store_true", help="skip the several-processes-on-one-key run")
    parser.add_argument("--retries", type=int, default=None,
                        help="max_conflict_retries of the multi-process workers (default: the runtime's own)")
    parser.add_argument("--redis-url", default=os.environ.get("CLP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgres-dsn",
                        default=os.environ.get("CLP_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    add_result_options(parser, "storage.json")
    args = parser.parse_args(argv)

    res = asyncio.run(run(args))
    print_report(res)
    print(f"elapsed {res['elapsed_s']:.1f} s")
    for name, text in res["profiles"].items():
        print(f"\n== profile: {name}, CLP execute with storage ==")
        print(text)
    return finish(args.output, {k: v for k, v in res.items() if k != "profiles"}, res["verdicts"], args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(main())
