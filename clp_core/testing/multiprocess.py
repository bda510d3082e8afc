"""Several OS processes incrementing one counter through one storage URL: the proof that an
adapter's versioned saves lose no update (used by CLP's tests and bench; usable for yours)::

    result = await run_increments("redis://127.0.0.1:6379/0", "my:key", processes=4, increments=500)
    assert result.final == result.committed == 2000

Each worker (``python -m clp_core.testing.multiprocess URL KEY COUNT READY START RETRIES``)
hydrates, says it is ready, waits for the start file so that all begin together, then runs its
increments and prints one JSON line: successes, failures (with the first errors), the
conflicts its saves met (each then retried by the runtime) and the most one commit met.

:func:`run_outbox` is the same with the transactional outbox: each increment emits one message
(its payload is the count it made) whose handler appends a line to one file opened
``O_APPEND``; with ``kills`` it SIGKILLs workers at random moments (deliveries under way) and
restarts them, and a last runtime hydrates (delivering what is still pending) and drains.
:meth:`OutboxResult.check` then proves: every committed message delivered at least once, as
many distinct message ids as commits, none of a commit that did not land.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

import clp_core as clp
from clp_core.errors import ClpError, ConflictError, StorageError
from clp_core.ids import new_id
from clp_core.resolve import resolve_storage
from clp_core.testing.contracts import counter_contract

CORE_ONLY = {"disable": ["*"]}  # entry-point plugins play no part in the proof


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
        procs = [await _spawn(url, key, increments, path, start, retries) for path in ready]
        try:
            await _all_ready(procs, ready, ready_timeout)
            began = time.perf_counter()
            start.touch()  # every worker is connected and hydrated: go
            outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), run_timeout)
            elapsed = time.perf_counter() - began
        finally:
            await _kill_all(procs)
    reports = _reports(procs, outputs)
    async with clp.create_runtime(counter_contract(), storage=url, storage_key=key, config=CORE_ONLY) as fresh:
        final = fresh.get_state("count")
    return IncrementsResult(final, sum(r["successes"] for r in reports), processes * increments, elapsed, reports)


async def _spawn(url: str, key: str, count: int, ready: Path, start: Path, retries: int | None,
                 options: dict[str, Any] | None = None) -> asyncio.subprocess.Process:
    extra = [json.dumps(options)] if options else []
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clp_core.testing.multiprocess", url, key, str(count), str(ready),
        str(start), "" if retries is None else str(retries), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _all_ready(procs: list[asyncio.subprocess.Process], ready: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in ready):
        dead = [p for p in procs if p.returncode is not None]
        if dead:
            _, err = await dead[0].communicate()
            raise AssertionError(f"a worker exited before it was ready:\n{err.decode(errors='replace')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"workers not ready within {timeout:.0f} s")
        await asyncio.sleep(0.01)


async def _kill_all(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _reports(procs: list[asyncio.subprocess.Process], outputs: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise AssertionError(f"worker failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


# -- the outbox proof ----------------------------------------------------------------------------
@attrs.frozen
class Delivery:
    """One line of the deliveries file: a handler call."""

    message_id: str
    intent_id: str
    count: int  # the count the commit made (its message's payload)
    by: str  # the process incarnation that delivered it ("w3.12345", or "final")


@attrs.frozen
class OutboxResult:
    final: Any  # the count a fresh runtime reads afterwards: the commits that landed
    deliveries: list[Delivery]  # every handler call, in file order
    acked: dict[str, str]  # intent id -> incarnation, for each execute() that returned
    failed: list[str]  # intent ids whose execute() raised (given up, not retried)
    kills: int
    pending_after: int  # messages a fresh runtime still holds after its drain (must be 0)
    elapsed_s: float
    workers: list[dict[str, Any]]  # the reports of the last incarnations

    @property
    def distinct(self) -> dict[str, Delivery]:
        return {d.message_id: d for d in self.deliveries}

    @property
    def redelivered(self) -> int:
        """Messages never delivered by the process incarnation that committed them (killed
        before it did, or before its commit was acknowledged), delivered by another after its
        hydrate: the deliveries the kills interrupted."""
        by: dict[str, set[str]] = collections.defaultdict(set)
        for d in self.deliveries:
            by[d.message_id].add(d.by)
        return sum(1 for m, d in self.distinct.items() if self.acked.get(d.intent_id) not in by[m])

    def check(self, expected: int) -> None:
        """Every committed message delivered at least once, exactly ``final`` distinct ids, none
        of a commit that did not land; ``expected`` commits acknowledged to the callers."""
        distinct = self.distinct
        summary = (f"final count {self.final}, {len(self.acked)} acknowledged, {len(self.failed)} failed, "
                   f"{len(self.deliveries)} deliveries of {len(distinct)} messages, {self.kills} kills, "
                   f"{self.redelivered} redelivered after a kill, {self.pending_after} pending after")
        assert len(self.acked) == expected, summary
        for d in self.deliveries:  # a message id always names the same commit
            first = distinct[d.message_id]
            assert (d.intent_id, d.count) == (first.intent_id, first.count), f"{d} vs {first}"
        # one message per commit that landed: the counts 1..final, each carried by one message id
        counts = collections.Counter(d.count for d in distinct.values())
        assert sorted(counts) == list(range(1, (self.final or 0) + 1)), f"counts delivered != 1..final: {summary}"
        assert all(n == 1 for n in counts.values()), f"a count carried by two messages: {summary}"
        assert len(distinct) == self.final, summary
        intents = {d.intent_id for d in distinct.values()}
        assert len(intents) == len(distinct), f"an intent with two messages: {summary}"
        assert set(self.acked) <= intents, f"acknowledged commits never delivered: {summary}"
        assert not intents & set(self.failed), f"a message of a failed commit was delivered: {summary}"
        # a commit lands without its acknowledgement only when its process is killed in between
        assert len(intents - set(self.acked)) <= self.kills, summary
        assert self.pending_after == 0, summary


async def run_outbox(
    url: str, key: str, *, processes: int = 8, commits: int = 300, kills: int = 0, delay: float = 0.005,
    retries: int | None = None, seed: int | None = None, ready_timeout: float = 60.0, run_timeout: float = 300.0,
) -> OutboxResult:
    """``processes`` workers each commit until ``commits`` commits were acknowledged, each commit
    emitting one message; the handler waits up to ``delay`` s, then appends a line to a shared
    file. With ``kills``, a worker under way (committing since it was last started) is SIGKILLed
    that many times (every 0.05-0.15 s) and restarted; then a fresh runtime in this process
    hydrates and drains (delivering the rest)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="clp-outbox-") as tmp:
        folder = Path(tmp)
        start = folder / "start"
        names = [f"w{i}" for i in range(processes)]
        ready = {name: folder / f"ready-{name}" for name in names}

        spawned_at: dict[str, int] = {}  # a worker's acknowledged commits when it was (re)started

        def acked_count(name: str) -> int:
            return len(_lines(folder / f"acked-{name}"))

        async def spawn(name: str) -> asyncio.subprocess.Process:
            ready[name].unlink(missing_ok=True)
            spawned_at[name] = acked_count(name)
            return await _spawn(url, key, commits, ready[name], start, retries,
                                {"outbox": tmp, "name": name, "delay": delay})

        procs = {name: await spawn(name) for name in names}
        killed = 0
        try:
            await _all_ready(list(procs.values()), list(ready.values()), ready_timeout)
            began = time.perf_counter()
            start.touch()
            while killed < kills:
                await asyncio.sleep(rng.uniform(0.05, 0.15))
                alive = [name for name, proc in procs.items() if proc.returncode is None]
                if not alive:
                    break
                # a worker under way: hydrated, and committing since its (re)start (not importing)
                busy = [name for name in alive if ready[name].exists() and acked_count(name) > spawned_at[name] + 3]
                if not busy:
                    continue
                name = rng.choice(busy)
                procs[name].send_signal(signal.SIGKILL)
                await procs[name].communicate()
                if procs[name].returncode == -signal.SIGKILL:
                    killed += 1
                procs[name] = await spawn(name)  # goes on from its acknowledged commits
            outputs = await asyncio.wait_for(
                asyncio.gather(*(p.communicate() for p in procs.values())), run_timeout)
        finally:
            await _kill_all(list(procs.values()))
        reports = _reports(list(procs.values()), list(outputs))
        handler, fd = _appender(folder / "deliveries", "final", 0.0)
        try:
            async with clp.create_runtime(counter_contract(emit=True), storage=url, storage_key=key,
                                          config=CORE_ONLY, handlers={"counted": handler}) as fresh:
                await fresh.drain()  # what the kills left undelivered: delivered at hydrate
                final, pending = fresh.get_state("count"), len(fresh.pending_messages())
        finally:
            os.close(fd)
        elapsed = time.perf_counter() - began
        deliveries = [Delivery(m, i, int(c), by) for m, i, c, by in
                      (line.split() for line in (folder / "deliveries").read_text().splitlines())]
        acked: dict[str, str] = {}
        failed: list[str] = []
        for name in names:
            for line in _lines(folder / f"acked-{name}"):
                intent_id, by = line.split()
                acked[intent_id] = by
            failed += _lines(folder / f"failed-{name}")
    return OutboxResult(final, deliveries, acked, failed, killed, pending, elapsed, reports)


async def _ready_then_start(ready: str, start: str) -> None:
    """A worker says it is ready (hydrated), then waits for the start signal (at most 60 s)."""
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(start):
        if time.monotonic() > deadline:
            raise SystemExit("no start signal within 60 s")
        await asyncio.sleep(0.001)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _appender(path: Path, by: str, delay: float) -> tuple[Any, int]:
    """A handler appending ``message_id intent_id count by`` to ``path`` (one write, O_APPEND),
    and the file descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handler(message: clp.Message) -> None:
        if delay:
            await asyncio.sleep(random.uniform(0, delay))
        os.write(fd, f"{message.id} {message.intent_id} {message.payload['count']} {by}\n".encode())

    return handler, fd


async def _outbox_worker(url: str, key: str, count: int, ready: str, start: str, retries: int | None,
                         options: dict[str, Any]) -> dict[str, Any]:
    folder, name = Path(options["outbox"]), options["name"]
    me = f"{name}.{os.getpid()}"
    acked_path = folder / f"acked-{name}"
    done = len(_lines(acked_path))  # a restarted worker goes on from what was acknowledged
    acked = os.open(acked_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    failed = os.open(folder / f"failed-{name}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    handler, _ = _appender(folder / "deliveries", me, float(options.get("delay", 0.0)))
    extra: dict[str, Any] = {} if retries is None else {"max_conflict_retries": retries}
    runtime = clp.create_runtime(counter_contract(emit=True), storage=url, storage_key=key, config=CORE_ONLY,
                                 handlers={"counted": handler}, **extra)
    successes = failures = retried = 0
    errors: list[str] = []
    async with runtime:
        await _ready_then_start(ready, start)
        while done + successes < count:
            intent_id = new_id()
            failed_with: ClpError
            while True:
                try:
                    await runtime.execute("increment", intent_id=intent_id)
                except StorageError as exc:
                    if exc.outcome == "unknown":  # may have landed: retry the same intent (exactly once)
                        retried += 1
                        continue
                    failed_with = exc
                except ClpError as exc:
                    failed_with = exc
                else:
                    os.write(acked, f"{intent_id} {me}\n".encode())
                    successes += 1
                    break
                failures += 1
                os.write(failed, f"{intent_id}\n".encode())
                if len(errors) < 5:
                    errors.append(f"{type(failed_with).__name__}: {failed_with}")
                break
        await runtime.drain()
    return {"pid": os.getpid(), "name": name, "successes": successes, "failures": failures,
            "retried_unknown": retried, "errors": errors}


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
        await _ready_then_start(ready, start)
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
    _n = int(_retries) if _retries else None
    if len(sys.argv) > 7:  # the outbox proof: a JSON object of options
        print(json.dumps(asyncio.run(_outbox_worker(_url, _key, int(_count), _ready, _start, _n,
                                                    json.loads(sys.argv[7])))))
    else:
        print(json.dumps(asyncio.run(_worker(_url, _key, int(_count), _ready, _start, _n))))
