"""Plugin configuration, merged from these sources (later ones win):

1. ``[tool.clp]`` in ``pyproject.toml`` of the working directory;
2. ``clp.toml`` in the working directory (or the file named by ``CLP_CONFIG``);
3. environment variables ``CLP_PLUGINS`` (enable) then ``CLP_DISABLE_PLUGINS`` (disable):
   plugin names separated by commas, spaces or both (``"clp-audit clp-otel"``);
4. ``create_runtime(config=...)``.

Shape (the same in every source)::

    enable = ["clp-otel"]            # also turns on plugins that are off by default
    disable = ["clp-audit"]          # "*" disables every entry-point plugin not enabled
                                     # (built-in plugins, clp-storage and clp-types, stay)
    strict = true                    # unknown plugin names are an error, not a warning
    [plugins.clp-webhooks]           # options handed to that plugin's configure()
    url = "http://127.0.0.1:9000/hook"

Each name remembers the source that last enabled or disabled it (``clp plugins`` shows it).
A name no installed plugin has is a :class:`ConfigWarning` listing the installed ones; with
``strict = true`` in any source, ``CLP_STRICT_CONFIG=1`` or ``clp --strict`` it is a
:class:`~clp_core.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError


class ConfigWarning(UserWarning):
    """A configuration that does something other than it says (an unknown plugin name): a
    :class:`~clp_core.errors.ConfigError` instead in strict mode."""


#: Where a setting came from, as ``clp plugins`` says it.
PYPROJECT_SOURCE = "[tool.clp] in pyproject.toml"
ENABLE_ENV, DISABLE_ENV, STRICT_ENV = "CLP_PLUGINS", "CLP_DISABLE_PLUGINS", "CLP_STRICT_CONFIG"
RUNTIME_SOURCE = "create_runtime(config=...)"


@attrs.frozen
class PluginConfig:
    enable: frozenset[str] = frozenset()
    disable: frozenset[str] = frozenset()
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    sources: tuple[str, ...] = ()
    #: ``{name: source}``: the source that last enabled or disabled each name.
    origins: Mapping[str, str] = attrs.field(factory=dict)
    #: ``(source, name)`` for every plugin name a source mentions (checked against the installed).
    mentions: tuple[tuple[str, str], ...] = ()
    strict: bool = False

    def merged(self, layer: Mapping[str, Any], source: str) -> PluginConfig:
        """This config with ``layer`` on top: a name enabled later wins over an earlier
        disable and the other way round; options merge per plugin."""
        unknown = set(layer) - {"enable", "disable", "plugins", "strict"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)} (expected enable, disable, plugins, strict)")
        strict = layer.get("strict", self.strict)
        if not isinstance(strict, bool):
            raise ConfigError(f"{source}: 'strict' must be true or false")
        enable, disable = _names(layer.get("enable"), source, "enable"), _names(layer.get("disable"), source, "disable")
        plugins = layer.get("plugins") or {}
        if not isinstance(plugins, Mapping) or not all(isinstance(v, Mapping) for v in plugins.values()):
            raise ConfigError(f"{source}: 'plugins' must map plugin names to option tables")
        options = {name: dict(opts) for name, opts in self.options.items()}
        for name, opts in plugins.items():
            options.setdefault(name, {}).update(opts)
        named = sorted(enable | disable) + sorted(set(plugins) - enable - disable)
        return PluginConfig(
            enable=(self.enable - disable) | enable,
            disable=(self.disable - enable) | disable,
            options=options,
            sources=(*self.sources, source),
            origins={**self.origins, **dict.fromkeys(enable | disable, source)},
            mentions=(*self.mentions, *((source, name) for name in named)),
            strict=strict,
        )

    def state_of(self, name: str, default_enabled: bool) -> tuple[bool, str]:
        """Whether plugin ``name`` is on, and why (naming the source that said so)."""
        if name in self.disable:
            return False, f"disabled by {self.origins.get(name, 'config')}"
        if name in self.enable:
            return True, f"enabled by {self.origins.get(name, 'config')}"
        if "*" in self.disable:
            return False, f"disabled by {self.origins.get('*', 'config')} ('*')"
        return (True, "enabled by default") if default_enabled else (False, "off by default; enable it by name")

    def check_names(self, installed: Iterable[str]) -> list[str]:
        """Warn (:class:`ConfigWarning`) about each plugin name a source mentions that no
        installed plugin has, listing the installed ones; strict: raise :class:`ConfigError`.
        Returns the problems."""
        known = sorted(set(installed))
        problems = []
        for source, name in self.mentions:
            if name == "*" or name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1) or [n for n in known if n.endswith("-" + name)]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{source}: no installed plugin is named {name!r}{hint} "
                            f"(installed: {', '.join(known) or 'none'})")
        if problems and self.strict:
            raise ConfigError("; ".join(problems))
        for problem in problems:
            warnings.warn(problem, ConfigWarning, stacklevel=3)
        return problems


def _names(value: Any, source: str, key: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,]+", value) if v]
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
            config = config.merged(table, PYPROJECT_SOURCE)
    clp_toml = Path(os.environ["CLP_CONFIG"]) if os.environ.get("CLP_CONFIG") else cwd / "clp.toml"
    if clp_toml.is_file():
        config = config.merged(_read_toml(clp_toml), clp_toml.name if clp_toml.parent == cwd else str(clp_toml))
    for variable, key in ((ENABLE_ENV, "enable"), (DISABLE_ENV, "disable")):
        if os.environ.get(variable):
            config = config.merged({key: os.environ[variable]}, variable)
    if os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        config = attrs.evolve(config, strict=True)
    if overrides:
        config = config.merged(overrides, RUNTIME_SOURCE)
    return config
