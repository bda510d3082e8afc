"""Hooks go through pluggy's own hook callers: wrappers, tryfirst/trylast, tracing and call
monitoring work as pluggy documents them; markers are required except on plain middleware;
managers are built once per configuration and shared."""

from __future__ import annotations

import sys
import textwrap
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core import hookimpl, plugins
from clp_core.errors import ClpError, HookError


class Refused(ClpError):
    pass


@pytest.fixture(autouse=True, params=["direct", "pluggy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with the direct loop (taken when no wrapper, tracing or monitoring
    is there) and with every call through pluggy's _multicall."""
    monkeypatch.setattr(plugins.ClpPluginManager, "fast_path", request.param == "direct")
    return str(request.param)


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + 1}}},
    )


class Plain:
    """A marked plugin whose before_commit records its name."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    @hookimpl
    def before_commit(self, intent: clp.Intent) -> None:
        self.calls.append(self.name)


class AsyncPlain(Plain):
    @hookimpl
    async def before_commit(self, intent: clp.Intent) -> None:
        self.calls.append(self.name)


class Wrapper:
    name = "wrapper"

    def __init__(self, calls: list[str], refuse: BaseException | None = None) -> None:
        self.calls, self.refuse = calls, refuse

    @hookimpl(wrapper=True)
    def before_commit(self, intent: clp.Intent) -> Generator[None, Any, Any]:
        self.calls.append("wrapper:before")
        result = yield
        self.calls.append("wrapper:after")
        if self.refuse is not None:
            raise self.refuse
        return result


async def test_a_wrapper_surrounds_the_other_implementations() -> None:
    calls: list[str] = []
    rt = clp.create_runtime(contract(), middleware=[Plain("a", calls), Wrapper(calls), Plain("b", calls)])
    await rt.execute("increment")
    assert calls == ["wrapper:before", "a", "b", "wrapper:after"]
    assert rt.get_state("count") == 1


@pytest.mark.parametrize("refusal", [Refused("no"), RuntimeError("bug")])
async def test_a_wrapper_can_refuse_the_commit(refusal: BaseException) -> None:
    calls: list[str] = []
    rt = clp.create_runtime(contract(), middleware=[Plain("a", calls), Wrapper(calls, refuse=refusal)])
    await rt.dispatch("increment", {})
    expected = Refused if isinstance(refusal, Refused) else HookError
    with pytest.raises(expected) as raised:
        await rt.commit()
    if expected is HookError:
        assert (raised.value.hook, raised.value.plugin) == ("before_commit", "middleware:1:wrapper")
        assert raised.value.__cause__ is refusal
    assert calls == ["wrapper:before", "a", "wrapper:after"]
    assert rt.get_state("count") is None


async def test_a_wrapper_sees_a_refusal_of_another_implementation() -> None:
    seen: list[Any] = []

    class Observer:
        @hookimpl(wrapper=True)
        def before_commit(self, intent: clp.Intent) -> Generator[None, Any, Any]:
            try:
                return (yield)
            except Exception as exc:
                seen.append(exc)
                raise

    class Refuser:
        @hookimpl
        def before_commit(self, intent: clp.Intent) -> None:
            raise Refused("over quota")

    rt = clp.create_runtime(contract(), middleware=[Observer(), Refuser()])
    with pytest.raises(Refused):
        await rt.execute("increment")
    assert [type(e) for e in seen] == [Refused]


async def test_hook_call_monitoring_and_tracing_see_each_hook_call() -> None:
    class Everything:
        pass

    every = Everything()
    for hook in clp.hookspecs.LIFECYCLE_HOOKS:  # unmarked middleware: adapted
        arguments = ", ".join(a for a in getattr(clp.hookspecs, hook).__code__.co_varnames)
        namespace: dict[str, Any] = {}
        exec(f"def {hook}({arguments}):\n    return None", namespace)
        setattr(every, hook, namespace[hook])
    rt = clp.create_runtime(contract(), middleware=[every])
    before: list[str] = []
    after: list[str] = []
    undo = rt.hooks.pm.add_hookcall_monitoring(lambda name, impls, kwargs: before.append(name),
                                               lambda outcome, name, impls, kwargs: after.append(name))
    traced: list[str] = []
    rt.hooks.pm.trace.root.setwriter(traced.append)
    undo_trace = rt.hooks.pm.enable_tracing()
    try:
        await rt.execute("increment")
    finally:
        undo()
        undo_trace()
    assert before == after
    assert before[:2] == ["before_dispatch", "before_commit"]
    assert {"after_commit", "after_dispatch", "on_log_entry"} <= set(before)
    assert any("before_commit" in line for line in traced)


async def test_tryfirst_and_trylast_reorder_the_middleware() -> None:
    calls: list[str] = []

    class Last(Plain):
        @hookimpl(trylast=True)
        def before_commit(self, intent: clp.Intent) -> None:
            self.calls.append(self.name)

    class First(Plain):
        @hookimpl(tryfirst=True)
        def before_commit(self, intent: clp.Intent) -> None:
            self.calls.append(self.name)

    rt = clp.create_runtime(contract(), middleware=[Last("last", calls), Plain("plain", calls),
                                                    First("first", calls)])
    await rt.execute("increment")
    assert calls == ["first", "plain", "last"]


async def test_async_and_sync_implementations_keep_their_order() -> None:
    calls: list[str] = []
    rt = clp.create_runtime(contract(), middleware=[Plain("a", calls), AsyncPlain("b", calls), Plain("c", calls),
                                                    AsyncPlain("d", calls)])
    await rt.execute("increment")
    assert calls == ["a", "b", "c", "d"]


class UnmarkedMiddleware:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def before_commit(self, intent: clp.Intent) -> None:
        self.calls.append("before_commit")

    async def afterCommit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.calls.append("afterCommit")


class PartlyMarked:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl
    def before_commit(self, intent: clp.Intent) -> None:
        self.calls.append("before_commit")

    def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.calls.append("after_commit")


async def test_unmarked_middleware_is_adapted_marked_middleware_is_not() -> None:
    calls: list[str] = []
    await clp.create_runtime(contract(), middleware=[UnmarkedMiddleware(calls)]).execute("increment")
    assert calls == ["before_commit", "afterCommit"]
    calls.clear()
    await clp.create_runtime(contract(), middleware=[PartlyMarked(calls)]).execute("increment")
    assert calls == ["before_commit"]


def test_an_unmarked_method_of_a_plugin_is_not_a_hook() -> None:
    runner = plugins.HookRunner([UnmarkedMiddleware([]), PartlyMarked([])])
    assert runner.has("before_commit")  # PartlyMarked's, marked
    assert [i.plugin.__class__ for i in runner.pm.hook.before_commit.get_hookimpls()] == [PartlyMarked]
    assert not runner.has("after_commit")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    for var in ("CLP_PLUGINS", "CLP_DISABLE_PLUGINS", "CLP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    yield root
    for module in [m for m in sys.modules if m.startswith("clptest_")]:
        del sys.modules[module]
    plugins.discover(refresh=True)
    plugins.process_config(refresh=True)


async def test_an_entry_point_plugin_needs_markers(site: Path) -> None:
    (site / "clptest_half.py").write_text(textwrap.dedent("""
        from clp_core import hookimpl
        calls = []
        def before_commit(intent):
            calls.append("before_commit")
        @hookimpl
        def after_commit(intent, entry):
            calls.append("after_commit")
    """))
    info = site / "clptest_half-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clptest_half\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[clp]\nhalf = clptest_half\n")
    plugins.discover(refresh=True)
    plugins.process_config(refresh=True)
    assert {s.name: s.hooks for s in plugins.plugin_statuses()}["half"] == ["after_commit"]
    await clp.create_runtime(contract()).execute("increment")
    assert sys.modules["clptest_half"].calls == ["after_commit"]


class Failing:
    def __init__(self, name: str, exc: BaseException, asynchronous: bool = False) -> None:
        self.name, self.exc, self.asynchronous = name, exc, asynchronous

    @hookimpl
    def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> Any:
        if self.asynchronous:
            async def fail() -> None:
                raise self.exc
            return fail()
        raise self.exc


class Seen:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.intent: clp.Intent | None = None

    @hookimpl
    def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.calls.append("after_commit")
        self.intent = intent


async def test_quiet_hooks_run_every_implementation_and_name_each_failure() -> None:
    boom, refused = RuntimeError("boom"), Refused("no")
    seen, late = Seen(), Seen()
    rt = clp.create_runtime(contract(), middleware=[
        Failing("sync", boom), seen, Failing("async", RuntimeError("later"), asynchronous=True),
        Failing("clp", refused), late])
    entry = await rt.execute("increment")
    assert seen.calls == late.calls == ["after_commit"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no coroutine left un-awaited
        errors = await rt.hooks.call_quietly("after_commit", intent=seen.intent, entry=entry)
    assert seen.calls == late.calls == ["after_commit"] * 2
    assert [(type(e), getattr(e, "plugin", None)) for e in errors] == [
        (HookError, "middleware:0:sync"), (HookError, "middleware:2:async"), (Refused, None)]
    assert errors[0].__cause__ is boom and isinstance(errors[1].__cause__, RuntimeError)
    assert errors[2] is refused


async def test_a_strict_call_stops_at_the_first_failure() -> None:
    calls: list[str] = []

    class AsyncRefuser:
        name = "refuser"

        @hookimpl
        async def before_commit(self, intent: clp.Intent) -> None:
            raise RuntimeError("no")

    rt = clp.create_runtime(contract(), middleware=[AsyncPlain("a", calls), AsyncRefuser(), Plain("b", calls),
                                                    AsyncPlain("c", calls)])
    await rt.dispatch("increment", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HookError) as raised:
            await rt.commit()
    assert raised.value.plugin == "middleware:1:refuser"
    assert calls == ["a"]


class Closable:
    """An awaitable that records whether it was closed (as a coroutine is, un-awaited)."""

    def __init__(self) -> None:
        self.closed = self.awaited = False

    def __await__(self) -> Generator[None, None, None]:
        self.awaited = True
        yield from ()

    def close(self) -> None:
        self.closed = True


async def test_a_strict_call_stopped_by_a_wrapper_closes_what_was_not_awaited() -> None:
    awaitable = Closable()

    class ReturnsAwaitable:
        @hookimpl
        def before_commit(self, intent: clp.Intent) -> Any:
            return awaitable

    rt = clp.create_runtime(contract(), middleware=[Wrapper([], refuse=Refused("no")), ReturnsAwaitable()])
    with pytest.raises(Refused):
        await rt.execute("increment")
    assert awaitable.closed and not awaitable.awaited


def test_the_direct_loop_is_left_when_tracing_monitoring_or_a_wrapper_is_there(path: str) -> None:
    runner = plugins.HookRunner([], [Plain("a", [])])
    assert (runner.pm.plan("before_commit") is not None) is (path == "direct")
    undo = runner.pm.add_hookcall_monitoring(lambda *a: None, lambda *a: None)
    assert runner.pm.plan("before_commit") is None
    undo()
    assert (runner.pm.plan("before_commit") is not None) is (path == "direct")
    runner.pm.register(Wrapper([]))
    assert runner.pm.plan("before_commit") is None


@pytest.mark.filterwarnings("ignore::clp_core.config.ConfigWarning")  # its plugin names are made up
def test_runtimes_with_equal_config_share_one_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"disable": ["clp-audit"], "plugins": {"x": {"a": 1, "b": [1, 2]}}}
    one = clp.create_runtime(contract(), config=config)
    registrations: list[Any] = []
    real = plugins.ClpPluginManager.register

    def counting(self: Any, plugin: Any, name: str | None = None) -> Any:
        registrations.append(plugin)
        return real(self, plugin, name)

    monkeypatch.setattr(plugins.ClpPluginManager, "register", counting)
    two = clp.create_runtime(contract(), config={"plugins": {"x": {"b": [1, 2], "a": 1}}, "disable": ["clp-audit"]})
    assert two.hooks is one.hooks and two.hooks.pm is one.hooks.pm
    assert registrations == []  # no pluggy registration for a runtime without middleware
    other = clp.create_runtime(contract(), config={"disable": ["*"]})
    assert other.hooks is not one.hooks and other.hooks.pm is not one.hooks.pm
    assert clp.create_runtime(contract(), config={"plugins": {"x": {"f": object()}}}).hooks is not one.hooks


def test_refreshing_discovery_or_config_forgets_the_managers() -> None:
    hooks, registration = plugins.runtime_hooks(None, ()), plugins.registration_manager()
    assert plugins.runtime_hooks(None, ()) is hooks and plugins.registration_manager() is registration
    plugins.discover(refresh=True)
    assert plugins.runtime_hooks(None, ()) is not hooks and plugins.registration_manager() is not registration
    hooks, registration = plugins.runtime_hooks(None, ()), plugins.registration_manager()
    plugins.process_config(refresh=True)
    assert plugins.runtime_hooks(None, ()) is not hooks and plugins.registration_manager() is not registration


async def test_built_in_plugins_cannot_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "*,clp-storage,clp-types")
    plugins.process_config(refresh=True)
    try:
        assert "memory" in plugins.registered("register_storage")
        assert "memory" in plugins.registered("register_event_stores")
        assert "types" in plugins.registered("register_validators")
        rt = clp.create_runtime(contract(), storage="memory://", event_store="memory://",
                                validation={"validator": "types"})
        await rt.execute("increment")
        assert rt.get_state("count") == 1
        with pytest.raises(clp.errors.ValidationError):
            await rt.execute("increment", {"amount": "5"})
    finally:
        monkeypatch.delenv("CLP_DISABLE_PLUGINS")
        plugins.process_config(refresh=True)
