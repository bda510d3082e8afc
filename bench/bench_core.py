#!/usr/bin/env python
"""Core benchmarks for clp_core: lifecycle throughput, commit cost vs state size, log memory.

Run from the repository root::

    .venv/bin/python bench/bench_core.py            # full run (under a minute)
    .venv/bin/python bench/bench_core.py --quick    # smoke run (a few seconds)
    .venv/bin/python bench/bench_core.py --profile  # also print cProfiles of dispatch+commit, execute

Every figure is measured in this process: ``time.perf_counter``, warm-up rounds first, and
the best of several repetitions (the run least disturbed by the machine). Results are printed
as a table with target verdicts and written to ``bench/results/core.json``.

1. ``throughput``: ``await runtime.dispatch(...)`` + ``await runtime.commit()`` pairs per
   second on the counter contract, next to ``transitions.extensions.asyncio.AsyncMachine``
   triggers per second on the equivalent machine (one state, a reflexive trigger with a
   condition and an ``after`` callback incrementing a counter on the model). Target: CLP at
   least 3x. ``await runtime.execute(...)`` per second (one execute = one trigger), against
   the same triggers and against Apache Burr's ``await app.astep(...)`` on the equivalent
   application (one async action reading ``count`` and writing ``count + amount``, built with
   ``ApplicationBuilder``, in memory: no tracker, no persister). Targets: at least 3x each.
   Burr's sync ``app.step()`` is printed for information.
2. ``commit_scaling``: mean time of one ``commit()`` on a state with 100,000 other keys
   (top level, or nested under one key with the commit writing inside that key) over the
   same on a 10-key state of the same shape. Target: at most 2x. Memory runtime, no storage.
3. ``log_memory``: bytes retained per audit-log entry (tracemalloc, unbounded log), and the
   memory retained after 10,000 commits with ``log_limit=1000``: it must stay at about 1000
   entries' worth (target: at most 1.25x that).
4. ``startup``: ``create_runtime(storage="memory://")`` + its first dispatch+commit, with no
   lifecycle plugins, over one dispatch+commit on an existing runtime of the same kind
   (target: at most 3x). The plugin manager is built once per configuration and shared, so
   creating a runtime registers nothing with pluggy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
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
    time_dispatch_commits,
    time_executes,
    verdict,
)

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp


def _load_machine() -> tuple[Any, str | None]:
    """pytransitions' AsyncMachine and version, or ``(None, None)`` when not installed."""
    try:
        import transitions
        from transitions.extensions.asyncio import AsyncMachine
    except ImportError:  # reported in the output
        return None, None
    return AsyncMachine, getattr(transitions, "__version__", None)


AsyncMachine, TRANSITIONS_VERSION = _load_machine()


def _load_burr() -> tuple[Any, str | None]:
    """Apache Burr's ``burr.core`` and version, or ``(None, None)`` when not installed."""
    try:
        import importlib.metadata

        import burr.core
    except ImportError:  # reported in the output
        return None, None
    try:
        version: str | None = importlib.metadata.version("apache-burr")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return burr.core, version


burr_core, BURR_VERSION = _load_burr()

perf_counter = time.perf_counter

TARGET_THROUGHPUT_RATIO = 3.0  # CLP dispatch+commit pairs/s >= 3x pytransitions triggers/s
TARGET_EXECUTE_RATIO = 3.0  # CLP execute/s >= 3x pytransitions triggers/s, and >= 3x Burr astep/s
TARGET_COMMIT_RATIO = 2.0  # commit on 100k-key state <= 2x commit on 10-key state
TARGET_LOG_BOUND = 1.25  # retained after 10k commits <= 1.25x (log_limit entries' worth)
TARGET_STARTUP_RATIO = 3.0  # new runtime + first commit <= 3x one commit on an existing runtime
BIG_KEYS = 100_000
SMALL_KEYS = 10
LOG_LIMIT = 1000

FULL = {
    "pairs": 5_000, "pairs_warmup": 3_000, "pairs_reps": 15,  # short repetitions, many: the best is less noisy
    "commits": 5_000, "commits_warmup": 1_000, "commit_reps": 5,
    "mem_commits": 10_000, "bounded_commits": 10_000,
    "startups": 2_000, "startup_reps": 5,
}
QUICK = {
    "pairs": 1_500, "pairs_warmup": 500, "pairs_reps": 5,
    "commits": 1_000, "commits_warmup": 200, "commit_reps": 3,
    "mem_commits": 2_000, "bounded_commits": 10_000,
    "startups": 300, "startup_reps": 3,
}


# -- the contracts (the counter itself is _common.counter_contract) ----------------------------
def nested_counter_contract() -> clp.Contract:
    """The counter writing ``data.count``, inside the (possibly huge) ``data`` object."""
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"data": {"count": "number"}},
        transitions={
            "apply": {
                "when": lambda ctx: ctx.intent.complete,
                "effects": lambda ctx: {
                    "data.count": (ctx.state["data"].get("count") or 0) + (ctx.intent.payload.get("amount") or 1)
                },
            }
        },
    )


def wide_state(others: int) -> dict[str, Any]:
    return {"count": 0, **small_records(others)}


def nested_state(others: int) -> dict[str, Any]:
    return {"data": {"count": 0, **small_records(others)}}


class CounterModel:
    """The pytransitions side: a model with a counter, a condition and an after-callback."""

    def __init__(self) -> None:
        self.count = 0

    def is_complete(self, amount: Any = None) -> bool:
        return True

    def add(self, amount: Any = None) -> None:
        self.count += amount or 1


def counter_machine() -> CounterModel:
    assert AsyncMachine is not None
    model = CounterModel()
    AsyncMachine(
        model=model,
        states=["counting"],
        initial="counting",
        transitions=[{"trigger": "increment", "source": "counting", "dest": "=",
                      "conditions": "is_complete", "after": "add"}],
        auto_transitions=False,
    )
    return model


def counter_application(run_async: bool) -> Any:
    """The Burr side: one action reading ``count`` and writing ``count + amount`` (async for
    ``astep``, sync for ``step``), looping on itself; built as Burr's hello-world counter is,
    without its tracker and persister (nothing leaves memory)."""
    assert burr_core is not None
    State = burr_core.State

    if run_async:
        @burr_core.action(reads=["count"], writes=["count"])
        async def increment(state: State, amount: int | None = None) -> State:
            return state.update(count=state["count"] + (amount or 1))
    else:
        @burr_core.action(reads=["count"], writes=["count"])
        def increment(state: State, amount: int | None = None) -> State:
            return state.update(count=state["count"] + (amount or 1))

    return (
        burr_core.ApplicationBuilder()
        .with_actions(increment=increment)
        .with_transitions(("increment", "increment"))
        .with_state(count=0)
        .with_entrypoint("increment")
        .build()
    )


# -- 1. throughput (CLP's loops are _common.time_dispatch_commits and time_executes) ------------
async def machine_triggers(model: CounterModel, n: int) -> float:
    trigger = model.increment  # type: ignore[attr-defined]
    t0 = perf_counter()
    for _ in range(n):
        await trigger(amount=1)
    return perf_counter() - t0


async def burr_asteps(app: Any, n: int) -> float:
    astep, inputs = app.astep, {"amount": 1}
    t0 = perf_counter()
    for _ in range(n):
        await astep(inputs=inputs)
    return perf_counter() - t0


async def burr_steps(app: Any, n: int) -> float:
    step, inputs = app.step, {"amount": 1}
    t0 = perf_counter()
    for _ in range(n):
        step(inputs=inputs)
    return perf_counter() - t0


def _ratio(result: dict[str, Any], name: str, ours: str, theirs: str, target: float, missing: str) -> None:
    """``result[name]``: ratio, target and verdict of ``ours`` over ``theirs`` (both per second)."""
    if theirs not in result:
        result[name] = {"ratio": None, "target": missing, "pass": None}
        return
    ratio = result[ours] / result[theirs]
    result[name] = {"ratio": ratio, "target": f"ratio >= {target}", "pass": ratio >= target}


async def bench_throughput(cfg: dict[str, int]) -> dict[str, Any]:
    n, warm, reps = cfg["pairs"], cfg["pairs_warmup"], cfg["pairs_reps"]
    contract = counter_contract()
    pairs_rt = clp.create_runtime(contract, initial_state={"count": 0}, config=CORE_ONLY)
    exec_rt = clp.create_runtime(contract, initial_state={"count": 0}, config=CORE_ONLY)
    # name -> (timing loop, what it runs on): every side runs n times per repetition
    sides: dict[str, tuple[Any, Any]] = {
        "dispatch_commit": (time_dispatch_commits, pairs_rt),
        "execute": (time_executes, exec_rt),
    }
    if AsyncMachine is not None:
        sides["transitions"] = (machine_triggers, counter_machine())
    if burr_core is not None:
        sides["burr_astep"] = (burr_asteps, counter_application(run_async=True))
        sides["burr_step"] = (burr_steps, counter_application(run_async=False))

    for run, subject in sides.values():
        await run(subject, warm)
    # Interleave the repetitions so that drift of the machine hits every side alike.
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, (run, subject) in sides.items():
            settle()
            runs[name].append(await run(subject, n))

    total = warm + n * reps
    assert pairs_rt.get_state("count") == total, "CLP counter lost updates"
    assert exec_rt.get_state("count") == total, "CLP counter (execute) lost updates"
    if "transitions" in sides:
        assert sides["transitions"][1].count == total, "pytransitions counter lost updates"
    for name in ("burr_astep", "burr_step"):
        if name in sides:
            assert sides[name][1].state["count"] == total, f"Burr counter ({name}) lost updates"
    result: dict[str, Any] = {
        "iterations": n, "repetitions": reps,
        "clp_dispatch_commit_per_s": n / min(runs["dispatch_commit"]),
        "clp_dispatch_commit_us": min(runs["dispatch_commit"]) / n * 1e6,
        "clp_execute_per_s": n / min(runs["execute"]),
        "clp_execute_us": min(runs["execute"]) / n * 1e6,
        "all_runs_s": runs,
    }
    for name, rate, unit in (("transitions", "transitions_triggers_per_s", "transitions_trigger_us"),
                             ("burr_astep", "burr_astep_per_s", "burr_astep_us"),
                             ("burr_step", "burr_step_per_s", "burr_step_us")):
        if name in sides:
            result[rate], result[unit] = n / min(runs[name]), min(runs[name]) / n * 1e6
    no_fsm = "pytransitions not installed: pip install 'clp-core[bench]'"
    no_burr = "apache-burr not installed: pip install 'clp-core[bench]'"
    _ratio(result, "vs_transitions", "clp_dispatch_commit_per_s", "transitions_triggers_per_s",
           TARGET_THROUGHPUT_RATIO, no_fsm)
    _ratio(result, "execute_vs_transitions", "clp_execute_per_s", "transitions_triggers_per_s",
           TARGET_EXECUTE_RATIO, no_fsm)
    _ratio(result, "execute_vs_burr", "clp_execute_per_s", "burr_astep_per_s", TARGET_EXECUTE_RATIO, no_burr)
    _ratio(result, "execute_vs_burr_step", "clp_execute_per_s", "burr_step_per_s", 0.0, no_burr)
    result["execute_vs_burr_step"].update(target="information (Burr's sync step)", **{"pass": None})
    # the dispatch+commit figures, where earlier results had them
    result.update(ratio=result["vs_transitions"]["ratio"], target=result["vs_transitions"]["target"],
                  **{"pass": result["vs_transitions"]["pass"]})
    return result


# -- 2. commit cost vs state size -------------------------------------------------------------
async def commit_time(runtime: clp.Runtime, n: int) -> float:
    """Mean seconds of one ``commit()`` (the dispatch before it is not timed)."""
    dispatch, commit = runtime.dispatch, runtime.commit
    payload = {"amount": 1}
    total = 0.0
    for _ in range(n):
        await dispatch("increment", payload)
        t0 = perf_counter()
        await commit()
        total += perf_counter() - t0
    return total / n


async def bench_commit_scaling(cfg: dict[str, int]) -> dict[str, Any]:
    n, warm, reps = cfg["commits"], cfg["commits_warmup"], cfg["commit_reps"]
    cases = {
        # name: (contract, small state, big state, what is read back)
        "top_level": (counter_contract(), wide_state(SMALL_KEYS - 1), wide_state(BIG_KEYS), "count"),
        "nested": (nested_counter_contract(), nested_state(SMALL_KEYS - 1), nested_state(BIG_KEYS), "data.count"),
    }
    out: dict[str, Any] = {"iterations": n, "repetitions": reps, "big_keys": BIG_KEYS, "small_keys": SMALL_KEYS}
    for name, (contract, small_state, big_state, path) in cases.items():
        small = clp.create_runtime(contract, initial_state=small_state, config=CORE_ONLY)
        big = clp.create_runtime(contract, initial_state=big_state, config=CORE_ONLY)
        del small_state, big_state
        await commit_time(small, warm)
        await commit_time(big, warm)
        small_t, big_t = [], []
        for _ in range(reps):  # interleaved, as above
            settle()
            small_t.append(await commit_time(small, n))
            settle()
            big_t.append(await commit_time(big, n))
        expected = warm + n * reps
        assert small.get_state(path) == expected and big.get_state(path) == expected
        ratio = min(big_t) / min(small_t)
        out[name] = {
            "small_commit_us": min(small_t) * 1e6,
            "big_commit_us": min(big_t) * 1e6,
            "ratio": ratio,
            "target": f"ratio <= {TARGET_COMMIT_RATIO}",
            "pass": ratio <= TARGET_COMMIT_RATIO,
            "all_runs_us": {"small": [t * 1e6 for t in small_t], "big": [t * 1e6 for t in big_t]},
        }
        del small, big
        settle()
    out["pass"] = all(out[name]["pass"] for name in cases)
    return out


# -- 3. audit-log memory ----------------------------------------------------------------------
async def retained_after(runtime: clp.Runtime, checkpoints: list[int]) -> dict[int, int]:
    """Bytes retained (tracemalloc, after a full GC) at each cumulative commit count."""
    dispatch, commit = runtime.dispatch, runtime.commit
    payload = {"amount": 1}
    settle()
    tracemalloc.start()
    try:
        settle()
        base = tracemalloc.get_traced_memory()[0]
        done, seen = 0, {}
        for target in checkpoints:
            for _ in range(target - done):
                await dispatch("increment", payload)
                await commit()
            done = target
            settle()
            seen[target] = tracemalloc.get_traced_memory()[0] - base
        return seen
    finally:
        tracemalloc.stop()


async def bench_log_memory(cfg: dict[str, int]) -> dict[str, Any]:
    contract = counter_contract()
    # Warm a throwaway runtime first so that one-off allocations (caches, interned
    # strings, the event loop's structures) are not charged to the log.
    warm = clp.create_runtime(contract, initial_state={"count": 0}, log_limit=10, config=CORE_ONLY)
    await time_dispatch_commits(warm, 200)
    del warm

    n = cfg["mem_commits"]
    unbounded = clp.create_runtime(contract, initial_state={"count": 0}, log_limit=None, config=CORE_ONLY)
    await time_dispatch_commits(unbounded, 1)  # first-call allocations outside the measurement
    entries_before = len(unbounded.get_log())
    grown = await retained_after(unbounded, [n])
    entries = len(unbounded.get_log()) - entries_before
    per_entry = grown[n] / entries
    per_commit = grown[n] / n
    del unbounded
    settle()

    m = cfg["bounded_commits"]
    checkpoints = sorted({LOG_LIMIT // 2, LOG_LIMIT, m // 4, m // 2, m})
    bounded = clp.create_runtime(contract, initial_state={"count": 0}, log_limit=LOG_LIMIT, config=CORE_ONLY)
    seen = await retained_after(bounded, checkpoints)
    kept = len(bounded.get_log())
    budget = per_entry * LOG_LIMIT
    final = seen[m]
    ratio = final / budget
    return {
        "unbounded_commits": n,
        "entries_per_commit": entries / n,
        "bytes_per_entry": per_entry,
        "bytes_per_commit": per_commit,
        "unbounded_retained_bytes": grown[n],
        "log_limit": LOG_LIMIT,
        "bounded_commits": m,
        "bounded_entries_kept": kept,
        "bounded_retained_bytes": {str(k): v for k, v in seen.items()},
        "budget_bytes": budget,
        "ratio": ratio,
        "target": f"retained after {m} commits <= {TARGET_LOG_BOUND} x {LOG_LIMIT} entries' worth",
        "pass": kept == LOG_LIMIT and ratio <= TARGET_LOG_BOUND,
    }


# -- 4. runtime creation + first commit -------------------------------------------------------
async def startups(contract: clp.Contract, n: int) -> float:
    """Seconds for ``n`` times: a new memory:// runtime, then its first dispatch+commit."""
    create, payload = clp.create_runtime, {"amount": 1}
    t0 = perf_counter()
    for _ in range(n):
        runtime = create(contract, storage="memory://", config=CORE_ONLY)
        await runtime.dispatch("increment", payload)
        await runtime.commit()
    return perf_counter() - t0


async def bench_startup(cfg: dict[str, int]) -> dict[str, Any]:
    n, reps = cfg["startups"], cfg["startup_reps"]
    contract = counter_contract()
    existing = clp.create_runtime(contract, storage="memory://", config=CORE_ONLY)
    await startups(contract, n // 10)
    await time_dispatch_commits(existing, n // 10)
    start_t, commit_t = [], []
    for _ in range(reps):  # interleaved, as above
        settle()
        start_t.append(await startups(contract, n))
        settle()
        commit_t.append(await time_dispatch_commits(existing, n))
    ratio = min(start_t) / min(commit_t)
    return {
        "iterations": n, "repetitions": reps,
        "startup_us": min(start_t) / n * 1e6,
        "commit_us": min(commit_t) / n * 1e6,
        "ratio": ratio,
        "target": f"ratio <= {TARGET_STARTUP_RATIO}",
        "pass": ratio <= TARGET_STARTUP_RATIO,
        "all_runs_s": {"startup": start_t, "commit": commit_t},
    }


async def profile_startups(n: int, top: int = 25) -> str:
    contract = counter_contract()
    await startups(contract, 100)
    return await profile_text(lambda: startups(contract, n), top)


# -- profile ----------------------------------------------------------------------------------
async def profile_pairs(n: int, top: int = 25) -> str:
    runtime = clp.create_runtime(counter_contract(), initial_state={"count": 0}, config=CORE_ONLY)
    await time_dispatch_commits(runtime, 1000)
    return await profile_text(lambda: time_dispatch_commits(runtime, n), top)


async def profile_executes(n: int, top: int = 25) -> str:
    runtime = clp.create_runtime(counter_contract(), initial_state={"count": 0}, config=CORE_ONLY)
    await time_executes(runtime, 1000)
    return await profile_text(lambda: time_executes(runtime, n), top)


# -- main -------------------------------------------------------------------------------------
def print_report(res: dict[str, Any]) -> None:
    tp, cs, lm, su = res["throughput"], res["commit_scaling"], res["log_memory"], res["startup"]
    rows: list[Row] = []
    rows.append(("CLP dispatch+commit", fmt_rate(tp["clp_dispatch_commit_per_s"]),
                 f"{tp['clp_dispatch_commit_us']:.2f} us/pair", ""))
    rows.append(("CLP execute()", fmt_rate(tp["clp_execute_per_s"]), f"{tp['clp_execute_us']:.2f} us/call", ""))
    if tp.get("transitions_triggers_per_s"):
        rows.append(("pytransitions AsyncMachine trigger", fmt_rate(tp["transitions_triggers_per_s"]),
                     f"{tp['transitions_trigger_us']:.2f} us/trigger", ""))
    else:
        rows.append(("pytransitions", "not installed", "pip install 'clp-core[bench]'", "SKIP"))
    if tp.get("burr_astep_per_s"):
        rows.append(("Burr Application.astep", fmt_rate(tp["burr_astep_per_s"]),
                     f"{tp['burr_astep_us']:.2f} us/step", ""))
        rows.append(("Burr Application.step (sync)", fmt_rate(tp["burr_step_per_s"]),
                     f"{tp['burr_step_us']:.2f} us/step", ""))
    else:
        rows.append(("Apache Burr", "not installed", "pip install 'clp-core[bench]'", "SKIP"))
    for key, label, target in (("vs_transitions", "CLP dispatch+commit / pytransitions", TARGET_THROUGHPUT_RATIO),
                               ("execute_vs_transitions", "CLP execute / pytransitions", TARGET_EXECUTE_RATIO),
                               ("execute_vs_burr", "CLP execute / Burr astep", TARGET_EXECUTE_RATIO),
                               ("execute_vs_burr_step", "CLP execute / Burr step (sync)", None)):
        r = tp[key]
        if r["ratio"] is None:
            continue
        rows.append((f"  ratio {label}", f"{r['ratio']:.2f}x",
                     "information" if target is None else f"target >= {target:g}x",
                     "" if target is None else verdict(r["pass"])))
    for name, label in (("top_level", "top-level keys"), ("nested", "keys nested under 'data'")):
        c = cs[name]
        rows.append((f"commit, {SMALL_KEYS} {label}", f"{c['small_commit_us']:.2f} us", "", ""))
        rows.append((f"commit, {BIG_KEYS:,} {label}", f"{c['big_commit_us']:.2f} us", "", ""))
        rows.append(("  ratio big / small", f"{c['ratio']:.2f}x", f"target <= {TARGET_COMMIT_RATIO:g}x",
                     verdict(c["pass"])))
    rows.append(("log memory per entry", fmt_bytes(lm["bytes_per_entry"]),
                 f"{lm['entries_per_commit']:.0f} entries/commit", ""))
    rows.append(("log memory per commit", fmt_bytes(lm["bytes_per_commit"]),
                 f"unbounded, {lm['unbounded_commits']:,} commits: {fmt_bytes(lm['unbounded_retained_bytes'])}", ""))
    for k, v in lm["bounded_retained_bytes"].items():
        rows.append((f"retained, log_limit={LOG_LIMIT}, {int(k):,} commits", fmt_bytes(v), "", ""))
    rows.append((f"  vs {LOG_LIMIT} entries' worth ({fmt_bytes(lm['budget_bytes'])})", f"{lm['ratio']:.2f}x",
                 f"target <= {TARGET_LOG_BOUND:g}x, kept {lm['bounded_entries_kept']}", verdict(lm["pass"])))
    rows.append(("new memory:// runtime + first commit", f"{su['startup_us']:.2f} us", "no lifecycle plugins", ""))
    rows.append(("dispatch+commit, existing memory:// runtime", f"{su['commit_us']:.2f} us", "", ""))
    rows.append(("  ratio new / existing", f"{su['ratio']:.2f}x", f"target <= {TARGET_STARTUP_RATIO:g}x",
                 verdict(su["pass"])))

    env = res["environment"]
    print(f"clp_core {env['clp_core']} | transitions {env['transitions']} | apache-burr {env['burr']} "
          f"| Python {env['python']} "
          f"| {env['platform']} | {env['mode']} run")
    print_table(rows)
    print_targets(res["verdicts"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = QUICK if args.quick else FULL
    t0 = perf_counter()
    res: dict[str, Any] = {"environment": run_environment(args.quick, transitions=TRANSITIONS_VERSION,
                                                          burr=BURR_VERSION),
                           "config": cfg}
    res["throughput"] = await bench_throughput(cfg)
    res["commit_scaling"] = await bench_commit_scaling(cfg)
    res["log_memory"] = await bench_log_memory(cfg)
    res["startup"] = await bench_startup(cfg)
    res["verdicts"] = {
        "throughput_vs_pytransitions": res["throughput"]["pass"],
        "execute_vs_pytransitions": res["throughput"]["execute_vs_transitions"]["pass"],
        "execute_vs_burr": res["throughput"]["execute_vs_burr"]["pass"],
        "commit_top_level_100k": res["commit_scaling"]["top_level"]["pass"],
        "commit_nested_100k": res["commit_scaling"]["nested"]["pass"],
        "log_bounded": res["log_memory"]["pass"],
        "startup_vs_commit": res["startup"]["pass"],
    }
    res["elapsed_s"] = perf_counter() - t0
    if args.profile:
        res["profile"] = await profile_pairs(cfg["pairs"])
        res["profile_execute"] = await profile_executes(cfg["pairs"])
        res["profile_startup"] = await profile_startups(cfg["startups"])
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds, looser figures")
    parser.add_argument(
        "--profile", action="store_true",
        help="also print cProfiles of dispatch+commit, of execute and of startup (top 25 by own time)",
    )
    add_result_options(parser, "core.json")
    args = parser.parse_args(argv)

    res = asyncio.run(run(args))
    print_report(res)
    print(f"elapsed {res['elapsed_s']:.1f} s")
    if args.profile:
        print()
        print("dispatch+commit:")
        print(res["profile"])
        print()
        print("execute:")
        print(res["profile_execute"])
        print()
        print("runtime creation + first commit:")
        print(res["profile_startup"])
    return finish(args.output, {k: v for k, v in res.items() if not k.startswith("profile")}, res["verdicts"],
                  args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(main())
