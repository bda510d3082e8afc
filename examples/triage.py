"""Support-ticket triage on Redis: a language model proposes a new ticket's category and
priority, a person accepts; guards keep assignments to known agents. clp-pydantic checks
the payloads against the models, clp-llm asks the model (structured output).

    python examples/triage.py [REDIS_URL] [MODEL]    # an llm model id; default gpt-4o-mini
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal

from clp_llm import LLMProvider
from pydantic import BaseModel

import clp_core as clp

contract = clp.Contract()
AGENTS = ("alice", "bob")


@contract.intent("open_ticket")
class OpenTicket(BaseModel):
    id: str
    title: str
    category: Literal["billing", "bug", "question"] | None = None
    priority: Literal["low", "normal", "high"] | None = None


@contract.intent("assign")
class Assign(BaseModel):
    id: str
    agent: str


@contract.guard(on="assign", suggest=lambda ctx: {"agent": AGENTS[0]})
def unknown_agent(ctx: clp.Context) -> bool:
    return ctx.intent.payload["agent"] not in AGENTS


@contract.transition(on="open_ticket")
def open_ticket(ctx: clp.Context) -> dict[str, Any]:
    ticket = {k: ctx.intent.payload[k] for k in ("title", "category", "priority")}
    return {clp.path("tickets", ctx.intent.payload["id"]): ticket}


@contract.transition(on="assign")
def assign(ctx: clp.Context) -> dict[str, Any]:
    return {clp.path("tickets", ctx.intent.payload["id"], "agent"): ctx.intent.payload["agent"]}


def desk(storage: str, model: str) -> clp.Runtime:
    triage = LLMProvider(model, system="You triage support tickets.", timeout=30)
    return clp.create_runtime(contract, {"open_ticket": triage}, storage=storage, storage_key="triage:desk",
                              validation={"strict": True})


async def main(storage: str = "redis://127.0.0.1:6379/0", model: str = "gpt-4o-mini") -> None:
    async with desk(storage, model) as runtime:
        await runtime.dispatch("open_ticket", {"id": "T-1", "title": "I was charged twice in May"})
        print("proposed:", await runtime.propose("open_ticket"))
        print("by:", runtime.get_log()[-1].proposal_meta["model"])
        await runtime.accept_proposal()            # a person says yes (or edits=...)
        await runtime.commit()
        try:
            await runtime.execute("assign", {"id": "T-1", "agent": "mallory"})
        except clp.errors.GuardDeniedError as denied:
            print("denied:", denied, "- suggests", denied.suggestion)
        await runtime.accept_proposal()
        await runtime.commit()
    async with desk(storage, model) as restarted:  # another process, later
        print("after restart:", restarted.get_state("tickets.T-1"))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
