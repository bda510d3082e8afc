"""The ``clp`` plugin manager (:class:`ClpPluginManager`): pluggy's manager with the hook
specifications, labelled lifecycle implementations, unmarked middleware, and the direct-loop
plans the hook runner uses; and the built-in plugins every manager holds.
"""

from __future__ import annotations

import importlib
import inspect
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from .. import hookspecs
from .labelling import _label, _label_wrapper

#: Plugins registered on every manager, whatever the configuration: ``(name, module)``.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("clp-storage", "clp_core.storage.plugin"),
    ("clp-types", "clp_core.validation"),
)


_HOOK_NAMES = frozenset(
    n for n in dir(hookspecs) if callable(getattr(hookspecs, n)) and hasattr(getattr(hookspecs, n), "clp_spec")
)
_LIFECYCLE = frozenset(hookspecs.LIFECYCLE_HOOKS)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def has_markers(obj: Any) -> bool:
    """Whether some attribute of ``obj`` carries a ``@clp_core.hookimpl`` marker."""
    for attr in dir(obj):
        try:
            value = inspect.getattr_static(obj, attr)
        except AttributeError:
            continue
        value = getattr(value, "__func__", value)  # classmethod, staticmethod
        if getattr(value, "clp_impl", None) is not None:
            return True
    return False


def _positional(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A fast ``kwargs -> (kwargs[n] for n in names)``, whatever order the caller used."""
    if len(names) > 1:
        return operator.itemgetter(*names)  # type: ignore[return-value]
    if names:
        name = names[0]
        return lambda kwargs: (kwargs[name],)
    return lambda kwargs: ()


_SPEC_ARGS = {hook: tuple(inspect.signature(getattr(hookspecs, hook)).parameters) for hook in _LIFECYCLE}
_SPEC_GETTERS = {hook: _positional(names) for hook, names in _SPEC_ARGS.items()}

#: One lifecycle hook's implementations in pluggy's call order, for the direct loop:
#: ``(plugin name, function, its argument names or None when they are the specification's)``.
Plan = tuple[tuple[str, Callable[..., Any], "tuple[str, ...] | None"], ...]


class ClpPluginManager(pluggy.PluginManager):
    """The ``clp`` pluggy manager. Implementations need ``@clp_core.hookimpl`` markers, except
    on middleware objects without any (see :meth:`register_middleware`): there, any method
    named like a hook (``before_commit``, or camelCase ``beforeCommit``) is one.

    Direct loop: while a lifecycle hook has no wrapper and the manager is neither traced nor
    monitored (``enable_tracing``, ``add_hookcall_monitoring``), :class:`HookRunner` calls its
    implementations itself, in pluggy's order with pluggy's arguments, which is what
    ``_multicall`` would do, at a fraction of the cost. ``fast_path = False`` turns it off.
    """

    fast_path = True

    def __init__(self) -> None:
        super().__init__("clp")
        self.add_hookspecs(hookspecs)
        self._adapting: Any = None  # the unmarked middleware object being registered
        self.implemented: frozenset[str] = frozenset()  # the hooks some registered plugin implements
        self._plans: dict[str, Plan] = {}
        # pluggy's own executor: tracing and monitoring replace it (then the plans are not used)
        self._plain_hookexec = getattr(self, "_inner_hookexec", None)
        self._registered_cache: dict[str, dict[str, Any]] = {}

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or plugin is not self._adapting:
            return opts
        specname = name if name in _HOOK_NAMES else _snake(name)
        if specname in _HOOK_NAMES and callable(getattr(plugin, name, None)):
            return {"specname": specname} if specname != name else {}
        return None

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            if caller.name not in _LIFECYCLE:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if impl.wrapper or impl.hookwrapper:
                    labelled = _label_wrapper(caller.name, impl.plugin_name, impl.function)
                else:
                    labelled = _label(caller, impl.plugin_name, impl.function)
                impl.function = labelled  # type: ignore[misc]  # pluggy keeps the original argnames
        self._changed()
        return registered

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self._changed()
        return removed

    def register_middleware(self, obj: Any, name: str) -> None:
        """Register ``obj`` as it is if it carries ``@hookimpl`` markers, else adapted."""
        if has_markers(obj):
            self.register(obj, name=name)
            return
        self._adapting = obj
        try:
            self.register(obj, name=name)
        finally:
            self._adapting = None

    def _changed(self) -> None:
        self.implemented = frozenset(
            hook for hook in _HOOK_NAMES if (caller := getattr(self.hook, hook, None)) is not None
            and caller.get_hookimpls())
        self._registered_cache.clear()
        self._plans = {}
        if not self.fast_path or self._plain_hookexec is None:
            return
        for hook in _LIFECYCLE & self.implemented:
            impls = getattr(self.hook, hook).get_hookimpls()
            if any(i.wrapper or i.hookwrapper or i.kwargnames or not hasattr(i.function, "__wrapped__")
                   for i in impls):
                continue
            spec = _SPEC_ARGS[hook]
            self._plans[hook] = tuple(
                (i.plugin_name, i.function.__wrapped__, None if tuple(i.argnames) == spec else tuple(i.argnames))
                for i in reversed(impls))

    def plan(self, hook: str) -> Plan | None:
        """The direct loop for ``hook``, or None: call through pluggy."""
        if self._inner_hookexec is not self._plain_hookexec:
            return None
        return self._plans.get(hook)

    def implements(self, hook: str) -> bool:
        """Whether some registered plugin implements ``hook``."""
        return hook in self.implemented

    def registered(self, hook: str) -> dict[str, Any]:
        """The ``{name: factory}`` dicts returned from registration ``hook``, merged (cached
        until a plugin is registered or unregistered)."""
        merged = self._registered_cache.get(hook)
        if merged is None:
            merged = {}
            for contributed in getattr(self.hook, hook)():  # on a clash, the first registered wins
                merged.update(contributed or {})
            self._registered_cache[hook] = merged
        return merged


def builtin_plugins() -> list[tuple[str, Any]]:
    """The built-in plugins as ``(name, module)``."""
    return [(name, importlib.import_module(module)) for name, module in BUILTIN_PLUGINS]


def new_manager(plugins: Iterable[Any] = ()) -> ClpPluginManager:
    """A manager holding the built-in plugins, then ``plugins``."""
    pm = ClpPluginManager()
    for name, module in builtin_plugins():
        pm.register(module, name=name)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    return pm


def plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str):
        return name
    return getattr(plugin, "__name__", type(plugin).__name__)
