#!/usr/bin/env python
"""Many aggregates: 100,000 distinct keys, one commit each, through ``clp.Runtimes``, next to the
raw driver writing the same documents, on SQLite, Redis and PostgreSQL.

    .venv/bin/python bench/bench_scale.py            # 100,000 aggregates per side and backend
    .venv/bin/python bench/bench_scale.py --quick    # 2,000

The CLP side is ``await runtimes.execute(key, "increment")`` for ``key`` = 0, 1, 2... on one
``clp.Runtimes(counter, storage=<the backend's adapter>, max_live=1000)``: each key is a new
aggregate, so each call builds a runtime, hydrates it (one read: the key is absent), commits
(one versioned save of a new key: an insert), and, past 1,000 live runtimes, evicts and closes
the least recently used one. Every runtime shares the one adapter (one connection pool).

The raw side writes the same bytes to as many new keys with the driver alone, one statement per
key: SQLite ``INSERT ... ON CONFLICT(key) DO NOTHING`` in a thread (as the adapter), Redis
``EVALSHA`` of clp-redis's compare-and-set script with version 0, PostgreSQL the adapter's
``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING version`` on one asyncpg connection. A
second raw figure adds the read CLP's hydration does (a ``SELECT`` / ``HMGET`` of the key
first): the same round trips as CLP. The document is the one CLP stored for its first key.

The two sides alternate in chunks of a tenth of the keys, so that drift of a shared machine
hits both; rates are over the totals. Ratio CLP / raw has no target: it shows what a runtime
per aggregate costs over the bare writes. Results in ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from _common import (
    CORE_ONLY,
    Row,
    add_result_options,
    counter_contract,
    finish,
    fmt_rate,
    print_table,
    run_environment,
)
from bench_storage import PostgresBackend, RedisBackend, SQLiteBackend, Unavailable

import clp_core as clp
from clp_core import codec

perf_counter = time.perf_counter
BACKENDS = ("sqlite", "redis", "postgresql")
CHUNKS = 10
MAX_LIVE = 1000


class ScaleSQLite(SQLiteBackend):
    async def raw_prepare(self, payload: str) -> None:
        self.payload = payload
        self._connect()

    async def raw_new_keys(self, keys: list[str], read: bool) -> float:
        conn, payload = self._connect(), self.payload
        insert = "INSERT INTO clp_state (key, version, data) VALUES (?, 1, ?) ON CONFLICT(key) DO NOTHING"
        select = "SELECT data, version FROM clp_state WHERE key = ?"

        def get(key: str) -> Any:
            return conn.execute(select, (key,)).fetchone()

        def put(key: str) -> int:
            return conn.execute(insert, (key, payload)).rowcount

        t0 = perf_counter()
        for key in keys:
            if read and await asyncio.to_thread(get, key) is not None:
                raise AssertionError("raw sqlite key exists")
            if await asyncio.to_thread(put, key) != 1:
                raise AssertionError("raw sqlite insert found the key")
        return perf_counter() - t0


class ScaleRedis(RedisBackend):
    async def raw_prepare(self, payload: str) -> None:
        self.payload = payload.encode()
        self.script = self.client.register_script(self.script_source)

    async def raw_new_keys(self, keys: list[str], read: bool) -> float:
        script, payload, hmget, prefix = self.script, self.payload, self.client.hmget, self.prefix
        t0 = perf_counter()
        for key in keys:
            name = (prefix + key).encode()
            if read and (await hmget(name, ["v", "d"]))[0] is not None:
                raise AssertionError("raw redis key exists")
            ok, _ = await script(keys=[name], args=[0, payload, key, ""])
            if not ok:
                raise AssertionError("raw redis write lost its version")
        return perf_counter() - t0


class ScalePostgres(PostgresBackend):
    async def raw_prepare(self, payload: str) -> None:
        from clp_postgres._common import to_jsonb

        self.payload = to_jsonb(payload)
        name = f'"public"."{self.table}"'
        self.insert = (f"INSERT INTO {name} (key, version, data, updated_at) VALUES ($1, 1, $2::text::jsonb, now()) "
                       "ON CONFLICT (key) DO NOTHING RETURNING version")
        self.select = f"SELECT data::text, version FROM {name} WHERE key = $1"

    async def raw_new_keys(self, keys: list[str], read: bool) -> float:
        fetchval, fetchrow, insert, select, payload = (self.conn.fetchval, self.conn.fetchrow, self.insert,
                                                       self.select, self.payload)
        t0 = perf_counter()
        for key in keys:
            if read and await fetchrow(select, key) is not None:
                raise AssertionError("raw postgresql key exists")
            if await fetchval(insert, key, payload) is None:
                raise AssertionError("raw postgresql insert found the key")
        return perf_counter() - t0


async def clp_new_keys(runtimes: clp.Runtimes, keys: list[str]) -> float:
    execute = runtimes.execute
    t0 = perf_counter()
    for key in keys:
        await execute(key, "increment")
    return perf_counter() - t0


async def bench_backend(backend: Any, n: int) -> dict[str, Any]:
    adapter = backend.adapter()
    runtimes = clp.Runtimes(counter_contract(), storage=adapter, max_live=MAX_LIVE, config=CORE_ONLY)
    try:
        await runtimes.execute("probe", "increment")
        document = await adapter.load("probe")
        await backend.raw_prepare(codec.encode(document))
        await clp_new_keys(runtimes, [f"warm:{i}" for i in range(200)])
        await backend.raw_new_keys([f"raw:warm:{i}" for i in range(200)], read=True)
        chunk = max(1, n // CHUNKS)
        clp_t: list[float] = []
        raw_t: list[float] = []
        read_t: list[float] = []
        for c in range(CHUNKS):  # alternate, so drift hits every side
            span = range(c * chunk, (c + 1) * chunk)
            clp_t.append(await clp_new_keys(runtimes, [f"agg:{i}" for i in span]))
            raw_t.append(await backend.raw_new_keys([f"raw:agg:{i}" for i in span], read=False))
            read_t.append(await backend.raw_new_keys([f"raw:read:{i}" for i in span], read=True))
        total = chunk * CHUNKS
        assert len(runtimes) <= MAX_LIVE and runtimes.created == total + 201, (len(runtimes), runtimes.created)
        async with runtimes.get(f"agg:{total // 2}") as runtime:  # evicted long ago: hydrated again
            assert runtime.get_state("count") == 1
    finally:
        await runtimes.close()
    clp_rate, raw_rate, read_rate = total / sum(clp_t), total / sum(raw_t), total / sum(read_t)
    return {
        "aggregates": total, "chunks": CHUNKS, "max_live": MAX_LIVE,
        "clp_commits_per_s": clp_rate, "raw_writes_per_s": raw_rate, "raw_read_writes_per_s": read_rate,
        "ratio_vs_raw_write": clp_rate / raw_rate, "ratio_vs_raw_read_write": clp_rate / read_rate,
        "clp_us_per_aggregate": sum(clp_t) / total * 1e6, "raw_us_per_write": sum(raw_t) / total * 1e6,
        "raw_us_per_read_write": sum(read_t) / total * 1e6,
        "evicted": runtimes.evicted, "created": runtimes.created,
        "all_chunks_s": {"clp": clp_t, "raw_write": raw_t, "raw_read_write": read_t},
    }


def make_backends(args: argparse.Namespace) -> list[Any]:
    made = {"sqlite": ScaleSQLite(), "redis": ScaleRedis(args.redis_url),
            "postgresql": ScalePostgres(args.postgres_dsn)}
    return [made[name] for name in args.backends]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 100_000
    res: dict[str, Any] = {"environment": run_environment(args.quick, cpus=os.cpu_count(),
                                                          load_average=os.getloadavg()),
                           "aggregates": n, "results": {}}
    for backend in make_backends(args):
        try:
            await backend.open()
        except Unavailable as exc:
            res["results"][backend.name] = {"skipped": str(exc)}
            print(f"{backend.name}: skipped: {exc}", file=sys.stderr)
            continue
        try:
            print(f"{backend.name}: {n:,} aggregates per side...", file=sys.stderr)
            res["results"][backend.name] = await bench_backend(backend, n)
        finally:
            await backend.close()
    return res


def print_report(res: dict[str, Any]) -> None:
    rows: list[Row] = []
    for name, r in res["results"].items():
        if "skipped" in r:
            rows.append((name, "skipped", r["skipped"], "SKIP"))
            continue
        rows.append((f"{name}: Runtimes.execute, new aggregate", fmt_rate(r["clp_commits_per_s"]),
                     f"{r['clp_us_per_aggregate']:.0f} us; {r['aggregates']:,} keys, max_live {r['max_live']}, "
                     f"{r['evicted']:,} evicted", ""))
        rows.append((f"{name}: raw write of a new key", fmt_rate(r["raw_writes_per_s"]),
                     f"{r['raw_us_per_write']:.0f} us", ""))
        rows.append((f"{name}: raw read + write", fmt_rate(r["raw_read_writes_per_s"]),
                     f"{r['raw_us_per_read_write']:.0f} us (CLP's round trips: hydrate, save)", ""))
        rows.append(("  ratio CLP / raw write | / raw read + write",
                     f"{r['ratio_vs_raw_write']:.2f} | {r['ratio_vs_raw_read_write']:.2f}", "no target", ""))
    print_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 aggregates per side instead of 100,000")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--redis-url", default=os.environ.get("CLP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgres-dsn",
                        default=os.environ.get("CLP_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    add_result_options(parser, "scale.json")
    args = parser.parse_args(argv)
    t0 = perf_counter()
    res = asyncio.run(run(args))
    res["elapsed_s"] = perf_counter() - t0
    print_report(res)
    print(f"elapsed {res['elapsed_s']:.1f} s")
    return finish(args.output, res, {}, args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(main())
