"""Overhead of the hook machinery: commit throughput with 0 plugins vs 10 no-op plugins that
implement every lifecycle hook (half sync, half async). Target: at most 30% slower.

    .venv/bin/python bench/bench_plugins.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _common import CORE_ONLY, RESULTS_DIR, settle, time_executes, write_results

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp

HOOKS = ("before_dispatch", "after_dispatch", "before_propose", "after_propose",
         "before_commit", "after_commit", "on_guard_deny", "on_error")


def noop_plugin(index: int) -> Any:
    """A plugin object implementing all eight lifecycle hooks as no-ops."""

    class NoOp:
        name = f"noop-{index}"

    plugin = NoOp()
    for hook in HOOKS:
        args = {"before_dispatch": "intent", "before_propose": "intent", "before_commit": "intent",
                "after_dispatch": "intent, entry", "after_propose": "intent, proposal",
                "after_commit": "intent, entry", "on_guard_deny": "guard, context", "on_error": "error, phase"}[hook]
        namespace: dict[str, Any] = {}
        keyword = "async def" if index % 2 else "def"
        exec(f"{keyword} {hook}({args}):\n    return None", namespace)  # real signatures for pluggy
        setattr(plugin, hook, namespace[hook])
    return plugin


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        guards=[{"name": "no_negative", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0}],
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
    )


async def rate(runtime: clp.Runtime, n: int) -> float:
    """``execute("increment", {"amount": 1})`` per second over ``n`` calls, after a full GC."""
    settle()
    return n / await time_executes(runtime, n)


async def main(quick: bool) -> dict[str, Any]:
    n, reps = (2_000, 3) if quick else (10_000, 5)
    bare = clp.create_runtime(contract(), config=CORE_ONLY)
    hooked = clp.create_runtime(contract(), config=CORE_ONLY,
                                middleware=[noop_plugin(i) for i in range(10)])
    assert all(hooked.hooks.has(h) for h in HOOKS)
    await rate(bare, n // 5)
    await rate(hooked, n // 5)
    best_bare = best_hooked = 0.0
    for _ in range(reps):  # alternate so drift hits both
        best_bare = max(best_bare, await rate(bare, n))
        best_hooked = max(best_hooked, await rate(hooked, n))
    slowdown = 1 - best_hooked / best_bare
    verdict = "PASS" if slowdown <= 0.30 else "MISS"
    print(f"{'execute(), 0 plugins':<40}{best_bare:>12,.0f}/s")
    print(f"{'execute(), 10 no-op plugins x 8 hooks':<40}{best_hooked:>12,.0f}/s")
    print(f"{'  slower by':<40}{slowdown:>12.1%}  target <= 30%  {verdict}")
    return {"bare_per_s": best_bare, "hooked_per_s": best_hooked, "slowdown": slowdown, "verdict": verdict}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke runs")
    results = asyncio.run(main(parser.parse_args().quick))
    write_results(RESULTS_DIR / "plugins.json", results)
