"""Shared helpers for the bench scripts (``bench/bench_*.py``); not a benchmark itself.

The scripts run as ``.venv/bin/python bench/bench_<topic>.py``, so this folder is on
``sys.path`` and they ``from _common import ...``. Importing this module also puts the
repository root on ``sys.path``, so ``clp_core`` imports from a checkout without installing:
import it before ``clp_core``.

What is here is what several scripts did the same way: the counter contract and its timing
loops, the run environment written to the JSON files, cProfile text, the JSON writing, the
result table and its formatters. What one script alone needs stays in that script.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import clp_core as clp  # noqa: E402

# The core alone: installed entry-point plugins (otel, audit...) are measured by bench_plugins.py.
CORE_ONLY = {"disable": ["*"]}

Row = tuple[str, str, str, str]  # one line of the result table: measure, value, detail, verdict


# -- the counter ------------------------------------------------------------------------------
def counter_contract() -> clp.Contract:
    """The counter: intent ``increment(amount: number?)``, one transition incrementing ``count``,
    with a ``when`` (the condition bench_core's pytransitions trigger has too): otherwise
    ``clp_core.testing.contracts.counter_contract``, which bench_events and bench_exactly_once use."""
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={
            "apply": {
                "when": lambda ctx: ctx.intent.complete,
                "effects": lambda ctx: {
                    "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)
                },
            }
        },
    )


def small_records(n: int) -> dict[str, Any]:
    """``n`` keys ``k0``... holding small records (containers, so a deep copy or a GC pass would show)."""
    return {f"k{i}": {"id": i, "name": f"item {i}"} for i in range(n)}


async def time_dispatch_commits(runtime: clp.Runtime, n: int) -> float:
    """Seconds for ``n`` ``dispatch("increment", {"amount": 1})`` + ``commit()`` pairs, back to back."""
    dispatch, commit = runtime.dispatch, runtime.commit
    payload = {"amount": 1}
    t0 = time.perf_counter()
    for _ in range(n):
        await dispatch("increment", payload)
        await commit()
    return time.perf_counter() - t0


async def time_executes(runtime: clp.Runtime, n: int, amount: int | None = 1) -> float:
    """Seconds for ``n`` ``execute("increment", {"amount": amount})`` calls, back to back
    (``amount=None``: no payload, ``execute("increment")``)."""
    execute = runtime.execute
    payload = None if amount is None else {"amount": amount}
    t0 = time.perf_counter()
    for _ in range(n):
        await execute("increment", payload)
    return time.perf_counter() - t0


def settle() -> None:
    """A full garbage collection, before each timed repetition."""
    gc.collect()


# -- run environment, profile, results file ---------------------------------------------------
def git_commit(short: bool = True) -> str | None:
    """The checkout's ``HEAD`` commit (abbreviated unless ``short=False``), or ``None``."""
    try:
        return subprocess.run(
            ["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
            cwd=ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip() or None
    except Exception:  # informative only
        return None


def run_environment(quick: bool, **extra: Any) -> dict[str, Any]:
    """What the figures were taken on: time, mode, Python, platform, clp_core, the script's
    ``extra`` versions or facts, and the git commit."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if quick else "full",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "clp_core": getattr(clp, "__version__", None),
        **extra,
        "git_commit": git_commit(),
    }


async def profile_text(run: Callable[[], Awaitable[Any]], top: int) -> str:
    """A cProfile of ``await run()``: the ``top`` functions by own time, as pstats prints them."""
    profiler = cProfile.Profile()
    profiler.enable()
    await run()
    profiler.disable()
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def add_result_options(parser: argparse.ArgumentParser, filename: str) -> None:
    """``--output`` (default ``bench/results/<filename>``) and ``--fail-on-miss``."""
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / filename, help="JSON results file")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit with status 1 when a target is missed")


def write_results(path: Path, results: Mapping[str, Any]) -> None:
    """Write ``results`` to ``path`` as indented JSON, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def finish(output: Path, results: Mapping[str, Any], verdicts: Mapping[str, bool | None], fail_on_miss: bool) -> int:
    """The end of every bench: ``results`` written to ``output``, where they went printed, and
    the exit status (:func:`exit_status`)."""
    write_results(output, results)
    print(f"results: {shown_path(output)}")
    return exit_status(verdicts, fail_on_miss)


def shown_path(path: Path) -> Path:
    """``path`` relative to the repository root when it is inside it (for printing)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def exit_status(verdicts: Mapping[str, bool | None], fail_on_miss: bool) -> int:
    """1 when ``fail_on_miss`` and a target was missed (``False``; ``None`` is a skip), else 0."""
    missed = [name for name, ok in verdicts.items() if ok is False]
    return 1 if (missed and fail_on_miss) else 0


# -- the printed table ------------------------------------------------------------------------
def fmt_rate(x: float) -> str:
    return f"{x:,.0f}/s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if abs(n) >= 1024 * 1024:
        return f"{n / (1024 * 1024):.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "MISS")


def print_table(rows: Iterable[Row]) -> None:
    """The result table: a header, then one line per row, columns as wide as their widest cell."""
    rows = list(rows)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    print(f"{'measure':<{w0}}  {'value':>{w1}}  {'detail':<{w2}}  verdict")
    print("-" * (w0 + w1 + w2 + 13))
    for measure, value, detail, ok in rows:
        print(f"{measure:<{w0}}  {value:>{w1}}  {detail:<{w2}}  {ok}".rstrip())
    print("-" * (w0 + w1 + w2 + 13))


def print_targets(verdicts: Mapping[str, bool | None]) -> None:
    """The closing ``targets:`` line: each target's PASS, MISS or SKIP."""
    print("targets: " + ", ".join(f"{name} {verdict(ok)}" for name, ok in verdicts.items()))
