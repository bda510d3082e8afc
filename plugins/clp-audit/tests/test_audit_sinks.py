"""clp-audit: what it ships, to a rotating JSON Lines file, to logging and to structlog."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from clp_audit import AuditPlugin, JsonlFileSink, encode

import clp_core as clp
from clp_core.errors import ClpError, ConfigError, EffectError, GuardDeniedError, NoIntentError, UnknownIntentError
from clp_core.log import entry_from_dict, entry_to_dict
from clp_core.testing.plugins import PluginSuite, reference_contract


class MemorySink:
    """Keeps the records it is given, and their JSON lines."""

    def __init__(self) -> None:
        self.given: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def enabled(self) -> bool:
        return True

    def emit(self, record: Mapping[str, Any], line: str) -> None:
        self.given.append(dict(record))
        self.lines.append(line)

    def close(self) -> None:
        pass

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def runtime_with(*middleware: Any, provider: Any = None, contract: clp.Contract | None = None,
                 **options: Any) -> clp.Runtime:
    return clp.create_runtime(contract or reference_contract(), provider, middleware=list(middleware),
                              config={"disable": ["*"]}, **options)


async def reference_run(runtime: clp.Runtime) -> None:
    """dispatch, propose, accept, commit; a denial with a suggestion; a failing effect."""
    await runtime.dispatch("increment", {})
    await runtime.propose("increment")
    await runtime.accept_proposal("increment")
    await runtime.commit()
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    with pytest.raises(EffectError):
        await runtime.execute("increment", {"fail": True})


def assert_shipped_exactly(records: list[dict[str, Any]], log: list[clp.LogEntry]) -> None:
    """``records`` (read back from JSON) are the log's entries, in order, with nothing added."""
    assert [entry_from_dict(r) for r in records] == log
    assert records == [json.loads(encode(entry_to_dict(e))) for e in log]


class TestAuditConformance(PluginSuite):
    def make_plugin(self) -> Any:
        return AuditPlugin(sinks=[MemorySink()])


class TestAuditFileConformance(PluginSuite):
    def make_plugin(self) -> Any:
        return AuditPlugin(Path(tempfile.mkdtemp()) / "audit.jsonl", max_bytes=2000, backup_count=1)


# -- what is shipped ------------------------------------------------------------------------
async def test_the_shipped_records_are_the_runtime_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    memory = MemorySink()
    runtime = runtime_with(AuditPlugin(path, sinks=[memory]), provider=lambda intent: {"amount": 2})
    async with runtime:
        await reference_run(runtime)
        await runtime.dispatch("increment", {})
        await runtime.propose("increment")
        await runtime.reject_proposal("increment")
        await runtime.commit()
        with pytest.raises(NoIntentError):
            await runtime.commit()  # logged: a commit with no intent
        with pytest.raises(UnknownIntentError):
            await runtime.dispatch("nope", {})  # not logged: not shipped either

    log = runtime.get_log()
    assert [(e.phase, e.error is None) for e in log] == [
        ("dispatch", True), ("propose", True), ("accept", True), ("commit", True),
        ("dispatch", True), ("commit", False), ("dispatch", True), ("commit", False),
        ("dispatch", True), ("propose", True), ("reject", True), ("commit", True), ("commit", False),
    ]
    assert memory.given == [entry_to_dict(e) for e in log]  # the sinks get entry_to_dict itself
    records = read_lines(path)
    assert records == memory.records
    assert_shipped_exactly(records, log)

    shipped = [entry_from_dict(r) for r in records]
    accept, denied, failed, reject = shipped[2], shipped[5], shipped[7], shipped[10]
    assert accept.accepted_proposal == {"amount": 2} and accept.proposal_source == "ai"
    assert reject.staged_proposal == {"amount": 2} and reject.proposal_source == "ai"
    # a denied commit: the guards' outcomes and the staged suggestion, as the runtime logged them
    assert denied.guard_outcomes == (clp.GuardOutcome("no_negative", True),)
    assert denied.error == "Guard no_negative denied"
    assert denied.staged_proposal == {"amount": 0} and denied.proposal_source == "guard:no_negative"
    assert not denied.transition_result.permitted
    # a failed commit: the transition attempted, the guards that passed, the error
    assert failed.intent_payload == {"fail": True} and failed.transition_attempted == "apply"
    assert failed.guard_outcomes == (clp.GuardOutcome("no_negative", False),)
    assert failed.error == "effects of apply failed: RuntimeError: reference effect failure"
    assert shipped[3].state_diff[0].path == "count" and shipped[3].state_diff[0].value == 2
    assert shipped[-1].intent_name is None and shipped[-1].error == str(NoIntentError())


async def test_entries_are_shipped_when_the_call_returns_in_log_order() -> None:
    memory = MemorySink()
    runtime = runtime_with(AuditPlugin(sinks=[memory]), provider=lambda intent: {"amount": 2})
    await runtime.dispatch("increment", {})
    await runtime.propose("increment")
    assert [r["phase"] for r in memory.records] == ["dispatch", "propose"]
    await runtime.accept_proposal("increment")  # no after_* hook: shipped all the same
    assert [r["phase"] for r in memory.records] == ["dispatch", "propose", "accept"]

    async def one(amount: int) -> None:
        with contextlib.suppress(ClpError):
            await runtime.execute("increment", {"amount": amount})

    await asyncio.gather(*(one(amount) for amount in (1, -1, 2, -2, 3) * 4))
    assert_shipped_exactly(memory.records, runtime.get_log())


async def test_the_log_limit_does_not_bound_what_is_shipped() -> None:
    memory = MemorySink()
    runtime = runtime_with(AuditPlugin(sinks=[memory]), log_limit=4)
    for amount in range(1, 11):
        await runtime.execute("increment", {"amount": amount})
    assert len(memory.records) == 20 and len(runtime.get_log()) == 4
    assert_shipped_exactly(memory.records[-4:], runtime.get_log())
    commits = [r["intent_payload"]["amount"] for r in memory.records if r["phase"] == "commit"]
    assert commits == list(range(1, 11))


async def test_saga_entries_and_replays_are_shipped() -> None:
    def release(ctx: clp.SagaContext) -> None:
        pass

    contract = clp.create_contract(
        intents={"pay": {"inputs": {"order": "string", "fail": "boolean?"}}},
        transitions={"charge": {
            "effects": lambda ctx: {"paid": ctx.intent.payload["order"]} if not ctx.intent.payload.get("fail")
            else 1 / 0,
            "idempotency_key": lambda ctx: f"pay:{ctx.intent.payload['order']}"}},
    )
    memory = MemorySink()
    runtime = runtime_with(AuditPlugin(sinks=[memory]), contract=contract)
    await runtime.execute("pay", {"order": "A"})
    replayed = await runtime.execute("pay", {"order": "A"})
    assert replayed.replay
    result = await runtime.run_saga(clp.Saga(name="checkout", steps={
        "first": clp.Step(intent="pay", payload={"order": "B"}, compensate=release),
        "second": clp.Step(intent="pay", payload={"order": "C", "fail": True}),
    }))
    assert result.status == "compensated"

    log = runtime.get_log()
    assert_shipped_exactly(memory.records, log)
    shipped = [entry_from_dict(r) for r in memory.records]
    assert shipped[3].replay and shipped[3].idempotency_key == "pay:A"
    assert [(e.detail or {}).get("kind") for e in shipped if e.phase == "saga"] == [
        "saga_started", "step_started", "step_completed", "step_started", "step_failed",
        "compensation_started", "step_compensated", "saga_compensated"]


async def test_dates_and_other_values_are_encoded(tmp_path: Path) -> None:
    contract = clp.create_contract(intents={"book": {"inputs": {"on": "date"}}},
                                   transitions={"t": {"effects": lambda ctx: {"on": ctx.intent.payload["on"]}}})
    path = tmp_path / "audit.jsonl"
    runtime = runtime_with(AuditPlugin(path), contract=contract)
    await runtime.execute("book", {"on": dt.date(2024, 2, 29)})
    dispatch, commit = read_lines(path)
    assert dispatch["intent_payload"] == {"on": "2024-02-29"}
    assert commit["state_diff"][0]["value"] == "2024-02-29"
    assert entry_from_dict(commit).transition_result.permitted


# -- the file sink ----------------------------------------------------------------------------
async def test_the_file_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    runtime = runtime_with(AuditPlugin(path, max_bytes=1500, backup_count=2))
    for amount in range(1, 31):
        await runtime.execute("increment", {"amount": amount})

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    chunks = [read_lines(path.parent / name) for name in ("audit.jsonl.2", "audit.jsonl.1", "audit.jsonl")]
    for name in files:
        assert (path.parent / name).stat().st_size <= 1500
    kept = [r for chunk in chunks for r in chunk]
    assert all(chunk for chunk in chunks)
    amounts = [r["intent_payload"]["amount"] for r in kept if r["phase"] == "commit"]
    assert amounts == sorted(amounts) and amounts[-1] == 30  # oldest first, the newest kept
    assert len(kept) < 60  # older records went with the dropped backups


async def test_backup_count_zero_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    runtime = runtime_with(AuditPlugin(path, max_bytes=200, backup_count=0))
    for _ in range(10):
        await runtime.execute("increment", {"amount": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]
    assert len(read_lines(path)) == 20


async def test_concurrent_runtimes_share_one_writer_and_lines_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    runtimes = [runtime_with(AuditPlugin(path, max_bytes=4000, backup_count=50)) for _ in range(3)]

    async def one(runtime: clp.Runtime, payload: dict[str, Any]) -> None:
        with contextlib.suppress(ClpError):
            await runtime.execute("increment", payload)

    payloads = [{"amount": 1}, {"amount": -1}, {"fail": True}] * 10
    await asyncio.gather(*(one(r, p) for r in runtimes for p in payloads))
    files = sorted(tmp_path.iterdir())
    records = [r for f in files for r in read_lines(f)]  # every line parses
    # per runtime and payload: dispatch + commit (committed, denied or failed)
    assert len(records) == 3 * len(payloads) * 2
    assert sorted(map(encode, records)) == sorted(encode(entry_to_dict(e)) for r in runtimes for e in r.get_log())
    assert len(files) > 1


def test_one_file_cannot_have_two_rotation_settings(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path / "a.jsonl", max_bytes=100)
    assert JsonlFileSink(tmp_path / "a.jsonl", max_bytes=100).path == sink.path
    with pytest.raises(ConfigError, match="other rotation settings"):
        JsonlFileSink(tmp_path / "a.jsonl", max_bytes=200)


async def test_a_failing_sink_is_reported_and_does_not_starve_the_others(tmp_path: Path) -> None:
    class Broken(MemorySink):
        def emit(self, record: Mapping[str, Any], line: str) -> None:
            raise OSError("disk full")

    memory = MemorySink()
    errors: list[tuple[str, BaseException]] = []

    class Watcher:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append((phase, error))

    runtime = runtime_with(AuditPlugin(sinks=[Broken(), memory]), Watcher())
    entry = await runtime.execute("increment", {"amount": 1})
    assert entry.transition_result.permitted  # a sink cannot undo the commit
    assert_shipped_exactly(memory.records, runtime.get_log())  # the healthy sink got every entry
    assert [(phase, type(e).__name__) for phase, e in errors] == [
        ("on_log_entry", "HookError"), ("on_log_entry", "HookError")]
    assert str(errors[0][1]) == "Hook on_log_entry of plugin middleware:0:clp-audit failed"
    assert isinstance(errors[0][1].__cause__, OSError)


# -- logging and structlog ----------------------------------------------------------------------
async def test_the_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.audit")
    runtime = runtime_with(AuditPlugin(logger="app.audit"))
    await runtime.execute("increment", {"amount": 3})
    records = [r for r in caplog.records if r.name == "app.audit"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    dispatch, commit = (json.loads(r.getMessage()) for r in records)
    assert dispatch["phase"] == "dispatch" and commit["phase"] == "commit"
    assert entry_from_dict(commit) == runtime.get_log()[-1]
    assert records[1].clp_entry["transition_result"] == {"name": "apply", "permitted": True}


async def test_the_default_sink_is_the_clp_audit_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="clp.audit")
    runtime = runtime_with(AuditPlugin())
    await runtime.execute("increment", {"amount": 3})
    assert not [r for r in caplog.records if r.name == "clp.audit"]  # below the level: not even encoded
    caplog.set_level(logging.INFO, logger="clp.audit")
    await runtime.execute("increment", {"amount": 3})
    assert len([r for r in caplog.records if r.name == "clp.audit"]) == 2


async def test_the_structlog_sink() -> None:
    runtime = runtime_with(AuditPlugin(logger="app.audit", structlog=True, level="WARNING"))
    with structlog.testing.capture_logs() as logs:
        await runtime.execute("increment", {"amount": 3})
    assert [(e["event"], e["log_level"], e["phase"], e["intent"]) for e in logs] == [
        ("clp.audit", "warning", "dispatch", "increment"), ("clp.audit", "warning", "commit", "increment")]
    assert entry_from_dict(logs[1]["entry"]) == runtime.get_log()[-1]
