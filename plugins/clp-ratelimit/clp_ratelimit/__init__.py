"""clp-ratelimit: refuse dispatches over a rate limit, before anything changes.

Limits are set per intent name (``"*"`` is one budget shared by every intent), optionally per
key (a payload field or a function of the intent), and counted by the :pypi:`limits` library
in memory (``memory://``) or in Redis (``redis://host:6379/0``), where several processes share
one budget. A refusal raises :class:`RateLimitedError` from ``before_dispatch``: no intent
becomes current and nothing is logged.

As middleware::

    runtime = clp.create_runtime(contract, middleware=[RateLimitPlugin(limits={"increment": "10/second"})])

Or through configuration (``[tool.clp.plugins.clp-ratelimit]``, ``clp.toml`` or
``create_runtime(config={"plugins": {"clp-ratelimit": {...}}})``); the plugin is a no-op until
``limits`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clp_core.plugin_api import Inactive, shared

if TYPE_CHECKING:
    from ._plugin import RateLimitedError, RateLimitPlugin

__version__ = "0.2.0"

name = "clp-ratelimit"


def configure(options: Mapping[str, Any]) -> RateLimitPlugin | Inactive:
    """The plugin for ``options`` (the ``[plugins.clp-ratelimit]`` table).

    The same options give the same instance within a process, so every runtime configured
    alike shares one budget (with ``memory://``, a budget lives in the instance).
    """
    if not options:  # nothing configured: nothing to do, and limits is not even imported
        return Inactive("no limits configured")
    from ._plugin import RateLimitPlugin

    return _active(shared(RateLimitPlugin.from_options, options))


def _active(plugin: RateLimitPlugin) -> RateLimitPlugin | Inactive:
    return plugin if plugin.rules else Inactive("no limits configured")


__all__ = ["Inactive", "RateLimitPlugin", "RateLimitedError", "configure"]


def __getattr__(attribute: str) -> Any:  # the plugin module (and its library) load on first use
    if attribute in ("RateLimitPlugin", "RateLimitedError"):
        from . import _plugin

        return getattr(_plugin, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
