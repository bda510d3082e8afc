"""clp-webhooks: POST lifecycle events (commits, denials, errors...) as signed JSON.

Hooks only enqueue: delivery runs in background tasks with retries and a per-request
timeout, so a slow endpoint never slows a commit and a dead one never undoes it. Each body is
signed with HMAC-SHA256 (``X-CLP-Signature: sha256=<hex>``) when a ``secret`` is set; check it
on the receiving side with :func:`verify`.

As middleware::

    runtime = clp.create_runtime(contract, middleware=[WebhookPlugin("https://example.org/hook", secret="s")])

Or through configuration (``[plugins.clp-webhooks]``); the plugin is a no-op until ``url``
(or ``urls``) is set. Close the runtime (``async with`` or ``await runtime.close()``) so that
``on_close`` flushes the queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clp_core.plugin_api import Inactive

if TYPE_CHECKING:
    from ._plugin import (
        DEFAULT_EVENTS,
        DELIVERY_HEADER,
        EVENT_HEADER,
        EVENTS,
        SIGNATURE_HEADER,
        WebhookPlugin,
        WebhookStats,
        sign,
        verify,
    )

__version__ = "0.2.0"

name = "clp-webhooks"


def configure(options: Mapping[str, Any]) -> WebhookPlugin | Inactive:
    """A new plugin for ``options`` (the ``[plugins.clp-webhooks]`` table): one per runtime,
    each with its own queue, flushed when that runtime closes."""
    if not options:  # nothing configured: nothing to do, and httpx is not even imported
        return Inactive("no url configured")
    from ._plugin import WebhookPlugin

    plugin = WebhookPlugin.from_options(options)
    return plugin if plugin.urls else Inactive("no url configured")


__all__ = [
    "DEFAULT_EVENTS", "Inactive", "DELIVERY_HEADER", "EVENTS", "EVENT_HEADER", "SIGNATURE_HEADER", "WebhookPlugin",
    "WebhookStats", "configure", "sign", "verify",
]


def __getattr__(attribute: str) -> Any:  # the plugin module (and its library) load on first use
    if attribute in __all__ and attribute not in ("Inactive", "configure"):
        from . import _plugin

        return getattr(_plugin, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
