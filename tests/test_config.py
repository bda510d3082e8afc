"""Plugin discovery through real entry points, and toggling by config in every source."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core import plugins
from clp_core.config import load_config
from clp_core.errors import ConfigError


def write_distribution(root: Path, name: str, module: str, source: str, entry: str | None = None) -> None:
    """A minimal installed distribution on ``root``: a module and a dist-info with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[clp]\n{name} = {entry or module}\n")


COUNTING = """
from clp_core import hookimpl
calls = []
@hookimpl
def before_commit(intent):
    calls.append(intent.name)
"""

CONFIGURABLE = """
from clp_core import hookimpl
class Tagger:
    def __init__(self, tag):
        self.tag = tag
        self.seen = []
    @hookimpl
    def after_commit(self, intent, entry):
        self.seen.append(self.tag)

instances = []
def configure(options):
    tagger = Tagger(options.get("tag", "default"))
    instances.append(tagger)
    return tagger
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where tests install distributions; discovery refreshed around."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    for var in ("CLP_PLUGINS", "CLP_DISABLE_PLUGINS", "CLP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    yield root
    for module in [m for m in sys.modules if m.startswith("clptest_")]:
        del sys.modules[module]
    plugins.discover(refresh=True)
    plugins.process_config(refresh=True)


def refresh() -> None:
    plugins.discover(refresh=True)
    plugins.process_config(refresh=True)


def contract() -> clp.Contract:
    return clp.create_contract(intents={"go": {"inputs": {}}}, transitions={"t": {"effects": lambda ctx: {"n": 1}}})


async def test_an_entry_point_plugin_applies_to_every_runtime(site: Path) -> None:
    write_distribution(site, "counting", "clptest_counting", COUNTING)
    refresh()
    status = {s.name: s for s in plugins.plugin_statuses()}["counting"]
    assert (status.distribution, status.version, status.enabled) == ("clptest_counting", "1.0", True)
    assert status.hooks == ["before_commit"]
    await clp.create_runtime(contract()).execute("go")
    await clp.create_runtime(contract()).execute("go")
    assert sys.modules["clptest_counting"].calls == ["go", "go"]


@pytest.mark.parametrize("source", ["pyproject", "clp.toml", "env", "runtime"])
async def test_each_source_can_disable_a_plugin(site: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write_distribution(site, "counting", "clptest_counting", COUNTING)
    config: dict[str, Any] | None = None
    if source == "pyproject":
        (site.parent / "pyproject.toml").write_text('[tool.clp]\ndisable = ["counting"]\n')
    elif source == "clp.toml":
        (site.parent / "clp.toml").write_text('disable = ["counting"]\n')
    elif source == "env":
        monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-audit, counting")
    else:
        config = {"disable": ["counting"]}
    refresh()
    await clp.create_runtime(contract(), config=config).execute("go")
    assert sys.modules["clptest_counting"].calls == []
    if config is None:
        status = {s.name: s for s in plugins.plugin_statuses()}["counting"]
        said = {"pyproject": "[tool.clp] in pyproject.toml", "clp.toml": "clp.toml", "env": "CLP_DISABLE_PLUGINS"}
        assert (status.enabled, status.reason) == (False, f"disabled by {said[source]}")


@pytest.mark.filterwarnings("ignore::clp_core.config.ConfigWarning")  # a, b, c are not installed
async def test_precedence_later_sources_win(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (site.parent / "pyproject.toml").write_text('[tool.clp]\ndisable = ["a", "b", "c"]\n')
    (site.parent / "clp.toml").write_text('enable = ["a"]\n')
    monkeypatch.setenv("CLP_PLUGINS", "b")
    config = load_config({"enable": ["c"], "disable": ["a"]})
    assert config.state_of("a", True) == (False, "disabled by create_runtime(config=...)")
    assert config.state_of("b", True) == (True, "enabled by CLP_PLUGINS")
    assert config.state_of("c", True) == (True, "enabled by create_runtime(config=...)")
    assert len(config.sources) == 4


async def test_options_reach_configure_and_each_runtime_gets_its_instance(site: Path) -> None:
    write_distribution(site, "tagger", "clptest_tagger", CONFIGURABLE)
    (site.parent / "clp.toml").write_text('[plugins.tagger]\ntag = "from-file"\n')
    refresh()
    one = clp.create_runtime(contract())
    two = clp.create_runtime(contract(), config={"plugins": {"tagger": {"tag": "from-runtime"}}})
    await one.execute("go")
    await two.execute("go")
    module = sys.modules["clptest_tagger"]
    tags = [i.seen for i in module.instances]
    assert ["from-file"] in tags and ["from-runtime"] in tags


async def test_a_broken_plugin_is_reported_and_does_not_take_others_down(site: Path) -> None:
    write_distribution(site, "counting", "clptest_counting", COUNTING)
    write_distribution(site, "broken", "clptest_broken", "raise ImportError('needs libfoo')\n")
    misconfigured = "def configure(options):\n    raise ValueError('no url')\n"
    write_distribution(site, "misconfigured", "clptest_misconf", misconfigured)
    refresh()
    statuses = {s.name: s for s in plugins.plugin_statuses()}
    assert statuses["broken"].enabled is False and "needs libfoo" in (statuses["broken"].error or "")
    assert statuses["misconfigured"].reason == "failed to configure"
    assert "no url" in (statuses["misconfigured"].error or "")
    await clp.create_runtime(contract()).execute("go")
    assert sys.modules["clptest_counting"].calls == ["go"]


def test_off_by_default_plugins_need_enabling(site: Path) -> None:
    source = ("from clp_core import hookimpl\nenabled_by_default = False\n"
              "@hookimpl\ndef on_error(error, phase):\n    pass\n")
    write_distribution(site, "optin", "clptest_optin", source)
    refresh()
    assert {s.name: s.enabled for s in plugins.plugin_statuses()}["optin"] is False
    config = load_config({"enable": ["optin"]})
    assert {s.name: s.enabled for s in plugins.plugin_statuses(config)}["optin"] is True


@pytest.mark.parametrize("bad", [{"enable": 3}, {"disable": [1]}, {"surprise": True}, {"plugins": {"x": 1}}])
def test_bad_config_is_a_config_error(bad: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(bad, cwd=tmp_path)


def test_inactive_plugins_and_shared_instances(site: Path) -> None:
    source = (
        "from clp_core import hookimpl\n"
        "from clp_core.plugins import Inactive, shared\n"
        "class Budget:\n"
        "    def __init__(self, options):\n"
        "        self.options = dict(options)\n"
        "    @hookimpl\n"
        "    def before_dispatch(self, intent):\n"
        "        pass\n"
        "def configure(options):\n"
        "    return shared(Budget, options) if options else Inactive('no limits configured')\n"
    )
    write_distribution(site, "budget", "clptest_budget", source)
    refresh()
    status = {s.name: s for s in plugins.plugin_statuses()}["budget"]
    assert status.enabled and status.hooks == [] and status.reason.endswith("inactive: no limits configured")
    config = load_config({"plugins": {"budget": {"limit": 3}}})
    one, two = (next(s for s in plugins.plugin_statuses(config) if s.name == "budget") for _ in range(2))
    assert one.instance is two.instance and one.hooks == ["before_dispatch"]
