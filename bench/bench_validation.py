#!/usr/bin/env python
"""What run-time validation (clp-pydantic) costs a commit, on the counter contract.

Run from the repository root, with clp-pydantic installed
(``.venv/bin/pip install -e plugins/clp-pydantic``)::

    .venv/bin/python bench/bench_validation.py            # full run (about 20 seconds)
    .venv/bin/python bench/bench_validation.py --quick    # smoke run (a few seconds)

Three runtimes of the counter contract (intent ``increment(amount: number?)``, state
``count: number``, one transition adding ``amount`` to ``count``) do the same work,
``await runtime.dispatch("increment", {"amount": 1})`` then ``await runtime.commit()``:

- ``off``: no ``validation=`` (the runtime checks the type strings itself, as 0.1 did);
- ``type strings``: ``validation={"strict": True}``: pydantic validators compiled from the
  contract's type strings check the payload at dispatch and the state at commit;
- ``models``: ``validation={"strict": True, "schema": {"increment": IncrementPayload},
  "state": CounterState}``: hand-written pydantic models, with constraints (``ge=0``).

Every runtime is created with ``config={"disable": ["*"], "enable": ["clp-pydantic"]}``: other
installed plugins' hooks would add the same cost to each variant and hide the one measured.
Figures are dispatch+commit pairs per second (best of many short repetitions, interleaved
across the variants, a full GC every ten rounds: on a busy machine only short runs ever run
undisturbed) and the cost ratio ``time validated / time off``. Target: each validated
runtime costs at most 2x the unvalidated one. ``execute()`` is timed the same way (no
target), and the time of one ``validate_payload`` / ``validate_state`` call is printed to
show where the cost is. Results go to ``bench/results/validation.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    counter_contract,
    finish,
    git_commit,
    settle,
    time_dispatch_commits,
    time_executes,
)

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp

try:
    import clp_pydantic
    import pydantic
    from pydantic import BaseModel, Field
except ImportError:  # pragma: no cover - reported, not crashed on
    sys.exit("bench_validation needs clp-pydantic: .venv/bin/pip install -e plugins/clp-pydantic")

perf_counter = time.perf_counter
TARGET_COST_RATIO = 2.0  # validated dispatch+commit time <= 2x unvalidated
# Other installed plugins' lifecycle hooks (tracing, audit...) would add the same cost to every
# variant and hide the cost of validation: only the validator plugin is enabled.
ISOLATED = {"disable": ["*"], "enable": ["clp-pydantic"]}

# Many short repetitions, interleaved across variants: the best of each is then taken from
# moments when the machine was quiet, which keeps the ratios steady on a busy machine.
FULL = {"pairs": 300, "warmup": 3_000, "reps": 200, "calls": 200_000}
QUICK = {"pairs": 300, "warmup": 500, "reps": 60, "calls": 20_000}


class IncrementPayload(BaseModel):
    amount: int | None = Field(default=None, ge=0)


class CounterState(BaseModel):
    count: int = Field(default=0, ge=0)


VARIANTS: dict[str, dict[str, Any] | None] = {
    "off": None,
    "type_strings": {"strict": True},
    "models": {"strict": True, "schema": {"increment": IncrementPayload}, "state": CounterState},
}


async def interleaved(cfg: dict[str, int], run: Callable[[clp.Runtime, int], Awaitable[float]]) -> dict[str, Any]:
    """Time ``run`` on one runtime per variant, repetitions interleaved across variants."""
    n, warm, reps = cfg["pairs"], cfg["warmup"], cfg["reps"]
    contract = counter_contract()
    runtimes = {name: clp.create_runtime(contract, initial_state={"count": 0}, validation=options, config=ISOLATED)
                for name, options in VARIANTS.items()}
    for runtime in runtimes.values():
        await run(runtime, warm)
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for rep in range(reps):
        if rep % 10 == 0:  # a full collection walks every runtime's log: not before each run
            settle()
        for name, runtime in runtimes.items():
            times[name].append(await run(runtime, n))
    expected = warm + n * reps
    for name, runtime in runtimes.items():
        assert runtime.get_state("count") == expected, f"{name}: counter lost updates"
    base = min(times["off"])
    out: dict[str, Any] = {"iterations": n, "repetitions": reps}
    for name, ts in times.items():
        out[name] = {
            "per_s": n / min(ts),
            "us": min(ts) / n * 1e6,
            "cost_ratio": min(ts) / base,
            "all_runs_s": ts,
        }
    return out


def best_time(call: Callable[[], Any], n: int, reps: int = 3) -> float:
    """Best of ``reps`` timings of ``n`` calls, in seconds per call."""
    best = float("inf")
    for _ in range(reps):
        t0 = perf_counter()
        for _ in range(n):
            call()
        best = min(best, perf_counter() - t0)
    return best / n


def call_cost(cfg: dict[str, int]) -> dict[str, float]:
    """Microseconds of one validator call, per variant (what the ratio is made of)."""
    contract = counter_contract()
    payload = {"amount": 1}
    state = clp.StateView({"count": 5})
    out = {}
    for name, options in VARIANTS.items():
        if options is None:
            continue
        validator = clp_pydantic.create_validator(contract, options)
        out[f"{name}.validate_payload_us"] = best_time(
            partial(validator.validate_payload, "increment", payload, complete=False), cfg["calls"]) * 1e6
        out[f"{name}.validate_state_us"] = best_time(partial(validator.validate_state, state), cfg["calls"]) * 1e6
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "validation.json")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    pair = await interleaved(cfg, time_dispatch_commits)
    execute = await interleaved(cfg, time_executes)
    micro = call_cost(cfg)

    verdicts = {}
    for name in ("type_strings", "models"):
        ratio = pair[name]["cost_ratio"]
        verdicts[name] = {"ratio": ratio, "target": f"cost ratio <= {TARGET_COST_RATIO}",
                          "pass": ratio <= TARGET_COST_RATIO}

    print(f"clp-pydantic {clp_pydantic.__version__}, pydantic {pydantic.VERSION}, Python {platform.python_version()}")
    print(f"{'counter contract':<44}{'pairs/s':>12}{'us/pair':>10}{'cost':>8}  target")
    labels = {"off": "dispatch+commit, validation off",
              "type_strings": "dispatch+commit, models from type strings",
              "models": "dispatch+commit, hand-written models"}
    for name, label in labels.items():
        row = pair[name]
        verdict = ""
        if name in verdicts:
            verdict = f"<= {TARGET_COST_RATIO}x  {'PASS' if verdicts[name]['pass'] else 'MISS'}"
        print(f"{label:<44}{row['per_s']:>12,.0f}{row['us']:>10.2f}{row['cost_ratio']:>7.2f}x  {verdict}")
    for name in VARIANTS:
        row = execute[name]
        print(f"{'execute(), ' + name.replace('_', ' '):<44}{row['per_s']:>12,.0f}{row['us']:>10.2f}"
              f"{row['cost_ratio']:>7.2f}x")
    for key, us in micro.items():
        print(f"  {key:<42}{us:>22.2f}")

    result = {
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(),
            "clp_core": clp.__version__, "clp_pydantic": clp_pydantic.__version__,
            "pydantic": pydantic.VERSION, "git_commit": git_commit(short=False),
        },
        "config": {"quick": args.quick, **cfg},
        "dispatch_commit": pair,
        "execute": execute,
        "validator_calls_us": micro,
        "verdicts": verdicts,
    }
    return finish(args.output, result, {name: v["pass"] for name, v in verdicts.items()}, args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
