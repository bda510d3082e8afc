"""A conformance kit for plugins: run yours through a reference lifecycle and check it.

Subclass :class:`PluginSuite` in your tests and implement ``make_plugin``::

    from clp_core.testing.plugins import PluginSuite

    class TestMyPlugin(PluginSuite):
        def make_plugin(self):
            return my_plugin.Plugin()

The suite checks that the plugin registers against the ``clp`` hook specifications, that its
hooks are called in the documented order with arguments of the documented types, that it
does not make a healthy lifecycle fail, and that when one of its ``before_*`` hooks refuses
(``blocked_scenario``) nothing changes.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from .. import hookspecs
from ..contract import Contract, Guard, create_contract
from ..errors import ClpError, EffectError, GuardDeniedError, HookError
from ..events import Event
from ..log import Intent, LogEntry, Proposal
from ..plugins import ClpPluginManager
from ..runtime import Context, Runtime, create_runtime

#: The hooks a reference lifecycle calls, in order (see :func:`run_reference_lifecycle`).
REFERENCE_ORDER = (
    "before_dispatch", "after_dispatch",
    "before_propose", "after_propose",
    "before_commit", "after_commit",
    # execute() runs after_dispatch once the whole step is done, outside the lock
    "before_dispatch", "before_commit", "after_dispatch", "on_guard_deny", "after_propose",
    "before_dispatch", "before_commit", "after_dispatch", "on_error",
    "on_close",
)

ARGUMENT_TYPES: dict[str, type | tuple[type, ...]] = {
    "intent": Intent, "entry": LogEntry, "proposal": Proposal, "guard": Guard,
    "context": Context, "error": BaseException, "phase": str, "event": Event,
}


@attrs.frozen
class HookCall:
    hook: str
    kwargs: dict[str, Any]


def reference_contract() -> Contract:
    """A counter with a guard that suggests and a transition whose effect can fail."""
    return create_contract(
        intents={"increment": {"inputs": {"amount": "number?", "fail": "boolean?"}}},
        state={"count": "number"},
        guards=[{"name": "no_negative",
                 "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0,
                 "suggest": lambda ctx: {"amount": 0}}],
        transitions={"apply": {"effects": _effects}},
    )


def _effects(ctx: Any) -> dict[str, Any]:
    if ctx.intent.payload.get("fail"):
        raise RuntimeError("reference effect failure")
    return {"count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}


def _hook_functions(callback: Callable[[str, dict[str, Any]], Any]) -> dict[str, Callable[..., Any]]:
    """One function per lifecycle hook, with the hook's own argument names (pluggy reads
    them), each passing ``(hook, arguments)`` to ``callback``."""
    return {
        "before_dispatch": lambda intent: callback("before_dispatch", {"intent": intent}),
        "after_dispatch": lambda intent, entry: callback("after_dispatch", {"intent": intent, "entry": entry}),
        "before_propose": lambda intent: callback("before_propose", {"intent": intent}),
        "after_propose": lambda intent, proposal: callback("after_propose", {"intent": intent, "proposal": proposal}),
        "before_commit": lambda intent: callback("before_commit", {"intent": intent}),
        "after_commit": lambda intent, entry: callback("after_commit", {"intent": intent, "entry": entry}),
        "on_guard_deny": lambda guard, context: callback("on_guard_deny", {"guard": guard, "context": context}),
        "on_error": lambda error, phase: callback("on_error", {"error": error, "phase": phase}),
        "on_close": lambda: callback("on_close", {}),
        "on_saga_event": lambda event: callback("on_saga_event", {"event": event}),
        "on_log_entry": lambda entry: callback("on_log_entry", {"entry": entry}),
    }


class _Spy:
    """Records every hook call, in order."""

    name = "clp-testing-spy"

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        for hook, function in _hook_functions(lambda h, kw: self.calls.append(HookCall(h, kw))).items():
            setattr(self, hook, function)


def _wrap(plugin: Any, spy: _Spy) -> tuple[Any, set[str]]:
    """The plugin's own hooks, each recorded by ``spy`` before it runs, and their names."""
    pm = ClpPluginManager()
    pm.register(plugin, name="plugin-under-test")
    impls = {hook: impl for hook in hookspecs.LIFECYCLE_HOOKS for impl in getattr(pm.hook, hook).get_hookimpls()}

    def forward(hook: str, kwargs: dict[str, Any]) -> Any:
        spy.calls.append(HookCall(hook, kwargs))
        impl = impls[hook]
        return impl.function(*[kwargs[a] for a in impl.argnames])

    class Wrapped:
        name = "plugin-under-test"

    wrapped = Wrapped()
    for hook, function in _hook_functions(forward).items():
        if hook in impls:
            setattr(wrapped, hook, function)
    return wrapped, set(impls)


@attrs.frozen
class LifecycleRun:
    calls: list[HookCall]  # every hook call, in order
    received: list[HookCall]  # the calls the plugin received
    implemented: set[str]  # the lifecycle hooks the plugin implements
    runtime: Runtime


async def run_reference_lifecycle(plugin: Any) -> LifecycleRun:
    """Run a commit with an AI proposal, a guard denial and a failing effect."""
    everything, received = _Spy(), _Spy()
    wrapped, implemented = _wrap(plugin, received)
    runtime = create_runtime(reference_contract(), lambda intent: {"amount": 2},
                             middleware=[everything, wrapped], config={"disable": ["*"]})
    await runtime.dispatch("increment", {})
    await runtime.propose("increment")
    await runtime.accept_proposal("increment")
    await runtime.commit()
    with pytest.raises(GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    with pytest.raises(EffectError):
        await runtime.execute("increment", {"fail": True})
    await runtime.close()
    return LifecycleRun(everything.calls, received.calls, implemented, runtime)


class PluginSuite(abc.ABC):
    """Conformance tests for a plugin; subclass and implement :meth:`make_plugin`."""

    @abc.abstractmethod
    def make_plugin(self) -> Any:
        """The plugin object (module or instance) to check."""

    #: The error the plugin refuses with; any other error from the scenario fails the test.
    refusal: type[BaseException] = ClpError

    def blocked_scenario(self) -> Callable[[Runtime], Awaitable[Any]] | None:
        """Override to return ``async def scenario(runtime)`` that makes the plugin refuse
        (for example, exhausting a rate limit); the suite checks nothing changed then."""
        return None

    def test_registers_against_the_hook_specifications(self) -> None:
        plugin = self.make_plugin()
        pm = ClpPluginManager()
        pm.register(plugin)  # pluggy validates hook names and arguments
        pm.check_pending()
        unmarked = sorted(name for name in hookspecs.LIFECYCLE_HOOKS
                          if callable(getattr(plugin, name, None)) and not pm.implements(name))
        assert not unmarked, f"{unmarked} are not hooks: mark them with @clp_core.hookimpl"

    async def test_hooks_called_in_order_with_documented_arguments(self) -> None:
        run = await run_reference_lifecycle(self.make_plugin())
        order = [c.hook for c in run.calls if c.hook not in ("on_log_entry", "on_error")
                 or (c.hook == "on_error" and c.kwargs["phase"] == "commit")]
        entries = [c.kwargs["entry"] for c in run.calls if c.hook == "on_log_entry"]
        assert entries == run.runtime.get_log(), "on_log_entry did not see every log entry in order"
        assert order == list(REFERENCE_ORDER), "the runtime called hooks out of the documented order"
        assert [c.hook for c in run.received] == [c.hook for c in run.calls if c.hook in run.implemented]
        for call in run.received:
            for name, value in call.kwargs.items():
                assert isinstance(value, ARGUMENT_TYPES[name]), f"{call.hook}({name}=...) got {type(value)}"

    async def test_does_not_fail_a_healthy_lifecycle(self) -> None:
        run = await run_reference_lifecycle(self.make_plugin())
        failures = [c.kwargs["error"] for c in run.calls
                    if c.hook == "on_error" and isinstance(c.kwargs["error"], HookError)]
        assert not failures, f"the plugin's hooks raised: {failures}"
        assert run.runtime.get_state("count") == 2

    async def test_a_refusal_changes_nothing(self) -> None:
        scenario = self.blocked_scenario()
        if scenario is None:
            pytest.skip("the plugin declares no blocked_scenario")
        runtime = create_runtime(reference_contract(), middleware=[self.make_plugin()], config={"disable": ["*"]})
        for _ in range(1000):
            before = runtime.get_state()
            try:
                await scenario(runtime)
            except self.refusal:
                assert runtime.get_state() == before, "state changed although the plugin refused"
                return
        pytest.fail("blocked_scenario never made the plugin refuse")
