"""clp-breaker: a circuit breaker around AI provider calls and commits.

Two circuits, each opened by ``fail_max`` failures in a row and half-opened after a
cool-down (``reset_timeout``): ``provider`` counts AI provider failures (``on_error`` phase
``propose``) and refuses ``propose`` from ``before_propose``; ``commit`` counts effect and
storage failures (phases ``commit`` and ``storage``) and refuses commits from
``before_commit``. While open, :class:`CircuitOpenError` is raised at once, before the provider
or the effects are called. State lives in memory or in Redis, shared by processes.

As middleware::

    runtime = clp.create_runtime(contract, provider, middleware=[BreakerPlugin(fail_max=5, reset_timeout=30)])

Or through configuration (``[plugins.clp-breaker]``); the plugin is a no-op until
``fail_max`` (or ``circuits``) is set. Built on purgatory (asyncio-native, async Redis).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clp_core.plugin_api import Inactive, shared

if TYPE_CHECKING:
    from ._plugin import CIRCUIT_PHASES, BreakerPlugin, CircuitOpenError, default_is_failure

__version__ = "0.2.0"

name = "clp-breaker"


def configure(options: Mapping[str, Any]) -> BreakerPlugin | Inactive:
    """The plugin for ``options`` (the ``[plugins.clp-breaker]`` table).

    The same options give the same instance within a process, so runtimes configured alike
    share their circuits (with ``memory://`` the state lives in the instance).
    """
    if not options:  # nothing configured: nothing to do, and purgatory is not even imported
        return Inactive("no fail_max or circuits configured")
    from ._plugin import BreakerPlugin

    return _active(shared(BreakerPlugin.from_options, options))


def _active(plugin: BreakerPlugin) -> BreakerPlugin | Inactive:
    return plugin if plugin.circuits else Inactive("no fail_max or circuits configured")


__all__ = ["Inactive", "CIRCUIT_PHASES", "BreakerPlugin", "CircuitOpenError", "configure", "default_is_failure"]


def __getattr__(attribute: str) -> Any:  # the plugin module (and its library) load on first use
    if attribute in ("CIRCUIT_PHASES", "BreakerPlugin", "CircuitOpenError", "default_is_failure"):
        from . import _plugin

        return getattr(_plugin, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
