"""The ``clp`` command: ``clp demo`` keeps its count across runs and prints the audit log."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("typer")
pytest.importorskip("rich")

from typer.testing import CliRunner

from clp_core.cli import build_app
from clp_core.demo import run_demo

COLUMNS = ("time", "phase", "intent", "payload", "guards", "transition", "diff", "error")


def _demo(directory: str, *extra: str) -> str:
    result = CliRunner().invoke(build_app(), ["demo", "--dir", directory, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_carries_the_count_across_runs(tmp_path):
    directory = str(tmp_path / "state")
    first = _demo(directory)
    assert "count was 0, now 3" in first
    second = _demo(directory)
    assert "count was 3, now 6" in second


def test_demo_prints_the_audit_log_as_a_table(tmp_path):
    output = _demo(str(tmp_path))
    header = next(line for line in output.splitlines() if "phase" in line and "intent" in line)
    assert [c for c in COLUMNS if re.search(rf"\b{c}\b", header)] == list(COLUMNS)
    assert "no_negative:DENIED" in output
    assert "Guard no_negative" in output  # the error column (it may wrap)
    assert "guard:no_negative" in output
    for phase in ("dispatch", "commit", "accept"):
        assert phase in output


def test_demo_runs_option(tmp_path):
    output = _demo(str(tmp_path), "--runs", "2")
    assert "count was 0, now 3" in output
    assert "count was 3, now 6" in output
    assert "(run 2)" in output


async def test_run_demo_returns_what_the_cli_prints(tmp_path):
    run = await run_demo(tmp_path)
    assert (run.count_before, run.count_after) == (0, 3)
    assert run.denied_guard == "no_negative"
    assert run.suggestion == {"amount": 0}
    assert [e.phase for e in run.entries] == ["dispatch", "commit", "dispatch", "commit", "dispatch", "commit",
                                              "accept", "commit"]
    again = await run_demo(tmp_path)
    assert (again.count_before, again.count_after) == (3, 6)
    assert len(again.entries) == len(run.entries)  # the log of this run only


def test_demo_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_app(), ["demo"])
    assert result.exit_code == 0, result.output
    assert "count was 0, now 3" in result.output
    assert (tmp_path / ".clp-demo").is_dir()


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clp_core.cli", "demo", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "count was 0, now 3" in proc.stdout


def test_missing_cli_extra_says_what_to_install():
    code = "import sys; sys.modules['typer'] = None; from clp_core.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "install clp-core[cli]" in proc.stderr


def test_plugins_can_register_commands(monkeypatch):
    import typer

    from clp_core import hookimpl, plugins

    class Hello:
        @hookimpl
        def register_commands(self, cli: typer.Typer) -> None:
            @cli.command()
            def hello() -> None:
                typer.echo("hello from a plugin")

    real = plugins.registration_manager

    def with_plugin(extra=None):
        pm = real([r.plugin for r in plugins.discover() if r.plugin is not None])  # a new manager, not the cached one
        pm.register(Hello(), name="hello-plugin")
        return pm

    monkeypatch.setattr(plugins, "registration_manager", with_plugin)
    result = CliRunner().invoke(build_app(), ["hello"])
    assert result.exit_code == 0, result.output
    assert "hello from a plugin" in result.output


def test_plugins_lists_discovered_plugins_as_json_and_table(monkeypatch):
    import json

    from clp_core import plugins

    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-storage,clp-audit")
    plugins.process_config(refresh=True)
    try:
        result = CliRunner().invoke(build_app(), ["plugins", "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["name"]: row for row in json.loads(result.output)}
        storage = rows["clp-storage"]  # built in: config cannot switch it off
        assert (storage["distribution"], storage["enabled"], storage["reason"]) == ("clp-core", True, "built-in")
        assert storage["hooks"] == ["register_event_stores", "register_storage"]
        assert rows["clp-types"]["hooks"] == ["register_validators"]
        audit = rows["clp-audit"]
        assert (audit["enabled"], audit["reason"]) == (False, "disabled by config")
        table = CliRunner().invoke(build_app(), ["plugins"])
        assert table.exit_code == 0 and "clp-storage" in table.output and "built-in" in table.output
        assert "disabled by config" in table.output
    finally:
        monkeypatch.delenv("CLP_DISABLE_PLUGINS")
        plugins.process_config(refresh=True)


def _history_store(tmp_path):
    import asyncio

    import clp_core as clp

    contract = clp.create_contract(
        intents={"add": {"inputs": {"n": "number"}}},
        transitions={"t": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + ctx.intent.payload["n"],
                                                   "log": clp.ops.push(ctx.intent.payload["n"])}}},
    )
    url = f"sqlite:///{tmp_path}/events.db"

    async def fill():
        async with clp.create_runtime(contract, storage_key="acct", event_store=url) as rt:
            for n in (1, 2, 3):
                await rt.execute("add", {"n": n})

    asyncio.run(fill())
    return url


def test_history_prints_the_event_stream(tmp_path):
    import json

    url = _history_store(tmp_path)
    table = CliRunner().invoke(build_app(), ["history", url, "acct"])
    assert table.exit_code == 0, table.output
    assert "acct: 3 events" in table.output and "push log = [3]" in table.output
    lines = CliRunner().invoke(build_app(), ["history", url, "acct", "--json"]).output.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


def test_state_at_a_point_in_time(tmp_path):
    import json

    url = _history_store(tmp_path)
    result = CliRunner().invoke(build_app(), ["state", url, "acct", "--at", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"count": 3, "log": [1, 2]}
    latest = CliRunner().invoke(build_app(), ["state", url, "acct"])
    assert json.loads(latest.output) == {"count": 6, "log": [1, 2, 3]}
    bad = CliRunner().invoke(build_app(), ["state", url, "acct", "--at", "9"])
    assert bad.exit_code != 0 and "no event 9" in bad.output
