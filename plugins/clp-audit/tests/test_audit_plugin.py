"""clp-audit as an installed plugin: discovery, configuration by name, toggling."""

from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys

import clp_audit
import pytest

import clp_core as clp
from clp_core.config import PluginConfig
from clp_core.plugin_api import Inactive
from clp_core.plugins import plugin_statuses
from clp_core.testing.plugins import reference_contract


def test_the_plugin_is_discovered_through_its_entry_point() -> None:
    status = {s.name: s for s in plugin_statuses(PluginConfig())}["clp-audit"]
    assert (status.distribution, status.version) == ("clp-audit", clp_audit.__version__)
    assert status.enabled and status.reason == "enabled by default"
    assert isinstance(status.instance, clp_audit.AuditPlugin)
    assert status.hooks == ["on_close", "on_log_entry"]  # it ships the log's own entries, nothing else


@pytest.mark.parametrize("options, problem", [
    ({"max_bytes": -1}, "max_bytes"),
    ({"backup_count": "3"}, "backup_count"),
    ({"level": "LOUD"}, "level"),
    ({"logger": 3}, "logger"),
    ({"rotate": True}, "unknown options"),
])
def test_bad_options_disable_it_with_a_reason(options: dict[str, object], problem: str) -> None:
    config = PluginConfig().merged({"plugins": {"clp-audit": options}}, "test")
    status = {s.name: s for s in plugin_statuses(config)}["clp-audit"]
    assert not status.enabled and status.reason == "failed to configure"
    assert problem in (status.error or "")


async def test_configured_by_name(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    options = {"path": str(path), "max_bytes": 10_000, "backup_count": 2, "logger": False}
    runtime = clp.create_runtime(reference_contract(), config={"plugins": {"clp-audit": options}})
    [plugin] = [p for p in runtime.hooks.pm.get_plugins() if isinstance(p, clp_audit.AuditPlugin)]
    assert [type(s).__name__ for s in plugin.sinks] == ["JsonlFileSink"]
    await runtime.execute("increment", {"amount": 1})
    await runtime.close()
    assert [json.loads(line)["phase"] for line in path.read_text().splitlines()] == ["dispatch", "commit"]


async def test_disabling_it_by_config_turns_it_off(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    runtime = clp.create_runtime(reference_contract(), config={
        "disable": ["clp-audit"], "plugins": {"clp-audit": {"path": str(path)}}})
    assert not any(isinstance(p, clp_audit.AuditPlugin) for p in runtime.hooks.pm.get_plugins())
    await runtime.execute("increment", {"amount": 1})
    assert not path.exists()


def test_inactive_when_its_logger_has_no_handler() -> None:
    """Records for a logger with no handler go nowhere: the plugin implements no hook then."""
    lonely = logging.getLogger("clp.test.audit.lonely")
    lonely.propagate = False  # no handler on it, and none reached through its ancestors
    try:
        plugin = clp_audit.configure({"logger": "clp.test.audit.lonely"})
        assert isinstance(plugin, Inactive) and "no handler" in plugin.reason
        assert isinstance(clp_audit.configure({"logger": "clp.test.audit.lonely", "always_on": True}),
                          clp_audit.AuditPlugin)
        lonely.addHandler(logging.NullHandler())
        assert isinstance(clp_audit.configure({"logger": "clp.test.audit.lonely"}), clp_audit.AuditPlugin)
    finally:
        lonely.handlers.clear()
        lonely.propagate = True
    assert isinstance(clp_audit.configure({"logger": False}), Inactive)


def test_the_default_logger_unconfigured_leaves_it_inactive() -> None:
    code = ("import clp_audit; p = clp_audit.configure({}); print(type(p).__name__, getattr(p, 'reason', ''));"
            "import logging; logging.basicConfig(); print(type(clp_audit.configure({})).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Inactive logger 'clp.audit' has no handler") and lines[1] == "AuditPlugin"
