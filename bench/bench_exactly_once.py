#!/usr/bin/env python
"""The cost of exactly once: commit identity, and one emitted message per commit (the outbox).

Run from the repository root::

    .venv/bin/python bench/bench_exactly_once.py            # full run
    .venv/bin/python bench/bench_exactly_once.py --quick    # smoke run
    .venv/bin/python bench/bench_exactly_once.py --profile  # also cProfile each variant's loop

For each backend (memory as ``storage="memory://"``, sqlite, redis, postgresql; a server that is
not reachable, or whose plugin is not installed, is skipped with a note), ``await
runtime.execute("increment")`` per second on the counter contract, persisted, in three variants
whose repetitions alternate in this process:

- ``baseline``: ``intent_window=0``. Commit identity is always on (every intent has an id, on
  every log entry), but with a window of 0 no id is stored with the state: this is the plain
  commit the ratios are taken against.
- ``identity``: the default ``intent_window`` (32): the last 32 committed ids are written with
  the state on every commit. Target: at most 1.15x the baseline's time per commit.
- ``identity + 1 message``: the same, and the transition has an ``emit`` returning one message,
  delivered to a no-op async handler (``create_runtime(handlers=...)``); the message is saved
  with the state, delivered after the commit by a background task, and its delivery recorded by
  the next save. Each repetition ends with ``await runtime.drain()`` (inside the timing).
  Target: at most 1.5x the baseline. The cost of the message alone (over ``identity``) is printed
  too.

Results: a table, and ``bench/results/exactly_once.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from typing import Any

from _common import (
    CORE_ONLY,
    Row,
    add_result_options,
    finish,
    fmt_rate,
    print_table,
    print_targets,
    profile_text,
    run_environment,
    settle,
)

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp
from clp_core.testing.contracts import counter_contract

perf_counter = time.perf_counter

TARGETS = {"identity": 1.15, "message": 1.5}
BACKENDS = ("memory", "sqlite", "redis", "postgresql")
VARIANTS = ("baseline", "identity", "message")
KEY = "clp:bench:exactly-once"

FULL: dict[str, Any] = {
    "commits": {"memory": 10_000, "sqlite": 2_000, "redis": 3_000, "postgresql": 2_000},
    "warmup": 300, "reps": 7,
}
QUICK: dict[str, Any] = {
    "commits": {"memory": 2_000, "sqlite": 400, "redis": 600, "postgresql": 400},
    "warmup": 100, "reps": 3,
}


async def no_op(message: clp.Message) -> None:
    return None


class Unavailable(Exception):
    """The backend cannot be measured here; the message says why."""


@contextlib.asynccontextmanager
async def backend_url(name: str, args: argparse.Namespace) -> Any:
    """A storage URL of this run alone, cleaned up afterwards."""
    if name == "memory":
        yield "memory://"
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="clp-bench-eo-") as tmp:
            yield f"sqlite:///{os.path.join(tmp, 'bench.db')}"
    elif name == "redis":
        try:
            import clp_redis  # noqa: F401
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise Unavailable(f"clp-redis not installed ({exc})") from None
        client = aioredis.from_url(args.redis_url, socket_connect_timeout=2)
        try:
            await client.ping()
        except Exception as exc:
            await client.aclose()
            raise Unavailable(f"Redis at {args.redis_url}: {type(exc).__name__}") from None
        prefix = f"clp-bench-eo:{uuid.uuid4().hex}:"
        try:
            yield f"{args.redis_url}?prefix={prefix}"
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    else:
        try:
            import asyncpg
            import clp_postgres  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"clp-postgres not installed ({exc})") from None
        try:
            conn = await asyncpg.connect(args.postgres_dsn, timeout=5)
        except Exception as exc:
            raise Unavailable(f"PostgreSQL at {args.postgres_dsn}: {type(exc).__name__}") from None
        table = f"clp_bench_eo_{uuid.uuid4().hex[:12]}"
        try:
            yield f"{args.postgres_dsn}?table={table}"
        finally:
            await conn.execute(f'DROP TABLE IF EXISTS "public"."{table}", "public"."{table}_patches"')
            await conn.close()


def make_runtime(url: str, variant: str) -> clp.Runtime:
    options: dict[str, Any] = {"storage": url, "storage_key": f"{KEY}:{variant}", "config": CORE_ONLY}
    if variant == "baseline":
        options["intent_window"] = 0
    if variant == "message":
        options["handlers"] = {"counted": no_op}
    return clp.create_runtime(counter_contract(emit=variant == "message"), **options)


async def commits(runtime: clp.Runtime, n: int) -> float:
    """Seconds for ``n`` ``execute("increment")`` then ``drain()`` (the deliveries and their record)."""
    execute = runtime.execute
    t0 = perf_counter()
    for _ in range(n):
        await execute("increment")
    await runtime.drain()
    return perf_counter() - t0


async def bench_backend(name: str, url: str, cfg: dict[str, Any], profile: bool) -> dict[str, Any]:
    n = cfg["commits"][name]
    runtimes = {variant: make_runtime(url, variant) for variant in VARIANTS}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    profiles: dict[str, str] = {}
    try:
        for runtime in runtimes.values():
            await runtime.hydrate()
            await commits(runtime, cfg["warmup"])
        for rep in range(cfg["reps"]):
            order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]  # alternate, so drift hits all
            for variant in order:
                settle()
                times[variant].append(await commits(runtimes[variant], n) / n)
        if profile:
            for variant, runtime in runtimes.items():
                profiles[variant] = await profile_text(lambda r=runtime: commits(r, n), 25)  # type: ignore[misc]
        assert runtimes["message"].pending_messages() == []
        stored = await runtimes["identity"].storage.load(f"{KEY}:identity")
        assert stored is not None and len(stored["intents"]["ids"].split()) == 32
        baseline_doc = await runtimes["baseline"].storage.load(f"{KEY}:baseline")
        assert baseline_doc is not None and not baseline_doc["intents"]["ids"]
    finally:
        for runtime in runtimes.values():
            await runtime.close()
    best = {variant: min(ts) for variant, ts in times.items()}
    return {
        "commits_per_rep": n,
        "us_per_commit": {v: best[v] * 1e6 for v in VARIANTS},
        "commits_per_s": {v: 1 / best[v] for v in VARIANTS},
        "ratio_identity": best["identity"] / best["baseline"],
        "ratio_message": best["message"] / best["baseline"],
        "ratio_message_over_identity": best["message"] / best["identity"],
        "reps_us": {v: [t * 1e6 for t in ts] for v, ts in times.items()},
        **({"profiles": profiles} if profile else {}),
    }


def rows_for(name: str, r: dict[str, Any]) -> tuple[list[Row], dict[str, bool]]:
    us = r["us_per_commit"]
    ok_id = r["ratio_identity"] <= TARGETS["identity"]
    ok_msg = r["ratio_message"] <= TARGETS["message"]
    labels = {"baseline": "baseline (intent_window=0)", "identity": "identity (window 32)",
              "message": "identity + 1 message"}
    rows: list[Row] = [(f"{name}: {labels[v]}", fmt_rate(r["commits_per_s"][v]), f"{us[v]:.0f} us/commit", "")
                       for v in VARIANTS]
    rows += [
        (f"{name}: ratio identity / baseline", f"{r['ratio_identity']:.3f}x",
         f"target <= {TARGETS['identity']}x", "PASS" if ok_id else "MISS"),
        (f"{name}: ratio with message / baseline", f"{r['ratio_message']:.3f}x",
         f"target <= {TARGETS['message']}x; {r['ratio_message_over_identity']:.3f}x over identity",
         "PASS" if ok_msg else "MISS"),
    ]
    return rows, {f"{name}_identity": ok_id, f"{name}_message": ok_msg}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer commits and repetitions")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each variant's loop")
    parser.add_argument("--redis-url", default=os.environ.get("CLP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgres-dsn",
                        default=os.environ.get("CLP_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    add_result_options(parser, "exactly_once.json")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    results: dict[str, Any] = {"environment": run_environment(args.quick), "config": cfg,
                               "targets": TARGETS, "results": {}, "skipped": {}, "verdicts": {}}
    rows: list[Row] = []
    verdicts: dict[str, bool | None] = {}
    for name in args.backends:
        try:
            async with backend_url(name, args) as url:
                r = await bench_backend(name, url, cfg, args.profile)
        except Unavailable as why:
            print(f"{name}: skipped ({why})", file=sys.stderr)
            results["skipped"][name] = str(why)
            verdicts[f"{name}_identity"] = verdicts[f"{name}_message"] = None
            continue
        results["results"][name] = r
        backend_rows, backend_verdicts = rows_for(name, r)
        rows += backend_rows
        verdicts.update(backend_verdicts)
        if args.profile:
            for variant, text in r["profiles"].items():
                print(f"--- {name} {variant} ---\n{text}")
    results["verdicts"] = verdicts
    if rows:
        print_table(rows)
    print_targets(verdicts)
    return finish(args.output, results, verdicts, args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
