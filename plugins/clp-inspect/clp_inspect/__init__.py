"""clp-inspect: a local, read-only web page over a CLP store.

``clp inspect sqlite:///app.db`` serves, on 127.0.0.1, the aggregates of a store; for one,
its event timeline (intent, proposal source, guard outcomes, transition, diff), the state as
of any event with the diff from the one before, and, from runtimes that opt in with
:class:`LiveInspector`, their pending intent, staged proposal and recent denials and errors.
The page updates itself while runtimes commit (server-sent events).

Only the live data needs the runtime's help: commits are in the event store, the rest
lives in the runtime's memory. As middleware::

    inspector = LiveInspector("sqlite:///app.db", storage_key="order:42", initial_state=INITIAL)
    runtime = clp.create_runtime(contract, storage_key="order:42", event_store="sqlite:///app.db",
                                 initial_state=INITIAL, middleware=[inspector])

The web application itself is :func:`clp_inspect.app.create_app` (Starlette), imported
on demand so that runtimes using only :class:`LiveInspector` do not load it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._live import INDEX_KEY, LIVE_PREFIX, LiveInspector, live_key
    from ._reader import InspectError, ReadOnlyEventStore, ReadOnlyStorage, StoreReader
    from ._security import BindError, check_bind, is_loopback

__version__ = "0.2.0"

__all__ = [
    "INDEX_KEY", "LIVE_PREFIX", "BindError", "InspectError", "LiveInspector", "ReadOnlyEventStore",
    "ReadOnlyStorage", "StoreReader", "check_bind", "is_loopback", "live_key", "serve",
]

# where each name lives: imported on first use, so that the ``clp`` entry point
# (``clp_inspect.plugin``, found at every runtime's plugin discovery) loads none of them
_HOMES = {"INDEX_KEY": "_live", "LIVE_PREFIX": "_live", "LiveInspector": "_live", "live_key": "_live",
          "InspectError": "_reader", "ReadOnlyEventStore": "_reader", "ReadOnlyStorage": "_reader",
          "StoreReader": "_reader", "BindError": "_security", "check_bind": "_security", "is_loopback": "_security"}


def __getattr__(attribute: str) -> Any:
    home = _HOMES.get(attribute)
    if home is None:
        raise AttributeError(f"module 'clp_inspect' has no attribute {attribute!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), attribute)


def serve(*args: object, **kwargs: object) -> None:
    """Run the inspector (see :func:`clp_inspect._server.serve`)."""
    from ._server import serve as _serve

    _serve(*args, **kwargs)  # type: ignore[arg-type]
