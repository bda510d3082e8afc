"""Contracts the kits and tests share."""

from __future__ import annotations

from typing import Any

import clp_core as clp


def counter_contract(emit: bool = False) -> clp.Contract:
    """The counter: ``increment(amount: number?)`` adds ``amount`` (default 1) to ``count``;
    with ``emit``, each commit emits one ``counted`` message ``{"count": new count}``."""
    transition: dict[str, Any] = {"effects": lambda ctx: {
        "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}
    if emit:
        transition["emit"] = lambda ctx: [("counted", {"count": ctx.state["count"]})]
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": transition},
    )
