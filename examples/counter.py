"""Counter: the first example of CLP 0.1, in Python.

``increment`` takes an optional ``amount`` (1 when missing). The ``no_negative`` guard denies
negative amounts and suggests 0; the suggestion is staged, never applied on its own, until
someone accepts it. Run it: ``python examples/counter.py``.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import clp_core as clp

contract = clp.Contract(state={"count": "number", "history": "array"})


@contract.intent("increment")
class Increment(TypedDict, total=False):
    """Add ``amount`` (1 when missing) to the count."""

    amount: float


def amount(ctx: clp.Ctx[Increment]) -> float:
    value = ctx.intent.payload.get("amount")
    return 1 if value is None else value


@contract.guard(on="increment", suggest=lambda ctx: {"amount": 0})
def no_negative(ctx: clp.Ctx[Increment]) -> bool:
    return amount(ctx) < 0


@contract.transition(on="increment", when=lambda ctx: ctx.intent.complete)
def apply(ctx: clp.Ctx[Increment]) -> dict:
    return {
        "count": (ctx.state.get("count") or 0) + amount(ctx),
        "history": clp.ops.push(amount(ctx)),
    }


async def main() -> None:
    runtime = clp.create_runtime(contract, initial_state={"count": 0})
    runtime.subscribe("count", lambda state: print(f"  (subscriber) count is now {state['count']}"))

    print("increment with no amount (defaults to 1)")
    await runtime.execute("increment")

    print("increment by 5: dispatch, then commit")
    await runtime.dispatch("increment", {"amount": 5})
    entry = await runtime.commit("apply")
    print(f"  committed {entry.transition_result.name}: {[(c.path, c.value) for c in entry.state_diff]}")

    print("increment by -3")
    try:
        await runtime.execute("increment", {"amount": -3})
    except clp.errors.GuardDeniedError as denied:
        print(f"  refused: {denied} (guard {denied.guard!r} suggests {denied.suggestion})")
        staged = runtime.staged_proposal
        print(f"  staged, not applied: {dict(staged.values)} from {staged.source}; count is still "
              f"{runtime.get_state('count')}")
        try:
            await runtime.commit()
        except clp.errors.UnacceptedProposalError as exc:
            print(f"  committing without accepting: {exc}")
        await runtime.accept_proposal("increment")
        print(f"  accepted; the intent is now {dict(runtime.current_intent.payload)}")
        await runtime.commit()

    print(f"final count: {runtime.get_state('count')}, history: {runtime.get_state('history')}")
    print("audit log:")
    for e in runtime.get_log():
        guards = ", ".join(f"{g.name}={'denied' if g.denied else 'ok'}" for g in e.guard_outcomes)
        print(f"  {e.phase:<8} {e.intent_name} {dict(e.intent_payload or {})} {guards} {e.error or ''}".rstrip())
    assert runtime.get_state("count") == 6


if __name__ == "__main__":
    asyncio.run(main())
