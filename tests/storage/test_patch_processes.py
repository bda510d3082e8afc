"""Several OS processes appending patches to one key (SQLite file, folder of files) lose no
increment: every append is a compare-and-set on the head version, across processes.

Each worker (this file run as a script) loads the key with ``load_logged``, adds one to the
count and saves the patch (or, when its :class:`PatchLog` says so, the whole document) with
``save_logged``, retrying on a conflict; all start together on a start file.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from clp_core import codec
from clp_core.errors import ConflictError
from clp_core.resolve import resolve_storage
from clp_core.storage.patch import Patch, PatchLog, Write
from clp_core.testing.patching import big_document

PROCESSES, ROUNDS = 4, 60


async def _work(url: str, key: str, rounds: int, ready: Path, start: Path) -> dict[str, int]:
    adapter = resolve_storage(url)
    counts = {"patches": 0, "compactions": 0, "conflicts": 0}
    log = PatchLog()
    await adapter.load_logged(key, log)
    ready.touch()
    while not start.exists():
        await asyncio.sleep(0.005)
    for _ in range(rounds):
        while True:
            document, version = await adapter.load_logged(key, log)
            document["state"]["count"] += 1
            write = log.prepare(lambda: document, Patch(((("state", "count"), document["state"]["count"]),)))  # noqa: B023
            try:
                await adapter.save_logged(key, write, version)
            except ConflictError:
                counts["conflicts"] += 1
                await asyncio.sleep(random.uniform(0, 0.002))
                continue
            log.done(write)
            counts["compactions" if write.compacts else "patches"] += 1
            break
    await adapter.close()
    return counts


@pytest.mark.parametrize("kind", ["sqlite", "file"])
async def test_processes_appending_patches_never_lose_an_increment(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path}/shared.db" if kind == "sqlite" else f"file://{tmp_path}/shared"
    adapter = resolve_storage(url)
    await adapter.save_logged("counter", Write(codec.encode(big_document()), compacts=True), 0)
    start, ready = tmp_path / "start", [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, url, "counter", str(ROUNDS), str(path), str(start),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for path in ready]
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not all(path.exists() for path in ready):
            assert all(p.returncode is None for p in procs), "a worker exited before it was ready"
            assert asyncio.get_running_loop().time() < deadline, "workers not ready within 60 s"
            await asyncio.sleep(0.01)
        start.touch()
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reports: list[dict[str, Any]] = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    document, version = await adapter.load_versioned("counter")
    await adapter.close()
    assert document["state"]["count"] == PROCESSES * ROUNDS
    assert version == 1 + PROCESSES * ROUNDS
    assert sum(r["patches"] for r in reports) > PROCESSES * ROUNDS // 2
    assert sum(r["compactions"] for r in reports) >= 1  # the patches outgrew the base at least once
    assert sum(r["conflicts"] for r in reports) > 0, "the workers never met: the test proved nothing"


if __name__ == "__main__":
    result = asyncio.run(_work(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])))
    print(json.dumps(result))
