"""clp-otel: an OpenTelemetry span per lifecycle phase, and metrics, for CLP runtimes.

Spans ``clp.dispatch``, ``clp.propose`` and ``clp.commit`` start in ``before_<phase>`` and end
in ``after_<phase>``, ``on_guard_deny`` or ``on_error``; counters ``clp.commits``,
``clp.denials`` and ``clp.errors`` and the histogram ``clp.phase.duration`` go to the meter.

As middleware, with explicit providers::

    runtime = clp.create_runtime(contract, middleware=[OtelPlugin(tracer_provider=tp, meter_provider=mp)])

As the ``clp-otel`` entry-point plugin (on by default once installed), it uses the global
providers; options come from ``[tool.clp.plugins.clp-otel]``, ``clp.toml`` or
``create_runtime(config={"plugins": {"clp-otel": {...}}})``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clp_core.plugin_api import ConfigError

from ._plugin import PHASES, SCOPE, OtelPlugin, error_type

__version__ = "0.2.0"
__all__ = ["PHASES", "SCOPE", "OtelPlugin", "configure", "error_type"]

name = "clp-otel"
enabled_by_default = True

OPTIONS = frozenset({"tracer_provider", "meter_provider", "denial_is_error", "max_open"})


def configure(options: Mapping[str, Any]) -> OtelPlugin:
    """A plugin for one runtime from its ``clp-otel`` options.

    ``denial_is_error`` (bool) and ``max_open`` (int) may come from any config source;
    ``tracer_provider`` and ``meter_provider`` only from ``create_runtime(config=...)``.
    """
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"clp-otel: unknown options {sorted(unknown)} (expected {sorted(OPTIONS)})")
    denial_is_error = options.get("denial_is_error", False)
    if not isinstance(denial_is_error, bool):
        raise ConfigError("clp-otel: denial_is_error must be true or false")
    max_open = options.get("max_open", 1000)
    if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
        raise ConfigError("clp-otel: max_open must be a positive integer")
    return OtelPlugin(
        tracer_provider=options.get("tracer_provider"),
        meter_provider=options.get("meter_provider"),
        denial_is_error=denial_is_error,
        max_open=max_open,
    )
