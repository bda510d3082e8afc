"""clp-otel as an installed plugin: discovery, configuration, toggling."""

from __future__ import annotations

import os
import subprocess
import sys

import clp_otel
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import clp_core as clp
from clp_core.config import PluginConfig
from clp_core.plugin_api import Inactive
from clp_core.plugins import plugin_statuses
from clp_core.testing.plugins import reference_contract


def test_the_plugin_is_discovered_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clp_otel, "providers_configured", lambda: True)  # as if the app set up an SDK
    statuses = {s.name: s for s in plugin_statuses(PluginConfig())}
    status = statuses["clp-otel"]
    assert (status.distribution, status.version) == ("clp-otel", clp_otel.__version__)
    assert status.enabled and status.reason == "enabled by default"
    assert isinstance(status.instance, clp_otel.OtelPlugin)
    assert {"before_dispatch", "after_commit", "on_guard_deny", "on_error"} <= set(status.hooks)


def test_inactive_until_a_provider_is_set() -> None:
    """No tracer_provider/meter_provider option and no global provider: spans would go nowhere,
    so the plugin implements no hook (costs nothing) and says why."""
    assert not clp_otel.providers_configured()  # the tests never set a global provider
    status = {s.name: s for s in plugin_statuses(PluginConfig())}["clp-otel"]
    assert status.enabled and isinstance(status.instance, Inactive) and status.hooks == []
    assert status.reason == "enabled by default; inactive: no exporter configured (no tracer or meter provider set)"
    forced = PluginConfig().merged({"plugins": {"clp-otel": {"always_on": True}}}, "test")
    status = {s.name: s for s in plugin_statuses(forced)}["clp-otel"]
    assert isinstance(status.instance, clp_otel.OtelPlugin) and "before_commit" in status.hooks


def test_discovery_and_an_inactive_configure_do_not_import_opentelemetry() -> None:
    code = ("import sys, clp_otel; assert not clp_otel.providers_configured(); "
            "print(type(clp_otel.configure({})).__name__, any(m.startswith('opentelemetry') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    assert out.stdout.split() == ["Inactive", "False"], out.stderr


def test_a_provider_named_in_the_environment_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider")
    assert clp_otel.providers_configured()


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
