"""The ``clp`` command: ``clp demo`` keeps its count across runs and prints the audit log."""

from __future__ import annotations

import io
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


def _demo(directory: str, *extra: str, columns: int = 200) -> str:
    result = CliRunner().invoke(build_app(), ["demo", "--dir", directory, *extra], env={"COLUMNS": str(columns)})
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
        assert (audit["enabled"], audit["reason"]) == (False, "disabled by CLP_DISABLE_PLUGINS")
        table = CliRunner().invoke(build_app(), ["plugins"], env={"COLUMNS": "200"})
        assert table.exit_code == 0 and "clp-storage" in table.output and "built-in" in table.output
        assert "disabled by CLP_DISABLE_PLUGINS" in table.output
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
    table = CliRunner().invoke(build_app(), ["history", url, "acct"], env={"COLUMNS": "200"})
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


# --- output that fits the terminal -------------------------------------------------------------

HISTORY_COLUMNS = ("seq", "time", "intent", "payload", "source", "transition", "diff")  # no guards: dropped
PLUGIN_COLUMNS = ("name", "distribution", "status", "hooks")


def _invoke(args, columns=None, **kwargs):
    env = {"COLUMNS": None if columns is None else str(columns)}
    return CliRunner().invoke(build_app(), args, env=env, **kwargs)


def _assert_fits(output: str, headers, width: int = 80) -> None:
    too_long = [line for line in output.splitlines() if len(line) > width]
    assert not too_long, f"{len(too_long)} lines over {width} columns, e.g. {too_long[0]!r}"
    for header in headers:  # whole, as a table header or as a `key:` of the stacked layout
        assert re.search(rf"(?<![\w-]){header}(?![\w-])", output), f"header {header!r} is not readable:\n{output}"


@pytest.mark.parametrize("columns", [80, 60])
def test_demo_fits_a_narrow_terminal(tmp_path, columns):
    output = _demo(str(tmp_path), columns=columns)
    _assert_fits(output, COLUMNS, columns)
    assert "no_negative:DENIED" in output and "count was 0, now 3" in output


def test_piped_output_defaults_to_80_columns(tmp_path):
    result = _invoke(["demo", "--dir", str(tmp_path)])  # no COLUMNS: not 140, not the test runner's terminal
    assert result.exit_code == 0, result.output
    _assert_fits(result.output, COLUMNS, 80)


def test_wide_terminal_gets_one_table_row_per_entry(tmp_path):
    output = _demo(str(tmp_path), columns=200)
    assert max(len(line) for line in output.splitlines()) <= 200
    header = next(line for line in output.splitlines() if "phase" in line and "intent" in line)
    assert [c for c in COLUMNS if re.search(rf"\b{c}\b", header)] == list(COLUMNS)


def test_history_fits_80_columns(tmp_path):
    url = _history_store(tmp_path)
    result = _invoke(["history", url, "acct"], columns=80)
    assert result.exit_code == 0, result.output
    _assert_fits(result.output, HISTORY_COLUMNS)
    assert "acct: 3 events" in result.output


def test_plugins_fits_80_columns():
    result = _invoke(["plugins"], columns=80)
    assert result.exit_code == 0, result.output
    _assert_fits(result.output, PLUGIN_COLUMNS)
    assert "clp-storage" in result.output


def test_table_layout_adapts_to_width():
    from rich.console import Console

    from clp_core.cli._tables import Col, column_widths, print_records

    cols = [Col("id", no_wrap=True), Col("description")]
    rows = [["1", "a fairly long description that can fold over several lines"]]
    assert column_widths(cols, rows, 200) == [2, len(rows[0][1])]
    assert sum(column_widths(cols, rows, 30)) == 30  # folded, never wider than given
    assert column_widths(cols, rows, 10) is None  # below the readable minimum: stacked
    for width, table in ((80, True), (16, False)):
        console = Console(width=width, record=True, file=io.StringIO())
        print_records(console, "t", cols, rows)
        text = console.export_text()
        assert ("description:" in text) is not table
        assert all(len(line) <= width for line in text.splitlines())


# --- JSON for scripts, usage lines --------------------------------------------------------------

def test_json_for_scripts(tmp_path):
    import json

    url = _history_store(tmp_path)
    state = _invoke(["state", url, "acct", "--json"])
    assert state.exit_code == 0 and state.output.count("\n") == 1
    assert json.loads(state.output) == {"count": 6, "log": [1, 2, 3]}
    events = [json.loads(line) for line in _invoke(["history", url, "acct", "--json"]).output.splitlines()]
    assert [e["intent_name"] for e in events] == ["add", "add", "add"]
    plugins = json.loads(_invoke(["plugins", "--json"]).output)
    assert {"name", "distribution", "version", "enabled", "reason", "error", "hooks"} <= set(plugins[0])


@pytest.mark.parametrize("command", ["history", "state"])
def test_usage_line_names_arguments_plainly(command):
    result = _invoke([command, "--help"], columns=100)
    assert result.exit_code == 0
    assert f"clp {command} [OPTIONS] URL KEY" in result.output
    assert "{" not in result.output.split("Usage:")[1].splitlines()[0]


# --- errors, not tracebacks ---------------------------------------------------------------------

def _corrupt_event(tmp_path):
    import sqlite3

    url = _history_store(tmp_path)
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("UPDATE clp_events SET data = '{not json' WHERE seq = 2")
    return url


def _failure(tmp_path, case):
    if case == "bad scheme":
        return ["history", "reddis://x", "k"], ("unknown event store scheme 'reddis'", "redis://")
    if case == "unknown plugin scheme":
        return ["history", "cassandra://x", "k"], ("unknown event store scheme", "installed:")
    if case == "no scheme":
        return ["state", "app.db", "k"], ("is not a URL", "sqlite:///")
    if case == "missing file":
        return ["history", f"sqlite:///{tmp_path}/nope.db", "k"], ("no such database", "check the path")
    if case == "missing key":
        return ["state", _history_store(tmp_path), "nope"], ("no events under key 'nope'", "check the key")
    if case == "not a database":
        (tmp_path / "bad.db").write_text("garbage " * 200)
        return ["history", f"sqlite:///{tmp_path}/bad.db", "k"], ("bad.db", "file is not a database")
    if case == "corrupt event":
        return ["history", _corrupt_event(tmp_path), "acct"], ("stored data cannot be read", "restore")
    if case == "unreachable redis":
        pytest.importorskip("clp_redis")
        return ["history", "redis://127.0.0.1:1/0", "k"], ("cannot reach the server", "is running")
    if case == "memory":
        return ["history", "memory://", "k"], ("memory://", "persists")
    raise AssertionError(case)


FAILURES = ["bad scheme", "unknown plugin scheme", "no scheme", "missing file", "missing key", "not a database",
            "corrupt event", "unreachable redis", "memory"]


@pytest.mark.parametrize("case", FAILURES)
def test_failures_are_short_messages_with_a_non_zero_exit(tmp_path, case):
    args, expected = _failure(tmp_path, case)
    result = _invoke(args, columns=80)
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("clp: error: "), result.stderr
    for text in expected:
        assert text in result.stderr
    assert result.stdout == ""


def test_failure_of_the_console_script_and_debug(tmp_path):
    url = f"sqlite:///{tmp_path}/nope.db"
    plain = subprocess.run([sys.executable, "-m", "clp_core.cli", "history", url, "k"], capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("clp: error: no such database")
    debug = subprocess.run([sys.executable, "-m", "clp_core.cli", "--debug", "history", url, "k"],
                           capture_output=True, text=True, timeout=60)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "CliError: no such database" in debug.stderr


def test_error_messages_are_mapped_in_one_place():
    from clp_core import errors
    from clp_core.cli import describe

    cases = {
        errors.CorruptStateError("bad envelope", backend="sqlite"): "stored data cannot be read",
        errors.StorageError("disk full", backend="file"): "storage failed",
        errors.ConfigError("bad option"): "bad configuration",
        errors.PluginError("clp-x", "import failed"): "Plugin clp-x",
        errors.HistoryError("no event 9"): "no event 9",
        FileNotFoundError(2, "No such file", "x.db"): "no such file: x.db",
        PermissionError(13, "Permission denied", "x.db"): "permission denied: x.db",
        RuntimeError("boom"): "unexpected error: RuntimeError: boom",
    }
    for exc, text in cases.items():
        message, hint, code = describe(exc)
        assert text in message and hint and code == 1
    wrapped = errors.StorageError("load failed", backend="redis")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert describe(wrapped)[0].startswith("cannot reach the server (redis)")


def test_usage_errors_keep_click_exit_code(tmp_path):
    url = _history_store(tmp_path)
    bad = _invoke(["state", url, "acct", "--at", "9"])
    assert bad.exit_code == 2 and "no event 9" in bad.output and "Traceback" not in bad.output
