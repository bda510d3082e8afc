"""The ``clp`` plugin manager and the hook runner: how lifecycle hooks are called.

Hooks go through pluggy's own hook callers (``pm.hook.<name>(**kwargs)``), then what they
returned to await is awaited, in order (as datasette does), so wrappers, ``tryfirst`` and
``trylast``, ``pm.trace`` and ``pm.add_hookcall_monitoring`` work as pluggy documents them.
While a hook has no wrapper and the manager is neither traced nor monitored, the runner
calls the implementations itself in pluggy's order (the same calls, without the cost of
``_multicall``). The built-in plugins are registered on every manager.

The parts: :mod:`.labelling` (how implementations are wrapped), :mod:`.plugin_manager`
(:class:`ClpPluginManager`, the built-in plugins) and :mod:`.runner` (:class:`HookRunner`).
"""

from __future__ import annotations

from .labelling import Failure, Pending
from .plugin_manager import (
    BUILTIN_PLUGINS,
    ClpPluginManager,
    Plan,
    builtin_plugins,
    has_markers,
    new_manager,
    plugin_name,
)
from .runner import HookRunner, logger

__all__ = [
    "BUILTIN_PLUGINS", "ClpPluginManager", "Failure", "HookRunner", "Pending", "Plan", "builtin_plugins",
    "has_markers", "logger", "new_manager", "plugin_name",
]
