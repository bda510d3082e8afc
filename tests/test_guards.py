"""Guards that suggest corrections: staged as proposals, never applied without acceptance."""

from __future__ import annotations

from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import GuardDeniedError, GuardError, UnacceptedProposalError


def counter(suggest: Any = lambda ctx: {"amount": 0}, **extra: Any) -> clp.Runtime:
    contract = clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number"}}},
        guards=[
            {"name": "small", "deny": lambda ctx: ctx.intent.payload["amount"] > 100},
            {"name": "no_negative", "deny": lambda ctx: ctx.intent.payload["amount"] < 0, "suggest": suggest},
        ],
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                        + ctx.intent.payload["amount"]}}},
    )
    return clp.create_runtime(contract, **extra)


async def test_denial_stages_the_suggestion_which_needs_acceptance() -> None:
    rt = counter()
    with pytest.raises(GuardDeniedError, match="Guard no_negative denied") as info:
        await rt.execute("increment", {"amount": -5})
    assert info.value.guard == "no_negative"
    assert info.value.suggestion == {"amount": 0}
    assert rt.get_state("count") is None  # never auto-applied
    entry = rt.get_log()[-1]
    assert entry.proposal_source == "guard:no_negative"
    assert entry.staged_proposal == {"amount": 0}
    assert [(o.name, o.denied) for o in entry.guard_outcomes] == [("small", False), ("no_negative", True)]
    with pytest.raises(UnacceptedProposalError):
        await rt.commit()
    await rt.accept_proposal("increment")
    assert rt.get_log()[-1].proposal_source == "guard:no_negative"
    committed = await rt.commit()
    assert committed.intent_payload == {"amount": 0}
    assert rt.get_state("count") == 0


async def test_a_suggestion_may_be_rejected() -> None:
    rt = counter()
    with pytest.raises(GuardDeniedError):
        await rt.execute("increment", {"amount": -5})
    await rt.reject_proposal("increment")
    assert rt.staged_proposal is None
    assert rt.get_log()[-1].phase == "reject"
    await rt.dispatch("increment", {"amount": 2})
    await rt.commit()
    assert rt.get_state("count") == 2


@pytest.mark.parametrize(
    "suggest",
    [lambda ctx: {"amount": "zero"}, lambda ctx: {"unknown": 1}, lambda ctx: ["amount"], lambda ctx: 1 / 0],
)
async def test_an_invalid_suggestion_is_not_staged(suggest: Any) -> None:
    errors: list[tuple[str, BaseException]] = []

    class Spy:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append((phase, error))

    rt = counter(suggest, middleware=[Spy()])
    with pytest.raises(GuardDeniedError) as info:
        await rt.execute("increment", {"amount": -5})
    assert info.value.suggestion is None
    assert rt.staged_proposal is None
    assert [phase for phase, _ in errors] == ["suggest"]


async def test_a_guard_that_raises_fails_the_commit() -> None:
    contract = clp.create_contract(
        intents={"go": {"inputs": {}}},
        guards=[{"name": "broken", "deny": lambda ctx: ctx.intent.payload["missing"]}],
        transitions={"t": {"effects": lambda ctx: {"ran": True}}},
    )
    rt = clp.create_runtime(contract)
    with pytest.raises(GuardError, match="Guard broken raised: KeyError"):
        await rt.execute("go")
    assert rt.get_state() == {}


async def test_on_guard_deny_hook_gets_the_guard_and_context() -> None:
    seen: list[Any] = []

    class Spy:
        name = "spy"

        def on_guard_deny(self, guard: clp.Guard, context: clp.Context) -> None:
            seen.append((guard.name, dict(context.intent.payload)))

        def on_error(self, error: BaseException, phase: str) -> None:
            seen.append(("error", phase))

    rt = counter(middleware=[Spy()])
    with pytest.raises(GuardDeniedError):
        await rt.execute("increment", {"amount": 101})
    assert seen == [("small", {"amount": 101})]


async def test_a_suggest_returning_none_means_no_suggestion_and_no_error() -> None:
    errors: list[str] = []

    class Spy:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append(phase)

    rt = counter(lambda ctx: None, middleware=[Spy()])
    with pytest.raises(GuardDeniedError) as info:
        await rt.execute("increment", {"amount": -5})
    assert info.value.suggestion is None and errors == []
