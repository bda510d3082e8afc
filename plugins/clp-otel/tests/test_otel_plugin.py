"""clp-otel as an installed plugin: discovery, configuration, toggling."""

from __future__ import annotations

import clp_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import clp_core as clp
from clp_core.config import PluginConfig
from clp_core.plugins import plugin_statuses
from clp_core.testing.plugins import reference_contract


def test_the_plugin_is_discovered_through_its_entry_point() -> None:
    statuses = {s.name: s for s in plugin_statuses(PluginConfig())}
    status = statuses["clp-otel"]
    assert (status.distribution, status.version) == ("clp-otel", clp_otel.__version__)
    assert status.enabled and status.reason == "enabled by default"
    assert isinstance(status.instance, clp_otel.OtelPlugin)
    assert {"before_dispatch", "after_commit", "on_guard_deny", "on_error"} <= set(status.hooks)


def test_bad_options_disable_it_with_a_reason() -> None:
    config = PluginConfig().merged({"plugins": {"clp-otel": {"max_open": 0}}}, "test")
    status = {s.name: s for s in plugin_statuses(config)}["clp-otel"]
    assert not status.enabled and status.reason == "failed to configure"
    assert "max_open" in (status.error or "")


def _config(exporter: InMemorySpanExporter, **extra: object) -> dict[str, object]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return {"plugins": {"clp-otel": {"tracer_provider": provider}}, **extra}


async def test_enabled_by_default_and_configured_by_name() -> None:
    exporter = InMemorySpanExporter()
    runtime = clp.create_runtime(reference_contract(), config=_config(exporter))
    await runtime.execute("increment", {"amount": 1})
    assert [s.name for s in exporter.get_finished_spans()] == ["clp.dispatch", "clp.commit"]


async def test_disabling_it_by_config_turns_it_off() -> None:
    exporter = InMemorySpanExporter()
    runtime = clp.create_runtime(reference_contract(), config=_config(exporter, disable=["clp-otel"]))
    assert not any(isinstance(p, clp_otel.OtelPlugin) for p in runtime.hooks.pm.get_plugins())
    await runtime.execute("increment", {"amount": 1})
    assert exporter.get_finished_spans() == ()
