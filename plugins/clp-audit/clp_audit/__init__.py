"""clp-audit: ship CLP log entries to a rotating JSON Lines file, ``logging`` or structlog.

Every entry a runtime appends to its log (dispatch, propose, accept, reject, commit, denials,
failures, saga progress) reaches the ``on_log_entry`` hook in log order and is shipped as
:func:`clp_core.log.entry_to_dict` of it (proposal source, guard outcomes, state diff, error);
:func:`clp_core.log.entry_from_dict` reads a record back. As middleware::

    audit = AuditPlugin("audit.jsonl", max_bytes=10_000_000, backup_count=5)
    runtime = clp.create_runtime(contract, middleware=[audit], config={"disable": ["clp-audit"]})

As the ``clp-audit`` entry-point plugin (on by default once installed), options come from
``[tool.clp.plugins.clp-audit]``, ``clp.toml`` or ``create_runtime(config=...)``: ``path``,
``max_bytes``, ``backup_count``, ``logger``, ``level``, ``structlog``, ``fsync``, ``always_on``.
With no ``path`` and no ``logger``, records go to the ``clp.audit`` logger at INFO; a logger
with no handler when the runtime is created leaves the plugin inactive (``always_on`` keeps it).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clp_core.plugin_api import ConfigError, Inactive

if TYPE_CHECKING:
    from ._plugin import AuditPlugin
    from ._sinks import JsonlFileSink, LoggingSink, Sink, StructlogSink, encode

__version__ = "0.2.0"
__all__ = ["DEFAULT_LOGGER", "AuditPlugin", "JsonlFileSink", "LoggingSink", "Sink", "StructlogSink",
           "configure", "encode"]

#: The logger records go to when no sink is named.
DEFAULT_LOGGER = "clp.audit"

name = "clp-audit"
enabled_by_default = True

OPTIONS = frozenset({"path", "max_bytes", "backup_count", "logger", "level", "structlog", "fsync", "always_on"})


def _count(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"clp-audit: {key} must be a non-negative integer")
    return value


def _flag(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"clp-audit: {key} must be true or false")
    return value


def configure(options: Mapping[str, Any]) -> AuditPlugin | Inactive:
    """A plugin for one runtime from its ``clp-audit`` options (``logger = false``: no logger).

    When its only sink would be a ``logging`` logger with no handler (on it or its ancestors:
    logging is not configured, the records would go nowhere), the plugin is inactive and costs
    nothing, unless ``always_on`` is true. Configure logging before creating runtimes."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"clp-audit: unknown options {sorted(unknown)} (expected {sorted(OPTIONS)})")
    path = options.get("path")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ConfigError("clp-audit: path must be a file path")
    kwargs: dict[str, Any] = {}
    if "logger" in options:
        logger = options["logger"]
        if logger is not False and logger is not None and not isinstance(logger, str):
            raise ConfigError("clp-audit: logger must be a logger name, or false")
        kwargs["logger"] = logger or None
    level = options.get("level", logging.INFO)
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"clp-audit: unknown level {options.get('level')!r}")
    if not _flag(options, "always_on") and path is None and not options.get("structlog"):
        name = kwargs.get("logger", DEFAULT_LOGGER)
        if not name:
            return Inactive("no sink (no path, logger = false)")
        if not logging.getLogger(name).hasHandlers():
            return Inactive(f"logger {name!r} has no handler (logging not configured)")
    from ._plugin import AuditPlugin  # the sinks load when there is somewhere to ship to

    return AuditPlugin(
        path,
        max_bytes=_count(options, "max_bytes", 0),
        backup_count=_count(options, "backup_count", 5),
        level=level,
        structlog=_flag(options, "structlog"),
        fsync=_flag(options, "fsync"),
        **kwargs,
    )


_HOMES = {"AuditPlugin": "_plugin", "JsonlFileSink": "_sinks", "LoggingSink": "_sinks", "Sink": "_sinks",
          "StructlogSink": "_sinks", "encode": "_sinks"}


def __getattr__(attribute: str) -> Any:
    home = _HOMES.get(attribute)
    if home is None:
        raise AttributeError(f"module 'clp_audit' has no attribute {attribute!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), attribute)
