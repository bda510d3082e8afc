"""Configuration that says what it did: unknown plugin names warn (strict: fail), names split
on commas and spaces, and every status names the source that set it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import clp_core as clp
from clp_core import plugins
from clp_core.config import ConfigWarning, load_config
from clp_core.errors import ConfigError

ENV = ("CLP_PLUGINS", "CLP_DISABLE_PLUGINS", "CLP_CONFIG", "CLP_STRICT_CONFIG")


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    monkeypatch.undo()
    plugins.process_config(refresh=True)


def _refresh_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins.process_config(refresh=True)
    return [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]


@pytest.mark.parametrize("source", ["pyproject", "clp.toml", "CLP_PLUGINS", "CLP_DISABLE_PLUGINS"])
def test_an_unknown_name_in_any_source_is_a_warning_listing_the_installed(
        cwd: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if source == "pyproject":
        (cwd / "pyproject.toml").write_text('[tool.clp]\ndisable = ["clp-nosuch"]\n')
    elif source == "clp.toml":
        (cwd / "clp.toml").write_text('[plugins.clp-nosuch]\nx = 1\n')
    else:
        monkeypatch.setenv(source, "clp-nosuch")
    said = {"pyproject": "[tool.clp] in pyproject.toml", "clp.toml": "clp.toml"}.get(source, source)
    (message,) = _refresh_warnings()
    assert message.startswith(f"{said}: no installed plugin is named 'clp-nosuch'")
    assert "installed: " in message and "clp-storage" in message


def test_the_short_name_of_a_plugin_gets_a_did_you_mean(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {r.name for r in plugins.discover()}
    if "clp-pydantic" not in installed:
        pytest.skip("clp-pydantic is not installed")
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "pydantic")
    (message,) = _refresh_warnings()
    assert "did you mean 'clp-pydantic'?" in message


def test_an_unknown_name_in_create_runtime_config_is_a_warning(cwd: Path) -> None:
    plugins.process_config(refresh=True)
    contract = clp.create_contract(intents={"go": {"inputs": {}}}, transitions={"t": {"effects": lambda ctx: {}}})
    with pytest.warns(ConfigWarning, match=r"create_runtime\(config=...\): no installed plugin is named 'nope'"):
        clp.create_runtime(contract, config={"disable": ["nope"]})


@pytest.mark.parametrize("how", ["file", "env"])
def test_strict_makes_an_unknown_name_an_error(cwd: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "file":
        (cwd / "clp.toml").write_text('strict = true\ndisable = ["clp-nosuch"]\n')
    else:
        monkeypatch.setenv("CLP_STRICT_CONFIG", "1")
        monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-nosuch")
    with pytest.raises(ConfigError, match="no installed plugin is named 'clp-nosuch'"):
        plugins.process_config(refresh=True)


def test_names_split_on_commas_spaces_or_both(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-audit clp-otel,clp-webhooks ,  clp-llm")
    config = load_config()
    assert config.disable == {"clp-audit", "clp-otel", "clp-webhooks", "clp-llm"}
    assert config.state_of("clp-otel", True) == (False, "disabled by CLP_DISABLE_PLUGINS")


def test_clp_plugins_names_the_source(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from clp_core.cli import build_app

    installed = {r.name for r in plugins.discover()}
    if not {"clp-audit", "clp-otel"} <= installed:
        pytest.skip("clp-audit and clp-otel are not installed")
    (cwd / "pyproject.toml").write_text('[tool.clp]\ndisable = ["clp-otel"]\n')
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-audit")
    plugins.process_config(refresh=True)
    result = CliRunner().invoke(build_app(), ["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["clp-audit"]["reason"] == "disabled by CLP_DISABLE_PLUGINS"
    assert rows["clp-otel"]["reason"] == "disabled by [tool.clp] in pyproject.toml"


def test_the_command_line_warns_and_strict_fails(tmp_path: Path) -> None:
    pytest.importorskip("typer")
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env["CLP_DISABLE_PLUGINS"] = "clp-nosuch"
    run = [sys.executable, "-m", "clp_core.cli"]
    warned = subprocess.run([*run, "plugins", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.startswith("clp: warning: CLP_DISABLE_PLUGINS: no installed plugin is named 'clp-nosuch'")
    strict = subprocess.run([*run, "--strict", "plugins"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert strict.stderr.startswith("clp: error: bad configuration: CLP_DISABLE_PLUGINS: no installed plugin"), \
        strict.stderr


def test_a_disabled_plugins_scheme_says_what_disabled_it_on_the_command_line(
        cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from clp_core.cli import build_app

    if "clp-redis" not in {r.name for r in plugins.discover()}:
        pytest.skip("clp-redis is not installed")
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-redis")
    plugins.process_config(refresh=True)
    result = CliRunner().invoke(build_app(), ["history", "redis://127.0.0.1:6379/0", "k"])
    assert result.exit_code == 1
    assert "clp-redis is installed but disabled by CLP_DISABLE_PLUGINS" in result.stderr
    assert "install clp-redis" not in result.stderr
