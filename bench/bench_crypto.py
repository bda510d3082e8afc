#!/usr/bin/env python
"""Encryption benchmarks: what clp-crypto's AES-256-GCM transform costs a persisted commit.

Run from the repository root::

    .venv/bin/python bench/bench_crypto.py            # full run (about half a minute)
    .venv/bin/python bench/bench_crypto.py --quick    # smoke run (a few seconds)

1. ``commit``: ``await runtime.execute("increment")`` on the counter contract with SQLite
   storage and with file storage (persist on commit, one versioned save each), mean time per
   commit without a transform and with ``Encryption`` installed (``clp_core.codec.use``), and
   the ratio encrypted / plain. Both runtimes are open side by side, each on its own database
   or folder; their repetitions alternate (plain, encrypted, encrypted, plain...), and the
   transform is installed only around the encrypted ones. Target: ratio of the best
   repetitions **<= 1.2x** (the median of the per-pair ratios is printed too).
2. ``codec``: one ``codec.encode`` and one ``codec.decode_document`` of the counter document,
   plain and sealed (the transform's own cost, without storage), and ``codec.encode`` with no
   transform installed (the extension point's cost when unused: one global check).

Every figure is measured in this process (``time.perf_counter``, warm-up first, best of several
repetitions). Results are printed as a table and written to ``bench/results/crypto.json``.
clp-crypto must be installed (``scripts/test`` installs every plugin); without it the script
says so and exits with status 0 (or 1 with ``--fail-on-miss``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    CORE_ONLY,
    Row,
    add_result_options,
    counter_contract,
    exit_status,
    finish,
    print_table,
    print_targets,
    run_environment,
    settle,
    time_executes,
    verdict,
)

# _common has put the repository root on sys.path: clp_core imports from a checkout too
import clp_core as clp
from clp_core import codec

perf_counter = time.perf_counter

TARGET_RATIO = 1.2  # encrypted persisted commit <= 1.2 x the plain one (SQLite, files)
BACKENDS = ("sqlite", "file")

FULL: dict[str, Any] = {"commits": {"sqlite": 400, "file": 150}, "warmup": 200, "reps": 21, "codec_calls": 50_000}
QUICK: dict[str, Any] = {"commits": {"sqlite": 500, "file": 200}, "warmup": 50, "reps": 3, "codec_calls": 10_000}


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def storage_url(backend: str, directory: Path, name: str) -> str:
    return f"sqlite:///{directory / (name + '.db')}" if backend == "sqlite" else f"file://{directory / name}"


async def measure_commits(backend: str, encryption: Any, directory: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Mean seconds per persisted commit, plain and encrypted, repetitions alternating."""
    contract = counter_contract()
    plain = clp.create_runtime(contract, storage=storage_url(backend, directory, "plain"), storage_key="counter",
                               config=CORE_ONLY)
    sealed = clp.create_runtime(contract, storage=storage_url(backend, directory, "sealed"), storage_key="counter",
                                config=CORE_ONLY)
    n = cfg["commits"][backend]
    reps: dict[str, list[float]] = {"plain": [], "encrypted": []}
    async with plain, sealed:
        await time_executes(plain, cfg["warmup"])
        with codec.using(encryption):
            await time_executes(sealed, cfg["warmup"])
        for rep in range(cfg["reps"]):
            for side in (("plain", "encrypted") if rep % 2 == 0 else ("encrypted", "plain")):  # A B B A ...
                settle()
                with codec.using(encryption if side == "encrypted" else None):
                    reps[side].append(await time_executes(sealed if side == "encrypted" else plain, n) / n)
    plain_s, sealed_s = min(reps["plain"]), min(reps["encrypted"])
    pairs = sorted(e / p for p, e in zip(reps["plain"], reps["encrypted"], strict=True))
    return {"commits_per_rep": n, "plain_s": plain_s, "encrypted_s": sealed_s, "ratio": sealed_s / plain_s,
            "median_pair_ratio": pairs[len(pairs) // 2],
            "sealed_on_disk": stored_text(backend, directory, "sealed").count(codec.SEALED_FORMAT) > 0
            and codec.SEALED_FORMAT not in stored_text(backend, directory, "plain"), "reps": reps}


def stored_text(backend: str, directory: Path, name: str) -> str:
    """What the backend holds, raw (to check the encrypted runtime did write sealed envelopes)."""
    if backend == "sqlite":
        connection = sqlite3.connect(directory / (name + ".db"))
        try:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return "\n".join(repr(row) for t in tables for row in connection.execute(f'SELECT * FROM "{t}"'))
        finally:
            connection.close()
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in (directory / name).rglob("*")
                     if p.is_file())


def time_calls(fn: Any, n: int, reps: int) -> float:
    best = float("inf")
    fn()
    for _ in range(reps):
        t0 = perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (perf_counter() - t0) / n)
    return best


def measure_codec(encryption: Any, cfg: dict[str, Any]) -> dict[str, float]:
    document = {"state": {"count": 42}, "idempotency": {}}
    n, reps = cfg["codec_calls"], cfg["reps"]
    plain_text = codec.encode(document)
    with codec.using(encryption):
        sealed_text = codec.encode(document)
        sealed_encode = time_calls(lambda: codec.encode(document), n, reps)
        sealed_decode = time_calls(lambda: codec.decode_document(sealed_text, backend="bench", key="k"), n, reps)
    plain_encode = time_calls(lambda: codec.encode(document), n, reps)
    plain_decode = time_calls(lambda: codec.decode_document(plain_text, backend="bench", key="k"), n, reps)
    return {"plain_encode_s": plain_encode, "plain_decode_s": plain_decode, "encrypted_encode_s": sealed_encode,
            "encrypted_decode_s": sealed_decode, "plain_bytes": len(plain_text), "encrypted_bytes": len(sealed_text)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer commits and repetitions")
    add_result_options(parser, "crypto.json")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    try:
        from clp_crypto import Encryption, generate_key
    except ImportError:
        print("clp-crypto is not installed (scripts/test installs every plugin): nothing to measure")
        return exit_status({"crypto": False}, args.fail_on_miss)
    import clp_crypto

    encryption = Encryption(keys={"k1": generate_key(), "k2": generate_key()}, current="k2")
    rows: list[Row] = []
    results: dict[str, Any] = {
        "environment": run_environment(args.quick, clp_crypto=clp_crypto.__version__,
                                       algorithm=encryption.alg),
        "config": cfg, "target_ratio": TARGET_RATIO, "commit": {}, "codec": {},
    }
    verdicts: dict[str, bool | None] = {}
    with tempfile.TemporaryDirectory(prefix="clp-bench-crypto-") as tmp:
        for backend in BACKENDS:
            measured = await measure_commits(backend, encryption, Path(tmp), cfg)
            results["commit"][backend] = measured
            ok = measured["ratio"] <= TARGET_RATIO and measured["sealed_on_disk"]
            verdicts[f"{backend} ratio"] = ok
            rows += [
                (f"{backend} commit, plain", fmt_us(measured["plain_s"]), f"mean of {measured['commits_per_rep']}",
                 ""),
                (f"{backend} commit, encrypted", fmt_us(measured["encrypted_s"]),
                 "AES-256-GCM" + ("" if measured["sealed_on_disk"] else ", NOT SEALED ON DISK"), ""),
                (f"{backend} ratio encrypted / plain", f"{measured['ratio']:.3f}x",
                 f"best/best; median of pairs {measured['median_pair_ratio']:.3f}x; target <= {TARGET_RATIO}x",
                 verdict(ok)),
            ]
    figures = measure_codec(encryption, cfg)
    results["codec"] = figures
    rows += [
        ("codec.encode, no transform", fmt_us(figures["plain_encode_s"]), f"{figures['plain_bytes']} B", ""),
        ("codec.encode, encrypted", fmt_us(figures["encrypted_encode_s"]), f"{figures['encrypted_bytes']} B", ""),
        ("codec.decode_document, plain", fmt_us(figures["plain_decode_s"]), "", ""),
        ("codec.decode_document, encrypted", fmt_us(figures["encrypted_decode_s"]), "", ""),
    ]
    results["verdicts"] = verdicts
    print_table(rows)
    print_targets(verdicts)
    return finish(args.output, results, verdicts, args.fail_on_miss)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
