"""Several OS processes incrementing one counter through one storage URL: the proof that an
adapter's versioned saves lose no update (used by CLP's tests and bench; usable for yours)::

    result = await run_increments("redis://127.0.0.1:6379/0", "my:key", processes=4, increments=500)
    assert result.final == result.committed == 2000

Each worker (``python -m clp_core.testing.multiprocess URL KEY COUNT READY START RETRIES``)
hydrates, says it is ready, waits for the start file so that all begin together, then runs its
increments and prints one JSON line: successes, failures (with the first errors), the
conflicts its saves met (each then retried by the runtime) and the most one commit met.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

import clp_core as clp
from clp_core.errors import ClpError, ConflictError
from clp_core.resolve import resolve_storage

CORE_ONLY = {"disable": ["*"]}  # entry-point plugins play no part in the proof


def counter_contract() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {
            "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}},
    )


@attrs.frozen
class IncrementsResult:
    final: Any  # the count a fresh runtime reads afterwards
    committed: int  # increments that committed, over all workers
    expected: int  # processes x increments
    elapsed_s: float  # from the start signal to the last worker's end
    workers: list[dict[str, Any]]


async def run_increments(
    url: str, key: str, *, processes: int = 4, increments: int = 500, retries: int | None = None,
    ready_timeout: float = 60.0, run_timeout: float = 300.0,
) -> IncrementsResult:
    """Start ``processes`` workers on ``url``/``key`` together and collect their reports."""
    with tempfile.TemporaryDirectory(prefix="clp-multiprocess-") as tmp:
        start = Path(tmp) / "start"
        ready = [Path(tmp) / f"ready-{i}" for i in range(processes)]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "clp_core.testing.multiprocess", url, key, str(increments), str(path),
                str(start), "" if retries is None else str(retries),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            for path in ready
        ]
        try:
            deadline = time.monotonic() + ready_timeout
            while not all(path.exists() for path in ready):
                dead = [p for p in procs if p.returncode is not None]
                if dead:
                    _, err = await dead[0].communicate()
                    raise AssertionError(f"a worker exited before it was ready:\n{err.decode(errors='replace')}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"workers not ready within {ready_timeout:.0f} s")
                await asyncio.sleep(0.01)
            began = time.perf_counter()
            start.touch()  # every worker is connected and hydrated: go
            outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), run_timeout)
            elapsed = time.perf_counter() - began
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise AssertionError(f"worker failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    async with clp.create_runtime(counter_contract(), storage=url, storage_key=key, config=CORE_ONLY) as fresh:
        final = fresh.get_state("count")
    return IncrementsResult(final, sum(r["successes"] for r in reports), processes * increments, elapsed, reports)


async def _worker(url: str, key: str, count: int, ready: str, start: str, retries: int | None) -> dict[str, Any]:
    storage = resolve_storage(url)
    conflicts = 0
    save_versioned = storage.save_versioned

    async def counted(key: str, document: dict[str, Any], expected_version: int) -> int:
        nonlocal conflicts
        try:
            return int(await save_versioned(key, document, expected_version))
        except ConflictError:
            conflicts += 1
            raise

    storage.save_versioned = counted
    options: dict[str, Any] = {} if retries is None else {"max_conflict_retries": retries}
    runtime = clp.create_runtime(counter_contract(), storage=storage, storage_key=key, config=CORE_ONLY, **options)
    successes = failures = worst = 0
    errors: list[str] = []
    async with runtime:
        Path(ready).touch()
        deadline = time.monotonic() + 60
        while not os.path.exists(start):
            if time.monotonic() > deadline:
                raise SystemExit("no start signal within 60 s")
            await asyncio.sleep(0.001)
        began = time.perf_counter()
        for _ in range(count):
            before = conflicts
            try:
                await runtime.execute("increment")
                successes += 1
            except ClpError as exc:
                failures += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
            worst = max(worst, conflicts - before)
        elapsed = time.perf_counter() - began
    return {"pid": os.getpid(), "successes": successes, "failures": failures, "errors": errors,
            "conflicts": conflicts, "most_conflicts_in_one_commit": worst, "elapsed_s": elapsed,
            "max_conflict_retries": runtime.max_conflict_retries}


if __name__ == "__main__":
    _url, _key, _count, _ready, _start, _retries = sys.argv[1:7]
    print(json.dumps(asyncio.run(_worker(_url, _key, int(_count), _ready, _start,
                                         int(_retries) if _retries else None))))
