"""Classifier: an AI proposes a category; a guard only lets allowed categories through.

Each support ticket is classified by a deterministic fake model. Its proposal is staged and
accepted like any AI proposal, but the ``allowed_category`` guard still checks it at commit:
a category outside ``ALLOWED`` is denied and the guard suggests ``"other"``, staged as a
proposal from ``guard:allowed_category`` that must be accepted in its turn.
Run: ``python examples/classifier.py``.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import clp_core as clp

ALLOWED = ("billing", "bug", "feature", "other")


def fake_model(intent: clp.Intent) -> dict:
    """Stands in for an LLM classifier (sync providers work as well as async ones)."""
    text = intent.payload["text"].lower()
    for word, category in (("invoice", "billing"), ("refund", "billing"), ("crash", "bug"),
                           ("please add", "feature"), ("horoscope", "astrology")):
        if word in text:
            return {"category": category}
    return {"category": "other"}


contract = clp.Contract(state={"tickets": {}, "stats": {}, "filed": "array"})


@contract.intent("classify")
class Classify(TypedDict):
    """File a support ticket under a category (proposed by the AI)."""

    ticket: str
    text: str
    category: str


def category(ctx: clp.Ctx[Classify]) -> str:
    return ctx.intent.payload["category"]


@contract.guard(on="classify", suggest=lambda ctx: {"category": "other"})
def allowed_category(ctx: clp.Ctx[Classify]) -> bool:
    return category(ctx) not in ALLOWED


@contract.transition(on="classify", when=lambda ctx: ctx.intent.complete)
def file(ctx: clp.Ctx[Classify]) -> dict:
    ticket = ctx.intent.payload["ticket"]
    return {
        clp.path("tickets", ticket): {"text": ctx.intent.payload["text"], "category": category(ctx)},
        clp.path("stats", category(ctx)): (ctx.state.get(clp.path("stats", category(ctx))) or 0) + 1,
        "filed": clp.ops.push(ticket),
    }


async def classify(runtime: clp.Runtime, ticket: str, text: str) -> None:
    print(f"{ticket}: {text!r}")
    await runtime.dispatch("classify", {"ticket": ticket, "text": text})
    proposal = await runtime.propose("classify")
    print(f"  AI proposes {proposal}; the reviewer accepts it")
    await runtime.accept_proposal("classify")
    try:
        await runtime.commit()
    except clp.errors.GuardDeniedError as denied:
        staged = runtime.staged_proposal
        print(f"  DENIED: {denied}; staged {dict(staged.values)} from {staged.source}")
        await runtime.accept_proposal("classify")
        print("  the reviewer accepts the guard's suggestion")
        await runtime.commit()
    print(f"  filed as {runtime.get_state(clp.path('tickets', ticket, 'category'))!r}")


async def main() -> None:
    runtime = clp.create_runtime(contract, fake_model)
    await classify(runtime, "T1", "I was charged twice, where is my refund?")
    await classify(runtime, "T2", "The app crashes when I upload a photo")
    await classify(runtime, "T3", "Can I get my daily horoscope in the app?")

    stats = runtime.get_state("stats")
    print(f"stats: {stats}; filed in order: {runtime.get_state('filed')}")
    assert runtime.get_state("tickets.T3.category") == "other"
    assert stats == {"billing": 1, "bug": 1, "other": 1}
    sources = [e.proposal_source for e in runtime.get_log() if e.phase == "accept"]
    print(f"accepted proposals came from: {sources}")


if __name__ == "__main__":
    asyncio.run(main())
