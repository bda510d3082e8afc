"""Plugin discovery (entry-point group ``clp``) and the hook runner each runtime uses.

Built-in plugins register through the same entry points as third-party ones. A plugin that
fails to import is recorded with its name and cause and does not take the others down.
"""

from __future__ import annotations

import inspect
import json
import logging
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .config import PluginConfig, load_config
from .errors import ClpError, HookError

logger = logging.getLogger("clp")
ENTRY_POINT_GROUP = "clp"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ClpPluginManager(pluggy.PluginManager):
    """A pluggy manager that also takes plain objects: any method named like a hook
    (``before_commit``, or the roadmap's ``beforeCommit``) is an implementation."""

    def __init__(self) -> None:
        super().__init__("clp")
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None:
            return opts
        specname = name if name in _HOOK_NAMES else _snake(name)
        if specname in _HOOK_NAMES and callable(getattr(plugin, name, None)):
            return {"specname": specname} if specname != name else {}
        return None


_HOOK_NAMES = frozenset(
    n for n in dir(hookspecs) if callable(getattr(hookspecs, n)) and hasattr(getattr(hookspecs, n), "clp_spec")
)


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
    """Load every ``clp`` entry point once per process (``refresh`` reloads)."""
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
    return records


class Inactive:
    """What a plugin's ``configure`` returns when its options give it nothing to do: it stays
    enabled, implements no hook (so it costs nothing), and ``clp plugins`` shows ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<inactive: {self.reason}>"


_shared: dict[tuple[Any, str], Any] = {}


def shared(factory: Callable[[Mapping[str, Any]], Any], options: Mapping[str, Any]) -> Any:
    """``factory(options)``, built once per process for equal options, so that runtimes
    configured alike share one instance (one rate budget, one circuit). Options that cannot
    be compared (not JSON-like) give a new instance each time."""
    try:
        token = json.dumps(dict(options), sort_keys=True)
    except (TypeError, ValueError):
        return factory(options)
    key = (factory, token)
    if key not in _shared:
        _shared[key] = factory(options)
    return _shared[key]


@attrs.define
class PluginStatus:
    """A discovered plugin as one configuration sees it (what ``clp plugins`` lists)."""

    name: str
    distribution: str | None
    version: str | None
    enabled: bool
    reason: str
    hooks: list[str]
    instance: Any = None
    error: str | None = None


def _implemented_hooks(plugin: Any) -> list[str]:
    pm = ClpPluginManager()
    try:
        pm.register(plugin)
    except Exception:
        return []
    return sorted({impl_name for impl_name, caller in vars(pm.hook).items()
                   if isinstance(caller, pluggy.HookCaller) and caller.get_hookimpls()})


def plugin_statuses(config: PluginConfig | None = None, *, with_hooks: bool = True) -> list[PluginStatus]:
    """Every discovered plugin, enabled or not and why; enabled ones configured.

    A plugin that fails to load or to configure is reported here, disabled, and the others
    are unaffected.
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
    """The configuration from files and environment (cached; ``refresh`` re-reads)."""
    global _process_config
    if _process_config is None or refresh:
        _process_config = load_config()
    return _process_config


def active_plugins(overrides: Mapping[str, Any] | None = None) -> list[Any]:
    """The configured instances of the enabled entry-point plugins."""
    config = process_config()
    if overrides:
        config = config.merged(overrides, "create_runtime(config=...)")
    return [s.instance for s in plugin_statuses(config, with_hooks=False) if s.enabled]


def registration_manager(plugins: Iterable[Any] | None = None) -> ClpPluginManager:
    """A manager holding the enabled entry-point plugins as loaded (or ``plugins``), for the
    registration hooks (storage schemes, validators, commands): these are module-level, so
    no plugin is configured for them."""
    pm = ClpPluginManager()
    if plugins is None:
        config = process_config()
        plugins = [r.plugin for r in discover() if r.plugin is not None
                   and config.state_of(r.name, getattr(r.plugin, "enabled_by_default", True))[0]]
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    return pm


def registered(hook: str) -> dict[str, Any]:
    """The ``{name: factory}`` dicts every enabled plugin returns from registration ``hook``
    (``register_storage``, ``register_event_stores``, ``register_validators``), merged."""
    merged: dict[str, Any] = {}
    for contributed in getattr(registration_manager().hook, hook)():
        merged.update(contributed or {})
    return merged


def plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str):
        return name
    return getattr(plugin, "__name__", type(plugin).__name__)


def _positional(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A fast ``kwargs -> (kwargs[n] for n in names)``, whatever order the caller used."""
    if len(names) > 1:
        return operator.itemgetter(*names)  # type: ignore[return-value]
    if names:
        name = names[0]
        return lambda kwargs: (kwargs[name],)
    return lambda kwargs: ()


class HookRunner:
    """Calls a runtime's hooks in a fixed order, awaiting async implementations.

    Order: the runtime's middleware in the order given, then entry-point plugins (pluggy's
    ``tryfirst``/``trylast`` markers are honoured).
    """

    def __init__(self, plugins: Sequence[Any], middleware: Sequence[Any]) -> None:
        self.pm = ClpPluginManager()
        for plugin in plugins:
            self.pm.register(plugin)
        for index, obj in reversed(list(enumerate(middleware))):
            self.pm.register(obj, name=f"middleware:{index}:{plugin_name(obj)}")
        # per hook: (plugin name, function, the argument names it takes, or None when it
        # takes them all in the specification's order: then the call passes them positionally)
        self._impls: dict[str, list[tuple[str, Any, tuple[str, ...] | None]]] = {}
        self._spec_args: dict[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {}
        for hook in hookspecs.LIFECYCLE_HOOKS:
            caller = getattr(self.pm.hook, hook)
            spec = tuple(inspect.signature(getattr(hookspecs, hook)).parameters)
            self._spec_args[hook] = _positional(spec)
            self._impls[hook] = [
                (impl.plugin_name, impl.function, None if tuple(impl.argnames) == spec else tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
            ]

    def has(self, hook: str) -> bool:
        return bool(self._impls[hook])

    async def call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation in order; the first failure stops and is raised.

        A :class:`ClpError` propagates as is; anything else is wrapped in :class:`HookError`.
        """
        args = self._spec_args[hook](kwargs)
        for plugin, function, argnames in self._impls[hook]:
            try:
                result = function(*args) if argnames is None else function(*[kwargs[a] for a in argnames])
                if result is not None and inspect.isawaitable(result):
                    await result
            except ClpError:
                raise
            except Exception as exc:
                raise HookError(hook, plugin) from exc

    async def call_quietly(self, hook: str, **kwargs: Any) -> list[BaseException]:
        """Call every implementation; failures are collected, not raised."""
        errors: list[BaseException] = []
        args = self._spec_args[hook](kwargs)
        for plugin, function, argnames in self._impls[hook]:
            try:
                result = function(*args) if argnames is None else function(*[kwargs[a] for a in argnames])
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                logger.exception("clp hook %s of %s failed", hook, plugin)
                errors.append(HookError(hook, plugin) if not isinstance(exc, ClpError) else exc)
                errors[-1].__cause__ = exc if errors[-1] is not exc else exc.__cause__
        return errors


def runtime_hooks(config: Mapping[str, Any] | None, middleware: Sequence[Any]) -> HookRunner:
    """The hooks of a runtime created with ``config=`` overrides and ``middleware``."""
    return HookRunner(active_plugins(config), list(middleware))
