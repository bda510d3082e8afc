"""clp-otel against the real OpenTelemetry SDK: spans, their attributes and metric values."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from clp_otel import OtelPlugin
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import clp_core as clp
from clp_core.errors import ClpError, EffectError, GuardDeniedError, ProposalError, UnknownIntentError
from clp_core.testing.plugins import PluginSuite, reference_contract


class Telemetry:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def plugin(self, **options: Any) -> OtelPlugin:
        return OtelPlugin(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes or {}), p) for p in m.data.data_points]
        return found

    def value(self, metric: str, **attributes: Any) -> float:
        """The sum of a counter's points whose attributes include ``attributes``."""
        return sum(p.value for attrs, p in self.points(metric) if attributes.items() <= attrs.items())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def runtime_with(*middleware: Any, provider: Any = None, contract: clp.Contract | None = None) -> clp.Runtime:
    return clp.create_runtime(contract or reference_contract(), provider, middleware=list(middleware),
                              config={"disable": ["*"]})


class Refuse:
    """Another plugin whose before_* hooks refuse (as a rate limiter would)."""

    name = "refuse"

    def __init__(self, *phases: str) -> None:
        self.phases = set(phases)

    def _check(self, phase: str) -> None:
        if phase in self.phases:
            raise ClpError(f"refused {phase}")

    def before_dispatch(self, intent: clp.Intent) -> None:
        self._check("dispatch")

    def before_propose(self, intent: clp.Intent) -> None:
        self._check("propose")

    def before_commit(self, intent: clp.Intent) -> None:
        self._check("commit")


# -- conformance ----------------------------------------------------------------------------
class TestOtelConformance(PluginSuite):
    def make_plugin(self) -> Any:
        return Telemetry().plugin()


# -- spans ----------------------------------------------------------------------------------
async def test_a_full_lifecycle_makes_one_span_per_phase_under_the_callers_span(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin, provider=lambda intent: {"amount": 2})
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        await runtime.dispatch("increment", {})
        await runtime.propose("increment")
        await runtime.accept_proposal("increment")
        await runtime.commit()

    dispatch, propose, commit = (telemetry.spans(f"clp.{p}")[0] for p in ("dispatch", "propose", "commit"))
    parent = request.get_span_context()
    for span in (dispatch, propose, commit):
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.context.trace_id == parent.trace_id
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes["clp.intent"] == "increment"
        assert span.attributes["clp.outcome"] == "ok"
        assert span.end_time is not None and span.end_time >= span.start_time
    assert dispatch.attributes["clp.phase"] == "dispatch"
    assert dispatch.attributes["clp.intent.complete"] is True
    assert propose.attributes["clp.proposal.source"] == "ai"
    assert propose.attributes["clp.proposal.fields"] == ("amount",)
    assert commit.attributes["clp.transition"] == "apply"
    assert commit.attributes["clp.permitted"] is True
    assert commit.attributes["clp.guard.no_negative.denied"] is False
    assert commit.attributes["clp.intent.fields"] == ("amount",)
    assert commit.attributes["clp.state.changed"] == ("count",)
    assert plugin.open_spans == 0
    assert runtime.get_state("count") == 2


async def test_a_denial_ends_the_commit_span_with_the_guard_outcome(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin)
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})

    [commit] = telemetry.spans("clp.commit")
    assert commit.attributes["clp.guard.no_negative.denied"] is True
    assert commit.attributes["clp.guard.denied"] == "no_negative"
    assert commit.attributes["clp.permitted"] is False
    assert commit.attributes["clp.outcome"] == "denied"
    assert commit.status.status_code is StatusCode.UNSET  # a refusal, not a failure
    [suggestion] = telemetry.spans("clp.propose")  # the guard's suggestion was staged
    assert suggestion.attributes["clp.proposal.source"] == "guard:no_negative"
    assert telemetry.value("clp.denials", **{"clp.intent": "increment", "clp.guard": "no_negative"}) == 1
    assert telemetry.value("clp.commits") == 0
    assert plugin.open_spans == 0


async def test_denial_is_error_marks_denials_as_errors(telemetry: Telemetry) -> None:
    runtime = runtime_with(telemetry.plugin(denial_is_error=True))
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    [commit] = telemetry.spans("clp.commit")
    assert commit.status.status_code is StatusCode.ERROR
    assert commit.status.description == "Guard no_negative denied"


async def test_a_failing_effect_ends_the_span_with_status_error(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin)
    with pytest.raises(EffectError):
        await runtime.execute("increment", {"fail": True})

    [dispatch] = telemetry.spans("clp.dispatch")
    assert dispatch.status.status_code is StatusCode.UNSET  # the dispatch itself went through
    [commit] = telemetry.spans("clp.commit")
    assert commit.status.status_code is StatusCode.ERROR
    assert "reference effect failure" in (commit.status.description or "")
    assert commit.attributes["error.type"] == "clp_core.errors.EffectError"
    assert commit.attributes["clp.error.cause"] == "RuntimeError"
    assert commit.attributes["clp.outcome"] == "error"
    assert commit.attributes["clp.permitted"] is False
    [event] = [e for e in commit.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "clp_core.errors.EffectError"
    assert telemetry.value("clp.errors", **{"clp.phase": "commit", "error.type": "clp_core.errors.EffectError"}) == 1
    assert plugin.open_spans == 0


@pytest.mark.parametrize("phase", ["dispatch", "propose", "commit"])
async def test_no_span_leaks_when_another_plugin_refuses_after_ours(telemetry: Telemetry, phase: str) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin, Refuse(phase), provider=lambda intent: {"amount": 2})
    with pytest.raises(ClpError, match=f"refused {phase}"):
        await runtime.dispatch("increment", {"amount": 1})
        await runtime.propose("increment")
        await runtime.reject_proposal("increment")
        await runtime.commit()

    [span] = telemetry.spans(f"clp.{phase}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"refused {phase}"
    assert span.attributes["error.type"] == "clp_core.errors.ClpError"
    assert plugin.open_spans == 0
    assert telemetry.value("clp.errors", **{"clp.phase": phase}) == 1


async def test_a_refusal_before_our_hook_opens_no_span(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(Refuse("commit"), plugin)  # the refusing plugin runs first
    with pytest.raises(ClpError, match="refused commit"):
        await runtime.execute("increment", {"amount": 1})
    [commit] = telemetry.spans("clp.commit")  # a failure span all the same, with no duration
    assert commit.status.status_code is StatusCode.ERROR
    assert plugin.open_spans == 0
    assert [p for _, p in telemetry.points("clp.phase.duration")
            if _["clp.phase"] == "commit"] == []  # no latency without a start


async def test_a_failing_provider_ends_the_propose_span_with_error(telemetry: Telemetry) -> None:
    def provider(intent: clp.Intent) -> dict[str, Any]:
        raise TimeoutError("model down")

    runtime = runtime_with(telemetry.plugin(), provider=provider)
    await runtime.dispatch("increment", {})
    with pytest.raises(ProposalError):
        await runtime.propose("increment")
    [propose] = telemetry.spans("clp.propose")
    assert propose.status.status_code is StatusCode.ERROR
    assert propose.attributes["error.type"] == "clp_core.errors.ProposalError"
    assert propose.attributes["clp.error.cause"] == "TimeoutError"


async def test_an_unknown_intent_still_gets_a_failed_dispatch_span(telemetry: Telemetry) -> None:
    runtime = runtime_with(telemetry.plugin())
    with pytest.raises(UnknownIntentError):
        await runtime.dispatch("nope", {})
    [dispatch] = telemetry.spans("clp.dispatch")
    assert dispatch.status.status_code is StatusCode.ERROR
    assert dispatch.status.description == "Unknown intent nope"
    assert dispatch.attributes["error.type"] == "clp_core.errors.UnknownIntentError"


# -- metrics ---------------------------------------------------------------------------------
async def test_counters_and_the_latency_histogram(telemetry: Telemetry) -> None:
    runtime = runtime_with(telemetry.plugin())
    for amount in (1, 2, 3):
        await runtime.execute("increment", {"amount": amount})
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -5})
    with pytest.raises(EffectError):
        await runtime.execute("increment", {"fail": True})

    assert telemetry.value("clp.commits", **{"clp.intent": "increment", "clp.transition": "apply"}) == 3
    assert telemetry.value("clp.denials") == 1
    assert telemetry.value("clp.errors") == 1
    durations = {(a["clp.phase"], a["clp.outcome"]): p for a, p in telemetry.points("clp.phase.duration")}
    assert durations[("dispatch", "ok")].count == 5
    assert durations[("commit", "ok")].count == 3
    assert durations[("commit", "denied")].count == 1
    assert durations[("commit", "error")].count == 1
    assert all(p.sum >= 0 for p in durations.values())


# -- concurrency, nesting, cancellation -------------------------------------------------------
class SlowAfter:
    """Another plugin whose async after/error hooks yield to the loop (lets other tasks in)."""

    name = "slow"

    async def after_dispatch(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        await asyncio.sleep(0.001)

    async def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        await asyncio.sleep(0.001)

    async def on_error(self, error: BaseException, phase: str) -> None:
        await asyncio.sleep(0.001)

    async def on_guard_deny(self, guard: clp.Guard, context: clp.Context) -> None:
        await asyncio.sleep(0.001)


async def test_concurrent_lifecycles_end_every_span_with_its_own_outcome(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin()
    runtime = runtime_with(SlowAfter(), plugin)
    payloads = [{"amount": 1}, {"amount": -1}, {"fail": True}] * 10

    async def one(payload: dict[str, Any]) -> None:
        with contextlib.suppress(ClpError):
            await runtime.execute("increment", payload)

    await asyncio.gather(*(one(p) for p in payloads))
    assert plugin.open_spans == 0
    commits = telemetry.spans("clp.commit")
    assert len(commits) == 30
    by_outcome: dict[str, list[ReadableSpan]] = {}
    for span in commits:
        by_outcome.setdefault(span.attributes["clp.outcome"], []).append(span)
    assert {k: len(v) for k, v in by_outcome.items()} == {"ok": 10, "denied": 10, "error": 10}
    assert all(s.attributes["clp.intent.fields"] == ("amount",) for s in by_outcome["ok"] + by_outcome["denied"])
    assert all(s.attributes["clp.intent.fields"] == ("fail",) for s in by_outcome["error"])
    assert runtime.get_state("count") == 10


async def test_a_subscriber_that_commits_inside_a_commit(telemetry: Telemetry) -> None:
    contract = clp.create_contract(
        intents={"increment": {"inputs": {}}, "note": {"inputs": {}}},
        state={"count": "number", "notes": "number"},
        transitions={"inc": {"when": lambda ctx: ctx.intent.name == "increment",
                             "effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}},
                     "note": {"when": lambda ctx: ctx.intent.name == "note",
                              "effects": lambda ctx: {"notes": (ctx.state.get("notes") or 0) + 1}}},
    )
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin, contract=contract)

    async def on_count(state: Any) -> None:
        await runtime.execute("note")

    runtime.subscribe("count", on_count)
    await runtime.execute("increment")
    commits = {s.attributes["clp.intent"]: s for s in telemetry.spans("clp.commit")}
    assert commits["increment"].attributes["clp.transition"] == "inc"
    assert commits["note"].attributes["clp.transition"] == "note"
    assert {s.attributes["clp.outcome"] for s in commits.values()} == {"ok"}
    assert plugin.open_spans == 0


async def test_a_cancelled_commit_does_not_leak_its_span(telemetry: Telemetry) -> None:
    started = asyncio.Event()

    async def slow(ctx: Any) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(10)
        return {"count": 1}

    contract = clp.create_contract(intents={"go": {"inputs": {}}}, transitions={"t": {"effects": slow}})
    plugin = telemetry.plugin()
    runtime = runtime_with(plugin, contract=contract)
    task = asyncio.create_task(runtime.execute("go"))
    await started.wait()
    assert plugin.open_spans == 2  # dispatch (its after_dispatch comes after the commit) and commit
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # the task's done callbacks
    assert plugin.open_spans == 0
    assert {s.name: s.attributes["clp.outcome"] for s in telemetry.spans()} == {
        "clp.dispatch": "abandoned", "clp.commit": "abandoned"}
    assert all(s.status.status_code is StatusCode.ERROR for s in telemetry.spans())


async def test_max_open_bounds_the_spans_in_flight(telemetry: Telemetry) -> None:
    plugin = telemetry.plugin(max_open=2)
    intents = [clp.Intent("increment", {"amount": i}, True) for i in range(3)]
    for intent in intents:
        plugin.before_commit(intent)
    assert plugin.open_spans == 2
    [evicted] = telemetry.spans("clp.commit")
    assert evicted.attributes["clp.outcome"] == "abandoned"
    for intent in intents:
        plugin.after_commit(intent, clp.LogEntry("increment", intent.payload, "commit"))
    assert plugin.open_spans == 0
    assert [s.attributes["clp.outcome"] for s in telemetry.spans("clp.commit")] == ["abandoned", "ok", "ok"]


async def test_a_bug_in_telemetry_never_fails_the_lifecycle(telemetry: Telemetry,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = telemetry.plugin()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(plugin, "_start", broken)
    runtime = runtime_with(plugin)
    entry = await runtime.execute("increment", {"amount": 1})
    assert entry.transition_result.permitted
