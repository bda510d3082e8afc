"""The plugin conformance kit run on plugins that pass it, and on ones that must fail it."""

from __future__ import annotations

from typing import Any

import pytest

import clp_core as clp
from clp_core import hookimpl
from clp_core.errors import ClpError
from clp_core.testing.plugins import PluginSuite, run_reference_lifecycle


class Quota(ClpError):
    pass


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def before_commit(self, intent: clp.Intent) -> None:
        self.seen.append("before_commit")

    @hookimpl
    async def after_commit(self, intent: clp.Intent, entry: clp.LogEntry) -> None:
        self.seen.append("after_commit")

    @hookimpl
    def on_error(self, error: BaseException, phase: str) -> None:
        self.seen.append(f"on_error:{phase}")


class QuotaPlugin:
    """Refuses dispatches after the fifth."""

    name = "quota"

    def __init__(self) -> None:
        self.count = 0

    @hookimpl
    def before_dispatch(self, intent: clp.Intent) -> None:
        self.count += 1
        if self.count > 5:
            raise Quota("over quota")


class TestRecorder(PluginSuite):
    def make_plugin(self) -> Any:
        return Recorder()


class TestQuota(PluginSuite):
    refusal = Quota

    def make_plugin(self) -> Any:
        return QuotaPlugin()

    def blocked_scenario(self) -> Any:
        async def scenario(runtime: clp.Runtime) -> None:
            await runtime.execute("increment", {"amount": 1})

        return scenario


async def test_the_plugin_sees_its_hooks_in_order() -> None:
    plugin = Recorder()
    run = await run_reference_lifecycle(plugin)
    assert plugin.seen == ["before_commit", "after_commit", "before_commit", "before_commit", "on_error:commit"]
    assert run.implemented == {"before_commit", "after_commit", "on_error"}


class BadArguments:
    name = "bad"

    @hookimpl
    def before_commit(self, intent: Any, extra: Any) -> None:  # not in the specification
        pass


class Crashing:
    name = "crashing"

    @hookimpl
    def after_commit(self, intent: Any, entry: Any) -> None:
        raise RuntimeError("boom")


def test_the_kit_catches_a_wrong_signature() -> None:
    with pytest.raises(Exception, match="extra"):
        PluginSuite.test_registers_against_the_hook_specifications(_suite(BadArguments()))


def test_the_kit_catches_an_unmarked_hook() -> None:
    class Unmarked:
        def after_commit(self, intent: Any, entry: Any) -> None:
            pass

    with pytest.raises(AssertionError, match=r"after_commit.*@clp_core\.hookimpl"):
        PluginSuite.test_registers_against_the_hook_specifications(_suite(Unmarked()))


async def test_the_kit_catches_a_crashing_hook() -> None:
    with pytest.raises(AssertionError, match="hooks raised"):
        await PluginSuite.test_does_not_fail_a_healthy_lifecycle(_suite(Crashing()))


def _suite(plugin: Any) -> PluginSuite:
    class Suite(PluginSuite):
        def make_plugin(self) -> Any:
            return plugin

    return Suite()


async def test_the_kit_does_not_take_another_error_for_the_refusal() -> None:
    class Suite(PluginSuite):
        refusal = Quota

        def make_plugin(self) -> Any:
            return Recorder()  # never refuses

        def blocked_scenario(self) -> Any:
            async def scenario(runtime: clp.Runtime) -> None:
                await runtime.execute("increment", {"fail": True})  # an effect failure, not a refusal

            return scenario

    with pytest.raises(clp.errors.EffectError):
        await Suite().test_a_refusal_changes_nothing()
