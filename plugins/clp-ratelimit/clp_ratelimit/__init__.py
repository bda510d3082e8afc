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

import json
from collections.abc import Mapping
from typing import Any

from ._plugin import RateLimitedError, RateLimitPlugin

__version__ = "0.2.0"

name = "clp-ratelimit"

_configured: dict[str, RateLimitPlugin] = {}


def configure(options: Mapping[str, Any]) -> RateLimitPlugin | Inactive:
    """The plugin for ``options`` (the ``[plugins.clp-ratelimit]`` table).

    The same options give the same instance within a process, so every runtime configured
    alike shares one budget (with ``memory://``, a budget lives in the instance).
    """
    try:
        token = json.dumps(dict(options), sort_keys=True, default=repr)
    except TypeError:  # keys that are not strings: no sharing
        return _active(RateLimitPlugin.from_options(options))
    plugin = _configured.get(token)
    if plugin is None:
        plugin = _configured[token] = RateLimitPlugin.from_options(options)
    return _active(plugin)


def _active(plugin: RateLimitPlugin) -> RateLimitPlugin | Inactive:
    return plugin if plugin.rules else Inactive("no limits configured")


class Inactive:
    """What :func:`configure` returns while nothing is configured: an object with no hooks,
    so an installed but unconfigured plugin costs nothing (``clp plugins`` lists it enabled,
    with no hooks)."""

    name = "clp-ratelimit"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.name}: inactive, {self.reason}>"


__all__ = ["Inactive", "RateLimitPlugin", "RateLimitedError", "configure"]
