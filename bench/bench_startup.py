#!/usr/bin/env python
"""Start-up cost: a fresh interpreter imports clp_core, creates its first runtime (the default
configuration: every installed entry-point plugin discovered and configured) and commits once.
Target: at most 150 ms from the first line of the program to the committed entry.

    .venv/bin/python bench/bench_startup.py [--quick]

Each run is a new ``python`` process. A first run compiles the bytecode (under a temporary
``PYTHONPYCACHEPREFIX``: an installed package has its ``.pyc`` files) and warms the OS file
cache. The child times itself with ``time.perf_counter`` from its first statement, before
``import clp_core``, to after the first ``execute``; interpreter start-up itself (``site``,
the virtualenv's ``.pth`` files) comes before that and is printed apart: a ``python -c pass``
run, alternating with the others. Two variants: the default in-memory runtime, and a
persisted one (``storage="sqlite:///..."``). The child also lists which heavy libraries it
imported (none should be: drivers and plugin libraries load when first needed). Results in
``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import (
    add_result_options,
    finish,
    print_table,
    print_targets,
    run_environment,
    verdict,
)

TARGET_MS = 150.0
HEAVY = ("pydantic", "opentelemetry", "asyncpg", "pymongo", "redis", "httpx", "starlette", "llm", "limits",
         "purgatory", "tenacity", "typer")

CHILD = """
import time
t0 = time.perf_counter()
import asyncio, json, sys
import clp_core as clp
t1 = time.perf_counter()
contract = clp.create_contract(
    intents={"increment": {"inputs": {"amount": "number?"}}},
    state={"count": "number"},
    transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
)
async def main():
    options = {} if sys.argv[1] == "memory" else {"storage": sys.argv[1]}
    runtime = clp.create_runtime(contract, **options)
    t2 = time.perf_counter()
    await runtime.execute("increment")
    t3 = time.perf_counter()
    await runtime.close()
    return t2, t3
t2, t3 = asyncio.run(main())
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))
print(json.dumps({"import": t1 - t0, "runtime": t2 - t1, "commit": t3 - t2, "total": t3 - t0, "heavy": heavy}))
"""


_PYCACHE: str | None = None  # where the children keep their bytecode (set in main)


def child_env() -> dict[str, str]:
    """The environment without OTEL_* and CLP_* settings (the default configuration), writing
    and reading bytecode under a temporary prefix: an installed package has its ``.pyc`` files,
    so compiling sources (``PYTHONDONTWRITEBYTECODE``, a fresh checkout) is not start-up cost."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "CLP_")) and k != "PYTHONDONTWRITEBYTECODE"}
    if _PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


def run_child(variant: str, cwd: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, *HEAVY], capture_output=True, text=True,
                          cwd=cwd, env=child_env(), timeout=120)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_startup: the child failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def bare_python(cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=cwd, env=child_env(), timeout=60)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    add_result_options(parser, "startup.json")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else 15
    global _PYCACHE
    with tempfile.TemporaryDirectory(prefix="clp-bench-startup-") as tmp:
        _PYCACHE = os.path.join(tmp, "pycache")
        variants = {"memory": "memory", "sqlite": f"sqlite:///{os.path.join(tmp, 'state.db')}"}
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        bare: list[float] = []
        for variant in variants.values():  # compile the bytecode, warm the OS file cache
            run_child(variant, tmp)
        for _ in range(runs):  # alternate, so that a busy moment hits every variant
            bare.append(bare_python(tmp))
            for name, variant in variants.items():
                samples[name].append(run_child(variant, tmp))

    rows = []
    figures: dict[str, Any] = {}
    verdicts: dict[str, bool | None] = {}
    rows.append(("python -c pass (interpreter start-up)", f"{min(bare) * 1e3:.0f} ms",
                 f"median {statistics.median(bare) * 1e3:.0f} ms", ""))
    for name, runs_ in samples.items():
        best = min(runs_, key=lambda r: r["total"])
        median = statistics.median(r["total"] for r in runs_)
        heavy = sorted({m for r in runs_ for m in r["heavy"]})
        ok = best["total"] * 1e3 <= TARGET_MS and not heavy
        verdicts[f"startup_{name}_under_{TARGET_MS:.0f}ms"] = ok
        rows.append((f"{name}: import + first runtime + first commit", f"{best['total'] * 1e3:.0f} ms",
                     f"median {median * 1e3:.0f} ms; target <= {TARGET_MS:.0f} ms", verdict(ok)))
        rows.append(("  split: import clp_core | create_runtime | execute",
                     f"{best['import'] * 1e3:.0f} | {best['runtime'] * 1e3:.0f} | {best['commit'] * 1e3:.0f} ms",
                     "of the best run", ""))
        rows.append(("  heavy modules imported", ", ".join(heavy) or "none", "", ""))
        figures[name] = {"best_ms": best["total"] * 1e3, "median_ms": median * 1e3, "best_split_ms": {
            k: best[k] * 1e3 for k in ("import", "runtime", "commit")}, "heavy": heavy,
            "all_runs": runs_}
    print_table(rows)
    print_targets(verdicts)
    results = {"environment": run_environment(args.quick, cpus=os.cpu_count(), load_average=os.getloadavg()),
               "runs": runs,
               "target_ms": TARGET_MS, "python_startup_ms": [b * 1e3 for b in bare], "results": figures,
               "verdicts": verdicts}
    return finish(args.output, results, verdicts, args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(main())
