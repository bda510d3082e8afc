"""The runtime side of the Pythonic API: on= scoping, dot-path reads in ctx.state, providers
per intent, accept_proposal() without a name and with edits, proposal_meta."""

from __future__ import annotations

import json
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import ConfigError, GuardDeniedError, ProposalError, ValidationError
from clp_core.log import Proposed


def tickets(form: str) -> clp.Contract:
    def unknown_agent(ctx: Any) -> bool:
        return ctx.intent.payload["agent"] not in ("alice", "bob")

    def open_ticket(ctx: Any) -> dict[str, Any]:
        return {clp.path("tickets", ctx.intent.payload["id"]): {"title": ctx.intent.payload["title"]}}

    def assign(ctx: Any) -> dict[str, Any]:
        ticket = clp.path("tickets", ctx.intent.payload["id"])
        assert ctx.state.get(f"{ticket}.title") is not None  # dot paths, as runtime.get_state
        return {f"{ticket}.agent": ctx.intent.payload["agent"]}

    if form == "dict":
        return clp.create_contract(
            intents={"open_ticket": {"inputs": {"id": "string", "title": "string", "priority": "string?"}},
                     "assign": {"inputs": {"id": "string", "agent": "string"}}},
            guards=[{"name": "unknown_agent", "deny": unknown_agent, "on": "assign",
                     "suggest": lambda ctx: {"agent": "alice"}}],
            transitions={"open_ticket": {"effects": open_ticket, "on": "open_ticket"},
                         "assign": {"effects": assign, "on": ["assign"]}},
        )
    contract = clp.Contract()
    contract.intent("open_ticket", inputs={"id": "string", "title": "string", "priority": "string?"})
    contract.intent("assign", inputs={"id": "string", "agent": "string"})
    contract.guard(on="assign", suggest=lambda ctx: {"agent": "alice"})(unknown_agent)
    contract.transition(on="open_ticket")(open_ticket)
    contract.transition(on="assign")(assign)
    return contract


@pytest.mark.parametrize("form", ["dict", "decorators"])
async def test_on_scopes_guards_and_transitions_in_the_runtime(form: str) -> None:
    runtime = clp.create_runtime(tickets(form))
    opened = await runtime.execute("open_ticket", {"id": "T1", "title": "printer on fire"})
    assert opened.guard_outcomes == () and opened.transition_result.name == "open_ticket"  # guard not run
    assigned = await runtime.execute("assign", {"id": "T1", "agent": "bob"})
    assert [g.name for g in assigned.guard_outcomes] == ["unknown_agent"]
    assert assigned.transition_result.name == "assign"  # the only transition on "assign": no `when` needed
    with pytest.raises(GuardDeniedError) as denied:
        await runtime.execute("assign", {"id": "T1", "agent": "mallory"})
    assert denied.value.suggestion == {"agent": "alice"}
    assert runtime.get_state("tickets.T1") == {"title": "printer on fire", "agent": "bob"}


async def test_ids_with_dots_cannot_become_paths() -> None:
    runtime = clp.create_runtime(tickets("dict"))
    with pytest.raises(clp.errors.PathError, match=r"contains '\.'"):
        await runtime.execute("open_ticket", {"id": "a.b", "title": "sneaky"})
    assert runtime.get_state() == {}


def triage() -> clp.Contract:
    return clp.create_contract(
        intents={"classify": {"inputs": {"text": "string", "label": "string?"}},
                 "assign": {"inputs": {"agent": "string?", "note": "string?"}}},
        guards=[{"name": "known_label", "on": "classify",
                 "deny": lambda ctx: ctx.intent.payload.get("label") not in (None, "bug", "question")}],
        transitions={"classify": {"on": "classify", "effects": lambda ctx: {"label": ctx.intent.payload["label"]}},
                     "assign": {"on": "assign", "effects": lambda ctx: {"agent": ctx.intent.payload["agent"]}}},
    )


async def test_providers_per_intent_and_their_meta() -> None:
    asked: list[str] = []

    def classifier(intent: clp.Intent) -> Proposed:
        asked.append(intent.name)
        return Proposed({"label": "bug"}, meta={"model": "scripted", "usage": {"input": 12}})

    runtime = clp.create_runtime(triage(), {"classify": classifier})
    await runtime.dispatch("assign", {})
    assert await runtime.propose("assign") is None  # no provider for this intent
    await runtime.dispatch("classify", {"text": "it crashes"})
    assert await runtime.propose("classify") == {"label": "bug"}
    assert asked == ["classify"]
    entry = runtime.get_log()[-1]
    assert entry.phase == "propose" and dict(entry.proposal_meta or {}) == {"model": "scripted", "usage": {"input": 12}}
    json.dumps(entry.to_dict())
    await runtime.accept_proposal()  # the current intent: no name to repeat
    assert (await runtime.commit()).transition_result.name == "classify"


async def test_a_provider_proposing_another_intent_s_field_is_refused() -> None:
    runtime = clp.create_runtime(triage(), {"classify": lambda intent: {"agent": "alice"}})
    await runtime.dispatch("classify", {"text": "x"})
    with pytest.raises(ProposalError, match="invalid field: agent"):
        await runtime.propose("classify")
    assert runtime.staged_proposal is None


def test_a_provider_mapping_must_name_intents_and_hold_callables() -> None:
    with pytest.raises(ConfigError, match="not intents"):
        clp.create_runtime(triage(), {"nope": lambda intent: {}})
    with pytest.raises(ConfigError, match="must be callable"):
        clp.create_runtime(triage(), {"classify": 42})


async def test_a_provider_with_bind_is_bound_to_the_runtime() -> None:
    class Bound:
        runtime: Any = None

        def bind(self, runtime: Any) -> None:
            self.runtime = runtime

        def __call__(self, intent: clp.Intent) -> dict[str, Any]:
            return {"label": "question"} if "label" in self.runtime.intent_schema(intent.name)["properties"] else {}

    provider = Bound()
    runtime = clp.create_runtime(triage(), {"classify": provider})
    assert provider.runtime is runtime
    await runtime.dispatch("classify", {"text": "how?"})
    assert await runtime.propose("classify") == {"label": "question"}


async def test_accept_with_edits_is_checked_logged_and_guarded() -> None:
    runtime = clp.create_runtime(triage(), {"classify": lambda intent: {"label": "bug"}})
    await runtime.dispatch("classify", {"text": "it crashes"})
    await runtime.propose("classify")
    with pytest.raises(ValidationError, match="edits of classify"):
        await runtime.accept_proposal(edits={"label": 3})  # not a string
    with pytest.raises(ValidationError, match="undeclared"):
        await runtime.accept_proposal(edits={"agent": "bob"})
    assert runtime.staged_proposal is not None  # nothing changed: still staged
    intent = await runtime.accept_proposal(edits={"label": "question"}, by="carol")
    assert intent.payload["label"] == "question" and intent.source == "ai, edited by carol"
    accepted = runtime.get_log()[-1]
    assert accepted.phase == "accept" and dict(accepted.accepted_proposal or {}) == {"label": "question"}
    assert dict(accepted.detail or {}) == {"edits": {"label": "question"}, "edited_by": "carol"}
    assert (await runtime.commit()).proposal_source == "ai, edited by carol"

    await runtime.dispatch("classify", {"text": "again"})
    await runtime.propose("classify")
    await runtime.accept_proposal(edits={"label": "spam"})  # fits the type; the guard decides
    with pytest.raises(GuardDeniedError, match="known_label"):
        await runtime.commit()
    assert runtime.get_state("label") == "question"
