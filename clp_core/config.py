"""Plugin configuration, merged from four sources (later ones win):

1. ``[tool.clp]`` in ``pyproject.toml`` of the working directory;
2. ``clp.toml`` in the working directory (or the file named by ``CLP_CONFIG``);
3. environment variables ``CLP_PLUGINS`` and ``CLP_DISABLE_PLUGINS`` (comma-separated names);
4. ``create_runtime(config=...)``.

Shape (the same in every source)::

    enable = ["clp-otel"]            # also turns on plugins that are off by default
    disable = ["clp-audit"]          # "*" disables every entry-point plugin not enabled
                                     # (built-in plugins, clp-storage and clp-types, stay)
    [plugins.clp-webhooks]           # options handed to that plugin's configure()
    url = "http://127.0.0.1:9000/hook"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError


@attrs.frozen
class PluginConfig:
    enable: frozenset[str] = frozenset()
    disable: frozenset[str] = frozenset()
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    sources: tuple[str, ...] = ()

    def merged(self, layer: Mapping[str, Any], source: str) -> PluginConfig:
        """This config with ``layer`` on top: a name enabled later wins over an earlier
        disable and the other way round; options merge per plugin."""
        unknown = set(layer) - {"enable", "disable", "plugins"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)} (expected enable, disable, plugins)")
        enable, disable = _names(layer.get("enable"), source, "enable"), _names(layer.get("disable"), source, "disable")
        plugins = layer.get("plugins") or {}
        if not isinstance(plugins, Mapping) or not all(isinstance(v, Mapping) for v in plugins.values()):
            raise ConfigError(f"{source}: 'plugins' must map plugin names to option tables")
        options = {name: dict(opts) for name, opts in self.options.items()}
        for name, opts in plugins.items():
            options.setdefault(name, {}).update(opts)
        return PluginConfig(
            enable=(self.enable - disable) | enable,
            disable=(self.disable - enable) | disable,
            options=options,
            sources=(*self.sources, source),
        )

    def state_of(self, name: str, default_enabled: bool) -> tuple[bool, str]:
        """Whether plugin ``name`` is on, and why."""
        if name in self.disable:
            return False, "disabled by config"
        if name in self.enable:
            return True, "enabled by config"
        if "*" in self.disable:
            return False, "disabled by config ('*')"
        return (True, "enabled by default") if default_enabled else (False, "off by default; enable it by name")


def _names(value: Any, source: str, key: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: '{key}' must be a list of plugin names")
    return frozenset(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_config(overrides: Mapping[str, Any] | None = None, *, cwd: Path | None = None) -> PluginConfig:
    """Merge the four sources, lowest precedence first."""
    cwd = cwd or Path.cwd()
    config = PluginConfig()
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("clp")
        if table:
            config = config.merged(table, f"{pyproject} [tool.clp]")
    clp_toml = Path(os.environ["CLP_CONFIG"]) if os.environ.get("CLP_CONFIG") else cwd / "clp.toml"
    if clp_toml.is_file():
        config = config.merged(_read_toml(clp_toml), str(clp_toml))
    env = {"enable": os.environ.get("CLP_PLUGINS"), "disable": os.environ.get("CLP_DISABLE_PLUGINS")}
    if any(env.values()):
        config = config.merged({k: v for k, v in env.items() if v}, "environment")
    if overrides:
        config = config.merged(overrides, "create_runtime(config=...)")
    return config
