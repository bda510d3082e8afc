"""Plugin discovery (entry-point group ``clp``), configuration, and the managers built from
them, once per configuration (the manager and hook runner themselves are in :mod:`.manager`).

Built-in plugins (:data:`BUILTIN_PLUGINS`) are registered on every manager directly, like
datasette's default plugins; third-party ones are found through entry points and need
``@clp_core.hookimpl`` markers. A plugin that fails to import is recorded with its name and
cause and does not take the others down. The managers are built once per configuration and
shared by the runtimes that use it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import attrs

from .config import RUNTIME_SOURCE, PluginConfig, load_config
from .manager import (
    BUILTIN_PLUGINS,
    ClpPluginManager,
    Failure,
    HookRunner,
    Pending,
    builtin_plugins,
    has_markers,
    new_manager,
    plugin_name,
)

logger = logging.getLogger("clp")
ENTRY_POINT_GROUP = "clp"


@attrs.define
class PluginRecord:
    """What discovery found under one entry-point name."""

    name: str
    distribution: str | None
    version: str | None
    plugin: Any = None
    error: str | None = None


_discovered: list[PluginRecord] | None = None


def discover(refresh: bool = False) -> list[PluginRecord]:
    """Load every ``clp`` entry point once per process (``refresh`` reloads, and forgets the
    managers built from the previous discovery)."""
    global _discovered
    if _discovered is not None and not refresh:
        return _discovered
    records: list[PluginRecord] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        record = PluginRecord(ep.name, dist.name if dist else None, dist.version if dist else None)
        try:
            record.plugin = ep.load()
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            logger.warning("clp plugin %s failed to load: %s", ep.name, record.error)
        records.append(record)
    _discovered = records
    clear_caches()
    return records


class Inactive:
    """What a plugin's ``configure`` returns when its options give it nothing to do: it stays
    enabled, implements no hook (so it costs nothing), and ``clp plugins`` shows ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<inactive: {self.reason}>"


_shared: dict[tuple[Any, str], Any] = {}


_SORTED_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # json.dumps would make one per call


def _canonical(options: Mapping[str, Any]) -> str | None:
    """A JSON text equal for equal options, or None when they are not JSON-like."""
    if not options:
        return "{}"
    try:
        return _SORTED_JSON.encode(options)
    except (TypeError, ValueError):
        return None


def shared(factory: Callable[[Mapping[str, Any]], Any], options: Mapping[str, Any]) -> Any:
    """``factory(options)``, built once per process for equal options, so that runtimes
    configured alike share one instance (one rate budget, one circuit). Options that cannot
    be compared (not JSON-like) give a new instance each time."""
    token = _canonical(dict(options))
    if token is None:
        return factory(options)
    key = (factory, token)
    if key not in _shared:
        _shared[key] = factory(options)
    return _shared[key]


@attrs.define
class PluginStatus:
    """A plugin as one configuration sees it (what ``clp plugins`` lists)."""

    name: str
    distribution: str | None
    version: str | None
    enabled: bool
    reason: str
    hooks: list[str]
    instance: Any = None
    error: str | None = None
    builtin: bool = False


def _implemented_hooks(plugin: Any) -> list[str]:
    pm = ClpPluginManager()
    try:
        pm.register(plugin)
    except Exception:
        return []
    return sorted(pm.implemented)


def builtin_statuses(*, with_hooks: bool = True) -> list[PluginStatus]:
    """The built-in plugins, always enabled."""
    return [PluginStatus(name, "clp-core", None, True, "built-in", _implemented_hooks(module) if with_hooks else [],
                         instance=module, builtin=True)
            for name, module in builtin_plugins()]


def plugin_statuses(config: PluginConfig | None = None, *, with_hooks: bool = True) -> list[PluginStatus]:
    """Every discovered entry-point plugin, enabled or not and why; enabled ones configured.

    A plugin that fails to load or to configure is reported here, disabled, and the others
    are unaffected. (The built-in plugins are in :func:`builtin_statuses`.)
    """
    config = config if config is not None else process_config()
    statuses = []
    for record in discover():
        status = PluginStatus(record.name, record.distribution, record.version, False, "", [])
        if record.error is not None:
            status.reason, status.error = "failed to load", record.error
            statuses.append(status)
            continue
        plugin = record.plugin
        enabled, status.reason = config.state_of(record.name, getattr(plugin, "enabled_by_default", True))
        instance = plugin
        if enabled and callable(getattr(plugin, "configure", None)):
            try:
                configured = plugin.configure(dict(config.options.get(record.name, {})))
            except Exception as exc:
                enabled, status.reason = False, "failed to configure"
                status.error = f"{type(exc).__name__}: {exc}"
                logger.warning("clp plugin %s failed to configure: %s", record.name, status.error)
            else:
                instance = plugin if configured is None else configured
                if isinstance(instance, Inactive):
                    status.reason = f"{status.reason}; inactive: {instance.reason}"
        status.enabled = enabled
        status.instance = instance if enabled else None
        status.hooks = _implemented_hooks(instance) if with_hooks else []
        statuses.append(status)
    return statuses


_process_config: PluginConfig | None = None


def process_config(refresh: bool = False) -> PluginConfig:
    """The configuration from files and environment (cached; ``refresh`` re-reads, and forgets
    the managers built for the previous configuration)."""
    global _process_config
    if _process_config is None or refresh:
        config = load_config()
        config.check_names(installed_names())
        _process_config = config
        clear_caches()
    return _process_config


def installed_names() -> list[str]:
    """The names configuration may use: the built-in plugins' and the discovered ones'."""
    return [name for name, _ in BUILTIN_PLUGINS] + [r.name for r in discover()]


def disabled_reason(name: str) -> str | None:
    """Why the installed plugin ``name`` is disabled (``"disabled by CLP_DISABLE_PLUGINS"``),
    or None when it is enabled or not installed."""
    config = process_config()
    for record in discover():
        if record.name == name:
            if record.error is not None:
                return f"failed to load ({record.error})"
            enabled, reason = config.state_of(name, getattr(record.plugin, "enabled_by_default", True))
            return None if enabled else reason
    return None


def _effective_config(overrides: Mapping[str, Any] | None) -> PluginConfig:
    config = process_config()
    if not overrides:
        return config
    merged = config.merged(overrides, RUNTIME_SOURCE)
    PluginConfig(mentions=merged.mentions[len(config.mentions):], strict=merged.strict).check_names(
        installed_names())
    return merged


def active_plugins(overrides: Mapping[str, Any] | None = None) -> list[Any]:
    """The configured instances of the enabled entry-point plugins (configured anew)."""
    return [s.instance for s in plugin_statuses(_effective_config(overrides), with_hooks=False) if s.enabled]


@attrs.frozen
class _Shared:
    """The enabled entry-point plugins of one configuration and a manager holding them."""

    plugins: tuple[Any, ...]
    hooks: HookRunner


_MAX_CONFIGS = 256
_runtime_cache: dict[str, _Shared] = {}
_registration_cache: dict[str, ClpPluginManager] = {}


def clear_caches() -> None:
    """Forget the managers built so far (after discovery or the configuration changed)."""
    _runtime_cache.clear()
    _registration_cache.clear()


def _shared_for(config: Mapping[str, Any] | None) -> _Shared:
    token = _canonical(dict(config or {}))
    cached = _runtime_cache.get(token) if token is not None else None
    if cached is not None:
        return cached
    plugins = tuple(active_plugins(config))
    built = _Shared(plugins, HookRunner(pm=new_manager(plugins)))
    if token is not None:
        if len(_runtime_cache) >= _MAX_CONFIGS:  # many distinct configs: forget the oldest
            del _runtime_cache[next(iter(_runtime_cache))]
        _runtime_cache[token] = built
    return built


def runtime_hooks(config: Mapping[str, Any] | None, middleware: Sequence[Any]) -> HookRunner:
    """The hook runner of a runtime: the one shared by the runtimes with this ``config=``
    (process configuration plus these overrides) when there is no middleware; with middleware,
    a manager of its own holding the shared plugins and the middleware, which run first, in
    the order given."""
    built = _shared_for(config)
    if not middleware:
        return built.hooks
    return HookRunner(built.plugins, middleware)


def registration_manager(plugins: Iterable[Any] | None = None) -> ClpPluginManager:
    """A manager holding the built-in plugins and the enabled entry-point plugins as loaded
    (or ``plugins``), for the registration hooks (storage schemes, validators, commands):
    these are module-level, so no plugin is configured for them. Without ``plugins`` it is
    built once per configuration."""
    if plugins is not None:
        return new_manager(plugins)
    config = process_config()
    token = "process"
    cached = _registration_cache.get(token)
    if cached is None:
        enabled = [r.plugin for r in discover() if r.plugin is not None
                   and config.state_of(r.name, getattr(r.plugin, "enabled_by_default", True))[0]]
        cached = _registration_cache[token] = new_manager(enabled)
    return cached


def registered(hook: str) -> dict[str, Any]:
    """The ``{name: factory}`` dicts every enabled plugin returns from registration ``hook``
    (``register_storage``, ``register_event_stores``, ``register_validators``), merged."""
    return registration_manager().registered(hook)


__all__ = [
    "BUILTIN_PLUGINS", "ClpPluginManager", "Failure", "HookRunner", "Inactive", "Pending", "PluginRecord",
    "PluginStatus", "active_plugins", "builtin_plugins", "builtin_statuses", "clear_caches", "discover",
    "disabled_reason", "has_markers", "installed_names", "new_manager", "plugin_name", "plugin_statuses",
    "process_config", "registered", "registration_manager", "runtime_hooks", "shared",
]
