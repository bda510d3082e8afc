"""Heavy libraries load when first needed: ``import clp_core`` plus a first runtime and commit,
with every first-party plugin installed and the default configuration, imports none of them.

Structural, not a timing test (``bench/bench_core.py`` times it against its 150 ms target): a
fresh interpreter does the work, then lists which of the heavy modules are in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

# What a runtime with the default configuration must not import: the drivers and libraries of
# the first-party plugins (they load when a URL, an option or a validator asks for them).
HEAVY = ("pydantic", "pydantic_core", "opentelemetry", "asyncpg", "pymongo", "motor", "redis", "httpx",
         "starlette", "uvicorn", "llm", "limits", "purgatory", "tenacity", "typer", "rich", "structlog")

SCRIPT = """
import asyncio, json, sys
import clp_core as clp

contract = clp.create_contract(
    intents={"increment": {"inputs": {"amount": "number?"}}},
    state={"count": "number"},
    transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
)

async def main():
    async with clp.create_runtime(contract) as runtime:
        await runtime.execute("increment")
    async with clp.create_runtime(contract, storage="sqlite:///state.db", event_store="sqlite:///events.db") as rt:
        await rt.execute("increment")
    async with clp.Runtimes(contract, storage="sqlite:///many.db", max_live=2) as runtimes:
        for key in "abc":
            await runtimes.execute(key, "increment")

asyncio.run(main())
plugins = {s.name: type(s.instance).__name__ for s in __import__("clp_core.plugins").plugins.plugin_statuses(
    with_hooks=False)}
print(json.dumps({"heavy": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])), "plugins": plugins}))
"""


def _first_party_plugins() -> set[str]:
    return {ep.name for ep in metadata.entry_points(group="clp")}


def test_first_runtime_imports_no_heavy_module(tmp_path: Path) -> None:
    installed = _first_party_plugins()
    if not {"clp-otel", "clp-redis", "clp-postgres", "clp-webhooks"} <= installed:
        pytest.skip(f"the first-party plugins are not installed (found {sorted(installed)})")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLP_"))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *HEAVY], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"imported by the first runtime: {report['heavy']}"
    # and the plugins were really there: loaded, configured, inactive until configured
    for name in ("clp-otel", "clp-webhooks", "clp-ratelimit", "clp-breaker"):
        if name in installed:
            assert report["plugins"][name] == "Inactive", report["plugins"]
