"""Lifecycle hooks through middleware objects: order, sync/async, before_* blocks, after_* failures."""

from __future__ import annotations

from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import ClpError, HookError


class Refused(ClpError):
    pass


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        guards=[{"name": "no_negative", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0}],
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
    )


class Recorder:
    """Implements every lifecycle hook, half of them async."""

    def __init__(self, name: str, calls: list[Any]) -> None:
        self.name, self.calls = name, calls

    def before_dispatch(self, intent: clp.Intent) -> None:
        self.calls.append((self.name, "before_dispatch", intent.name))

    async def after_dispatch(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.calls.append((self.name, "after_dispatch", entry.phase))

    def before_propose(self, intent: clp.Intent) -> None:
        self.calls.append((self.name, "before_propose", intent.name))

    async def after_propose(self, intent: clp.Intent, proposal: clp.Proposal) -> None:
        self.calls.append((self.name, "after_propose", proposal.source))

    async def before_commit(self, intent: clp.Intent) -> None:
        self.calls.append((self.name, "before_commit", intent.name))

    def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.calls.append((self.name, "after_commit", entry.transition_result.name))

    def on_guard_deny(self, guard: clp.Guard, context: clp.Context) -> None:
        self.calls.append((self.name, "on_guard_deny", guard.name))

    def on_error(self, error: BaseException, phase: str) -> None:
        self.calls.append((self.name, "on_error", phase))


async def test_hooks_run_in_middleware_order_through_the_lifecycle() -> None:
    calls: list[Any] = []
    rt = clp.create_runtime(contract(), lambda intent: {"amount": 2},
                            middleware=[Recorder("a", calls), Recorder("b", calls)])
    await rt.dispatch("increment", {})
    await rt.propose("increment")
    await rt.accept_proposal("increment")
    await rt.commit()
    assert calls == [
        ("a", "before_dispatch", "increment"), ("b", "before_dispatch", "increment"),
        ("a", "after_dispatch", "dispatch"), ("b", "after_dispatch", "dispatch"),
        ("a", "before_propose", "increment"), ("b", "before_propose", "increment"),
        ("a", "after_propose", "ai"), ("b", "after_propose", "ai"),
        ("a", "before_commit", "increment"), ("b", "before_commit", "increment"),
        ("a", "after_commit", "apply"), ("b", "after_commit", "apply"),
    ]


async def test_guard_denial_calls_on_guard_deny_not_on_error() -> None:
    calls: list[Any] = []
    rt = clp.create_runtime(contract(), middleware=[Recorder("a", calls)])
    with pytest.raises(clp.errors.GuardDeniedError):
        await rt.execute("increment", {"amount": -1})
    assert ("a", "on_guard_deny", "no_negative") in calls
    assert not [c for c in calls if c[1] == "on_error"]


@pytest.mark.parametrize("hook", ["before_dispatch", "before_commit"])
async def test_a_raising_before_hook_stops_the_phase_with_nothing_changed(hook: str) -> None:
    calls: list[Any] = []

    class Blocker:
        name = "blocker"

    async def refuse(intent: clp.Intent) -> None:
        raise Refused(f"{hook} says no")

    blocker = Blocker()
    setattr(blocker, hook, refuse)
    rt = clp.create_runtime(contract(), middleware=[blocker, Recorder("after", calls)])
    if hook == "before_commit":
        await rt.dispatch("increment", {})
    with pytest.raises(Refused, match="says no"):
        await rt.execute("increment", {}) if hook == "before_dispatch" else await rt.commit()
    assert rt.get_state("count") is None
    phase = "dispatch" if hook == "before_dispatch" else "commit"
    assert ("after", "on_error", phase) in calls
    assert not [c for c in calls if c[1] == hook]  # later hooks of the phase did not run
    if hook == "before_dispatch":
        assert rt.current_intent is None and rt.get_log() == []


async def test_a_non_clp_error_in_a_before_hook_is_wrapped() -> None:
    class Broken:
        name = "broken"

        def before_dispatch(self, intent: clp.Intent) -> None:
            raise ValueError("oops")

    rt = clp.create_runtime(contract(), middleware=[Broken()])
    with pytest.raises(HookError, match="before_dispatch of plugin middleware:0:broken") as info:
        await rt.dispatch("increment", {})
    assert isinstance(info.value.__cause__, ValueError)


async def test_after_hook_failure_never_undoes_a_commit() -> None:
    calls: list[Any] = []

    class Broken:
        name = "broken"

        async def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
            raise RuntimeError("webhook down")

    rt = clp.create_runtime(contract(), middleware=[Broken(), Recorder("r", calls)])
    entry = await rt.execute("increment", {})
    assert entry.transition_result.permitted
    assert rt.get_state("count") == 1
    assert ("r", "after_commit", "apply") in calls  # later after hooks still run
    assert ("r", "on_error", "after_commit") in calls


async def test_roadmap_camel_case_middleware() -> None:
    calls: list[str] = []

    class Analytics:
        name = "analytics"

        def beforeDispatch(self, intent: clp.Intent) -> None:
            calls.append("beforeDispatch")

        async def afterCommit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
            calls.append("afterCommit")

    rt = clp.create_runtime(contract(), middleware=[Analytics()])
    await rt.execute("increment", {})
    assert calls == ["beforeDispatch", "afterCommit"]


async def test_middleware_applies_to_its_runtime_only() -> None:
    calls: list[Any] = []
    with_mw = clp.create_runtime(contract(), middleware=[Recorder("a", calls)])
    without = clp.create_runtime(contract())
    await without.execute("increment", {})
    assert calls == []
    await with_mw.execute("increment", {})
    assert calls


async def test_on_log_entry_sees_every_entry_in_order() -> None:
    shipped: list[clp.LogEntry] = []

    class Shipper:
        async def on_log_entry(self, entry: clp.LogEntry) -> None:
            shipped.append(entry)

    rt = clp.create_runtime(contract(), lambda intent: {"amount": 3}, middleware=[Shipper()])
    await rt.dispatch("increment", {})
    await rt.propose("increment")
    await rt.reject_proposal("increment")
    await rt.propose("increment")
    await rt.accept_proposal("increment")
    await rt.commit()
    with pytest.raises(clp.errors.GuardDeniedError):
        await rt.execute("increment", {"amount": -1})
    with pytest.raises(clp.errors.NoIntentError):
        await clp.create_runtime(contract(), middleware=[Shipper()]).commit()
    assert shipped[:-1] == rt.get_log()
    assert [e.phase for e in shipped] == ["dispatch", "propose", "reject", "propose", "accept", "commit",
                                          "dispatch", "commit", "commit"]
    assert shipped[-1].error == "No intent to commit"


async def test_on_log_entry_keeps_log_order_when_hooks_await_under_concurrency() -> None:
    import asyncio

    shipped: list[clp.LogEntry] = []

    class Slow:
        async def on_log_entry(self, entry: clp.LogEntry) -> None:
            await asyncio.sleep(0.001)

    class Shipper:
        def on_log_entry(self, entry: clp.LogEntry) -> None:
            shipped.append(entry)

    rt = clp.create_runtime(contract(), middleware=[Slow(), Shipper()])
    await asyncio.gather(*(rt.execute("increment", {}) for _ in range(30)))
    await asyncio.sleep(0.2)
    assert shipped == rt.get_log()


@pytest.mark.parametrize("how", ["commit", "execute"])
async def test_a_failed_commit_ships_its_entry_before_on_error(how: str) -> None:
    seen: list[str] = []

    class Spy:
        def on_log_entry(self, entry: clp.LogEntry) -> None:
            seen.append(f"entry:{entry.phase}")

        def on_error(self, error: BaseException, phase: str) -> None:
            seen.append(f"error:{phase}")

    failing = clp.create_contract(intents={"go": {"inputs": {}}},
                                  transitions={"t": {"effects": lambda ctx: 1 / 0}})
    rt = clp.create_runtime(failing, middleware=[Spy()])
    with pytest.raises(clp.errors.EffectError):
        if how == "commit":
            await rt.dispatch("go")
            await rt.commit()
        else:
            await rt.execute("go")
    assert seen == ["entry:dispatch", "entry:commit", "error:commit"]


async def test_hook_arguments_follow_the_specification_not_the_callers_order() -> None:
    seen: list[tuple[str, str]] = []

    class Spy:
        def on_error(self, error: BaseException, phase: str) -> None:
            seen.append((type(error).__name__, phase))

    rt = clp.create_runtime(contract(), middleware=[Spy()])
    await rt.hooks.call("on_error", phase="custom", error=RuntimeError("x"))
    assert seen == [("RuntimeError", "custom")]
