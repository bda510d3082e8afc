"""The plugin: ships every entry a runtime appends to its log (``on_log_entry``) to the sinks."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from clp_core import LogEntry, hookimpl
from clp_core.plugin_api import entry_to_dict

from . import DEFAULT_LOGGER  # defined by the package (configure() needs it without this module)
from ._sinks import JsonlFileSink, LoggingSink, Sink, StructlogSink, encode

__all__ = ["DEFAULT_LOGGER", "AuditPlugin"]

_log = logging.getLogger("clp.audit.plugin")

_UNSET: Any = object()


class AuditPlugin:
    """Ships log entries to sinks: a JSON Lines file (``path``, rotated at ``max_bytes`` with
    ``backup_count`` old files), a ``logging`` logger (``logger``, at ``level``), structlog.

    Every entry the runtime appends to its log reaches :meth:`on_log_entry`, in log order,
    and is shipped as :func:`clp_core.log.entry_to_dict` of it, nothing added or rebuilt. With
    no sink named, records go to the ``clp.audit`` logger.
    """

    name = "clp-audit"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 0,
        backup_count: int = 5,
        logger: str | None = _UNSET,
        level: int | str = logging.INFO,
        structlog: bool = False,
        fsync: bool = False,
        sinks: Sequence[Sink] = (),
    ) -> None:
        numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if not isinstance(numeric, int):
            raise ValueError(f"unknown logging level {level!r}")
        if max_bytes < 0 or backup_count < 0:
            raise ValueError("max_bytes and backup_count must not be negative")
        self.sinks: list[Sink] = list(sinks)
        if path is not None:
            self.sinks.append(JsonlFileSink(path, max_bytes, backup_count, fsync))
        if logger is _UNSET:
            logger = DEFAULT_LOGGER if path is None and not sinks else None
        if logger:
            self.sinks.append(StructlogSink(logger, numeric) if structlog else LoggingSink(logger, numeric))

    # -- hooks -----------------------------------------------------------------------------
    @hookimpl
    def on_log_entry(self, entry: LogEntry) -> None:
        self.ship(entry)

    @hookimpl
    def on_close(self) -> None:
        for sink in self.sinks:
            sink.close()

    # -- shipping ------------------------------------------------------------------------------
    def ship(self, entry: LogEntry) -> None:
        """Send one entry to every sink; a failing sink does not keep the others from it
        (the first failure is raised once they all had it)."""
        sinks = [s for s in self.sinks if s.enabled()]
        if not sinks:
            return
        record = entry_to_dict(entry)
        line = encode(record)
        failure: Exception | None = None
        for sink in sinks:
            try:
                sink.emit(record, line)
            except Exception as exc:
                _log.exception("clp-audit: sink %r failed", sink)
                failure = failure or exc
        if failure is not None:
            raise failure
