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

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clp_core.plugin_api import ConfigError, Inactive

if TYPE_CHECKING:
    from ._plugin import PHASES, SCOPE, OtelPlugin, error_type

__version__ = "0.2.0"
__all__ = ["PHASES", "SCOPE", "OtelPlugin", "configure", "error_type", "providers_configured"]

name = "clp-otel"
enabled_by_default = True

OPTIONS = frozenset({"tracer_provider", "meter_provider", "denial_is_error", "max_open", "always_on"})
_LAZY = frozenset({"PHASES", "SCOPE", "OtelPlugin", "error_type"})


def __getattr__(attribute: str) -> Any:  # the plugin module (and OpenTelemetry) load on first use
    if attribute in _LAZY:
        from . import _plugin

        return getattr(_plugin, attribute)
    raise AttributeError(f"module 'clp_otel' has no attribute {attribute!r}")


def providers_configured() -> bool:
    """Whether the application set a global tracer or meter provider (an SDK), or names one
    in ``OTEL_PYTHON_TRACER_PROVIDER`` / ``OTEL_PYTHON_METER_PROVIDER``. Without
    ``opentelemetry`` imported nobody set one, so this imports nothing."""
    if os.environ.get("OTEL_PYTHON_TRACER_PROVIDER") or os.environ.get("OTEL_PYTHON_METER_PROVIDER"):
        return True
    if "opentelemetry.trace" not in sys.modules and "opentelemetry.metrics" not in sys.modules:
        return False
    from opentelemetry import metrics, trace

    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    tracer_unset = isinstance(tracer_provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    meter_unset = (isinstance(meter_provider, metrics.NoOpMeterProvider)
                   or type(meter_provider).__name__ == "_ProxyMeterProvider")  # the API's placeholder
    return not (tracer_unset and meter_unset)


def configure(options: Mapping[str, Any]) -> OtelPlugin | Inactive:
    """A plugin for one runtime from its ``clp-otel`` options.

    ``denial_is_error`` (bool), ``max_open`` (int) and ``always_on`` (bool) may come from any
    config source; ``tracer_provider`` and ``meter_provider`` only from
    ``create_runtime(config=...)``. With neither provider given and no global provider set
    (no SDK set up yet: spans and metrics would go nowhere), the plugin is inactive and costs
    nothing, unless ``always_on`` is true.
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
    always_on = options.get("always_on", False)
    if not isinstance(always_on, bool):
        raise ConfigError("clp-otel: always_on must be true or false")
    tracer_provider, meter_provider = options.get("tracer_provider"), options.get("meter_provider")
    if tracer_provider is None and meter_provider is None and not always_on and not providers_configured():
        return Inactive("no exporter configured (no tracer or meter provider set)")
    from ._plugin import OtelPlugin

    return OtelPlugin(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        denial_is_error=denial_is_error,
        max_open=max_open,
    )
