"""CLP 0.1 reference behaviour (DESIGN.md section 1), rule by rule, with 0.1's error texts."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import attrs
import pytest

import clp_core as clp
from clp_core import errors
from clp_core.log import GuardOutcome, TransitionResult
from clp_core.state import Change


def _contract(guards: list[Any] | None = None, transitions: dict[str, Any] | None = None) -> clp.Contract:
    """book/cancel/noop/put intents; each has its own transition unless ``transitions`` is given."""
    if transitions is None:
        transitions = {
            "reserve": {
                "when": lambda ctx: ctx.intent.name == "book",
                "effects": lambda ctx: {
                    "seat": ctx.intent.payload["seat"],
                    "meal": ctx.intent.payload.get("meal") or "none",
                },
            },
            "release": {
                "when": lambda ctx: ctx.intent.name == "cancel",
                "effects": lambda ctx: {"released": ctx.intent.payload["seat"]},
            },
            "nothing": {"when": lambda ctx: ctx.intent.name == "noop", "effects": lambda ctx: {}},
            "put": {
                "when": lambda ctx: ctx.intent.name == "put",
                "effects": lambda ctx: {ctx.intent.payload["path"]: ctx.intent.payload["value"]},
            },
        }
    return clp.create_contract(
        intents={
            "book": {"inputs": {"seat": "string", "meal": "string?", "party": "number?"}},
            "cancel": {"inputs": {"seat": "string"}},
            "noop": {"inputs": {}},
            "put": {"inputs": {"path": "string", "value": "any"}},
        },
        state={"seat": "string?", "meal": "string?", "released": "string?"},
        guards=guards or [],
        transitions=transitions,
    )


class Provider:
    """An AI provider returning ``result`` (sync or async), recording the intents it saw."""

    def __init__(self, result: Any, *, is_async: bool = False) -> None:
        self.result = result
        self.is_async = is_async
        self.calls: list[clp.Intent] = []

    def __call__(self, intent: clp.Intent) -> Any:
        self.calls.append(intent)
        if self.is_async:
            return self._async_result()
        return self.result

    async def _async_result(self) -> Any:
        await asyncio.sleep(0)
        return self.result


def _runtime(provider: Any = None, **kwargs: Any) -> clp.Runtime:
    return clp.create_runtime(_contract(**kwargs), provider)


def _phases(runtime: clp.Runtime) -> list[str]:
    return [entry.phase for entry in runtime.get_log()]


# -- dispatch ---------------------------------------------------------------------------


async def test_dispatch_of_unknown_intent_raises_unknown_intent() -> None:
    runtime = _runtime()
    with pytest.raises(errors.UnknownIntentError) as info:
        await runtime.dispatch("fly", {"seat": "1A"})
    assert str(info.value) == "Unknown intent fly"
    assert isinstance(info.value, errors.ClpError)
    assert runtime.current_intent is None
    assert runtime.get_log() == []


async def test_dispatch_of_unknown_intent_keeps_the_current_intent() -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.UnknownIntentError, match=r"^Unknown intent fly$"):
        await runtime.dispatch("fly")
    assert runtime.current_intent == intent
    assert _phases(runtime) == ["dispatch"]


async def test_dispatch_stores_the_intent_and_logs_an_unpermitted_entry() -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("book", {"seat": "1A", "meal": "veg"})
    assert intent.name == "book"
    assert dict(intent.payload) == {"seat": "1A", "meal": "veg"}
    assert intent.complete is True
    assert runtime.current_intent == intent
    assert runtime.get_state("seat") is None  # dispatch changes no state

    [entry] = runtime.get_log()
    assert entry.phase == "dispatch"
    assert entry.intent_name == "book"
    assert dict(entry.intent_payload) == {"seat": "1A", "meal": "veg"}
    assert entry.transition_result == TransitionResult(None, False)
    assert entry.transition_attempted is None
    assert entry.guard_outcomes == ()
    assert entry.state_diff == ()
    assert entry.staged_proposal is None
    assert entry.accepted_proposal is None
    assert entry.proposal_source is None
    assert entry.error is None
    stamp = dt.datetime.fromisoformat(entry.timestamp)
    assert stamp.tzinfo is not None
    assert abs(dt.datetime.now(stamp.tzinfo) - stamp) < dt.timedelta(minutes=1)


async def test_dispatch_copies_the_payload_and_the_intent_payload_is_read_only() -> None:
    runtime = _runtime()
    payload = {"seat": "1A"}
    intent = await runtime.dispatch("book", payload)
    payload["seat"] = "9Z"
    payload["meal"] = "fish"
    assert dict(runtime.current_intent.payload) == {"seat": "1A"}
    with pytest.raises(TypeError):
        intent.payload["seat"] = "9Z"  # type: ignore[index]
    assert dict(runtime.get_log()[0].intent_payload) == {"seat": "1A"}

    value = {"tags": ["a"]}
    await runtime.dispatch("put", {"path": "user", "value": value})
    value["tags"].append("b")
    assert runtime.current_intent.payload["value"] == {"tags": ["a"]}
    await runtime.commit()
    assert runtime.get_state("user") == {"tags": ["a"]}


@pytest.mark.parametrize(
    ("name", "payload", "complete"),
    [
        ("book", {"seat": "1A"}, True),
        ("book", {"seat": "1A", "meal": "veg", "party": 2}, True),
        ("book", {"seat": "1A", "meal": None}, True),  # an optional input may be None
        ("book", {"seat": ""}, True),  # present and not None: an empty string counts
        ("book", {}, False),
        ("book", None, False),
        ("book", {"seat": None}, False),
        ("book", {"meal": "veg"}, False),
        ("noop", {}, True),
        ("noop", None, True),
    ],
)
async def test_completeness_needs_every_required_input_present_and_not_none(
    name: str, payload: dict[str, Any] | None, complete: bool
) -> None:
    runtime = _runtime()
    intent = await runtime.dispatch(name, payload)
    assert intent.complete is complete
    assert runtime.current_intent.complete is complete


async def test_dispatch_replaces_the_current_intent() -> None:
    provider = Provider({"meal": "veg"})
    runtime = _runtime(provider)
    await runtime.dispatch("book", {"seat": "1A"})
    second = await runtime.dispatch("cancel", {"seat": "2B"})
    assert runtime.current_intent == second
    assert await runtime.propose("book") is None
    assert provider.calls == []
    with pytest.raises(errors.NoMatchingIntentError):
        await runtime.accept_proposal("book")
    entry = await runtime.commit()
    assert entry.transition_result == TransitionResult("release", True)
    assert runtime.get_state("released") == "2B"
    assert runtime.get_state("seat") is None


@pytest.mark.parametrize("second", ["book", "cancel"])
async def test_a_new_dispatch_discards_the_staged_proposal(second: str) -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    assert await runtime.propose("book") == {"meal": "veg"}
    assert runtime.staged_proposal is not None

    await runtime.dispatch(second, {"seat": "2B"})
    assert runtime.staged_proposal is None
    with pytest.raises(errors.NoStagedProposalError) as info:
        await runtime.accept_proposal(second)
    assert str(info.value) == "No staged proposal to accept"
    await runtime.commit()  # no "Unaccepted AI proposal present": the old proposal is gone
    assert runtime.get_state("meal") == ("none" if second == "book" else None)


# -- propose ----------------------------------------------------------------------------


async def test_propose_returns_none_without_a_provider() -> None:
    runtime = _runtime(None)
    await runtime.dispatch("book", {"seat": "1A"})
    assert await runtime.propose("book") is None
    assert runtime.staged_proposal is None
    assert _phases(runtime) == ["dispatch"]


async def test_propose_returns_none_without_a_current_intent() -> None:
    provider = Provider({"meal": "veg"})
    runtime = _runtime(provider)
    assert await runtime.propose("book") is None
    assert provider.calls == []
    assert runtime.get_log() == []


async def test_propose_returns_none_when_the_current_intent_has_another_name() -> None:
    provider = Provider({"seat": "1A"})
    runtime = _runtime(provider)
    await runtime.dispatch("cancel", {"seat": "1A"})
    assert await runtime.propose("book") is None
    assert provider.calls == []
    assert runtime.staged_proposal is None
    assert _phases(runtime) == ["dispatch"]


async def test_propose_returns_none_after_a_commit_cleared_the_intent() -> None:
    provider = Provider({"meal": "veg"})
    runtime = _runtime(provider)
    await runtime.execute("book", {"seat": "1A"})
    assert await runtime.propose("book") is None
    assert provider.calls == []


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_propose_stages_the_provider_proposal_without_applying_it(is_async: bool) -> None:
    provider = Provider({"meal": "veg"}, is_async=is_async)
    runtime = _runtime(provider)
    intent = await runtime.dispatch("book", {"seat": "1A"})

    proposal = await runtime.propose("book")

    assert proposal == {"meal": "veg"}
    assert provider.calls == [intent]
    assert dict(runtime.staged_proposal.values) == {"meal": "veg"}
    assert runtime.staged_proposal.source == "ai"
    assert dict(runtime.current_intent.payload) == {"seat": "1A"}  # staged, never applied
    assert runtime.get_state() == {}
    entry = runtime.get_log()[-1]
    assert entry.phase == "propose"
    assert entry.intent_name == "book"
    assert dict(entry.intent_payload) == {"seat": "1A"}
    assert dict(entry.staged_proposal) == {"meal": "veg"}
    assert entry.accepted_proposal is None
    assert entry.proposal_source == "ai"
    assert entry.transition_result == TransitionResult(None, False)
    assert entry.state_diff == ()


async def test_async_provider_defined_with_async_def() -> None:
    seen: list[str] = []

    async def provider(intent: clp.Intent) -> dict[str, Any]:
        await asyncio.sleep(0)
        seen.append(intent.name)
        return {"party": 3}

    runtime = clp.create_runtime(_contract(), provider)
    await runtime.dispatch("book", {"seat": "1A"})
    assert await runtime.propose("book") == {"party": 3}
    assert seen == ["book"]
    await runtime.accept_proposal("book")
    assert runtime.current_intent.payload["party"] == 3


async def test_the_returned_proposal_is_a_copy() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    proposal = await runtime.propose("book")
    proposal["meal"] = "fish"
    await runtime.accept_proposal("book")
    assert runtime.current_intent.payload["meal"] == "veg"


async def test_proposal_with_an_undeclared_field_is_refused() -> None:
    runtime = _runtime(Provider({"meal": "veg", "upgrade": True}))
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.ProposalError) as info:
        await runtime.propose("book")
    assert str(info.value) == "Proposal contains invalid field: upgrade"
    assert runtime.staged_proposal is None
    assert _phases(runtime) == ["dispatch"]


async def test_proposal_overriding_a_present_required_field_is_refused() -> None:
    runtime = _runtime(Provider({"seat": "99Z"}))
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.ProposalError) as info:
        await runtime.propose("book")
    assert str(info.value) == "Proposal tries to override required field: seat"
    assert runtime.staged_proposal is None
    assert dict(runtime.current_intent.payload) == {"seat": "1A"}
    assert _phases(runtime) == ["dispatch"]


@pytest.mark.parametrize("payload", [{}, {"seat": None}], ids=["absent", "none"])
async def test_proposal_may_fill_a_missing_required_field(payload: dict[str, Any]) -> None:
    # A required input set to None is "not present" (as for completeness), so it may be proposed.
    runtime = _runtime(Provider({"seat": "3C"}))
    await runtime.dispatch("book", payload)
    assert await runtime.propose("book") == {"seat": "3C"}
    intent = await runtime.accept_proposal("book")
    assert intent.complete is True
    assert intent.payload["seat"] == "3C"


async def test_proposal_may_replace_a_present_optional_field() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A", "meal": "fish"})
    assert await runtime.propose("book") == {"meal": "veg"}
    intent = await runtime.accept_proposal("book")
    assert dict(intent.payload) == {"seat": "1A", "meal": "veg"}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_provider_that_raises_gives_proposal_error_and_stages_nothing(is_async: bool) -> None:
    boom = RuntimeError("model unavailable")

    def sync_provider(intent: clp.Intent) -> Any:
        raise boom

    async def async_provider(intent: clp.Intent) -> Any:
        await asyncio.sleep(0)
        raise boom

    runtime = clp.create_runtime(_contract(), async_provider if is_async else sync_provider)
    intent = await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.ProposalError) as info:
        await runtime.propose("book")
    assert info.value.__cause__ is boom
    assert runtime.staged_proposal is None
    assert runtime.current_intent == intent
    assert _phases(runtime) == ["dispatch"]
    await runtime.commit()  # the intent is still usable
    assert runtime.get_state("seat") == "1A"


@pytest.mark.parametrize("result", [None, ["meal"], "veg", 42, (("meal", "veg"),)])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_provider_returning_a_non_dict_gives_proposal_error(result: Any, is_async: bool) -> None:
    runtime = _runtime(Provider(result, is_async=is_async))
    intent = await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.ProposalError):
        await runtime.propose("book")
    assert runtime.staged_proposal is None
    assert runtime.current_intent == intent
    assert _phases(runtime) == ["dispatch"]


# -- accept / reject --------------------------------------------------------------------


async def test_accept_without_a_current_intent_raises_no_matching_intent() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    with pytest.raises(errors.NoMatchingIntentError) as info:
        await runtime.accept_proposal("book")
    assert str(info.value) == "No matching intent"
    assert runtime.get_log() == []


async def test_accept_for_another_intent_raises_no_matching_intent() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    await runtime.propose("book")
    with pytest.raises(errors.NoMatchingIntentError, match=r"^No matching intent$"):
        await runtime.accept_proposal("cancel")
    assert runtime.staged_proposal is not None  # untouched
    assert dict(runtime.current_intent.payload) == {"seat": "1A"}


async def test_accept_with_nothing_staged_raises() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.NoStagedProposalError) as info:
        await runtime.accept_proposal("book")
    assert str(info.value) == "No staged proposal to accept"
    assert _phases(runtime) == ["dispatch"]


async def test_accept_merges_recomputes_completeness_logs_and_clears_the_stage() -> None:
    runtime = _runtime(Provider({"seat": "3C", "meal": "veg"}))
    first = await runtime.dispatch("book", {"party": 2})
    assert first.complete is False
    await runtime.propose("book")

    intent = await runtime.accept_proposal("book")

    assert intent.name == "book"
    assert dict(intent.payload) == {"party": 2, "seat": "3C", "meal": "veg"}
    assert intent.complete is True
    assert runtime.current_intent == intent
    assert runtime.staged_proposal is None
    entry = runtime.get_log()[-1]
    assert entry.phase == "accept"
    assert dict(entry.accepted_proposal) == {"seat": "3C", "meal": "veg"}
    assert dict(entry.intent_payload) == {"party": 2, "seat": "3C", "meal": "veg"}
    assert entry.proposal_source == "ai"
    assert entry.transition_result == TransitionResult(None, False)
    assert runtime.get_state() == {}  # accepting applies to the intent, not to state
    with pytest.raises(errors.NoStagedProposalError, match=r"^No staged proposal to accept$"):
        await runtime.accept_proposal("book")
    await runtime.commit()
    assert runtime.get_state() == {"seat": "3C", "meal": "veg"}


async def test_reject_discards_the_proposal_logs_it_and_keeps_the_intent() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    intent = await runtime.dispatch("book", {"seat": "1A"})
    await runtime.propose("book")

    kept = await runtime.reject_proposal("book")

    assert kept == intent
    assert runtime.current_intent == intent
    assert runtime.staged_proposal is None
    entry = runtime.get_log()[-1]
    assert entry.phase == "reject"
    assert entry.intent_name == "book"
    assert dict(entry.staged_proposal) == {"meal": "veg"}
    assert entry.accepted_proposal is None
    assert entry.proposal_source == "ai"
    assert entry.transition_result == TransitionResult(None, False)
    with pytest.raises(errors.NoStagedProposalError, match=r"^No staged proposal to accept$"):
        await runtime.accept_proposal("book")
    await runtime.commit()  # nothing unaccepted is left
    assert runtime.get_state("meal") == "none"


async def test_reject_without_a_matching_intent_raises() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    with pytest.raises(errors.NoMatchingIntentError, match=r"^No matching intent$"):
        await runtime.reject_proposal("book")
    await runtime.dispatch("cancel", {"seat": "1A"})
    with pytest.raises(errors.NoMatchingIntentError, match=r"^No matching intent$"):
        await runtime.reject_proposal("book")
    assert _phases(runtime) == ["dispatch"]


async def test_reject_with_nothing_staged_raises() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.NoStagedProposalError) as info:
        await runtime.reject_proposal("book")
    assert str(info.value) == "No staged proposal to reject"
    assert _phases(runtime) == ["dispatch"]


# -- commit -----------------------------------------------------------------------------


async def test_commit_without_an_intent_raises_and_is_logged() -> None:
    runtime = _runtime()
    with pytest.raises(errors.NoIntentError) as info:
        await runtime.commit()
    assert str(info.value) == "No intent to commit"
    [entry] = runtime.get_log()
    assert entry.phase == "commit"
    assert entry.intent_name is None
    assert entry.error == "No intent to commit"
    assert entry.transition_result == TransitionResult(None, False)


async def test_commit_with_an_unaccepted_proposal_is_refused() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    intent = await runtime.dispatch("book", {"seat": "1A"})
    await runtime.propose("book")
    with pytest.raises(errors.UnacceptedProposalError) as info:
        await runtime.commit()
    assert str(info.value) == "Unaccepted AI proposal present"
    assert runtime.get_state() == {}
    assert runtime.current_intent == intent
    assert dict(runtime.staged_proposal.values) == {"meal": "veg"}
    entry = runtime.get_log()[-1]
    assert (entry.phase, entry.error) == ("commit", "Unaccepted AI proposal present")
    assert entry.transition_result.permitted is False


async def test_unaccepted_proposal_is_reported_before_incompleteness() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {})
    await runtime.propose("book")
    with pytest.raises(errors.UnacceptedProposalError, match=r"^Unaccepted AI proposal present$"):
        await runtime.commit()


async def test_commit_of_an_incomplete_intent_is_refused_before_guards_run() -> None:
    calls: list[str] = []
    runtime = _runtime(guards=[{"name": "g", "deny": lambda ctx: calls.append("g")}])
    await runtime.dispatch("book", {"meal": "veg"})
    with pytest.raises(errors.IncompleteIntentError) as info:
        await runtime.commit()
    assert str(info.value) == "Intent is incomplete"
    assert calls == []
    assert runtime.get_state() == {}
    entry = runtime.get_log()[-1]
    assert (entry.phase, entry.error, entry.guard_outcomes) == ("commit", "Intent is incomplete", ())


async def test_guards_run_in_order_and_the_first_denial_stops_the_commit() -> None:
    calls: list[str] = []

    def guard(name: str, denied: bool) -> dict[str, Any]:
        def deny(ctx: Any) -> bool:
            calls.append(name)
            return denied

        return {"name": name, "deny": deny}

    runtime = _runtime(guards=[guard("first", False), guard("second", True), guard("third", True)])
    intent = await runtime.dispatch("book", {"seat": "1A"})

    with pytest.raises(errors.GuardDeniedError) as info:
        await runtime.commit("reserve")

    assert str(info.value) == "Guard second denied"
    assert info.value.guard == "second"
    assert calls == ["first", "second"]
    assert runtime.get_state() == {}
    assert runtime.current_intent == intent  # stays current after a denial
    entry = runtime.get_log()[-1]
    assert entry.phase == "commit"
    assert entry.guard_outcomes == (GuardOutcome("first", False), GuardOutcome("second", True))
    assert entry.transition_result == TransitionResult(None, False)
    assert entry.state_diff == ()
    assert entry.error == "Guard second denied"


async def test_guards_see_the_intent_and_the_state() -> None:
    seen: list[tuple[str, dict[str, Any], Any]] = []

    def deny(ctx: Any) -> bool:
        seen.append((ctx.intent.name, dict(ctx.intent.payload), ctx.state.get("seat")))
        return ctx.state.get("seat") == ctx.intent.payload["seat"]

    runtime = _runtime(guards=[{"name": "seat_free", "deny": deny}])
    await runtime.execute("book", {"seat": "1A"})
    with pytest.raises(errors.GuardDeniedError, match=r"^Guard seat_free denied$"):
        await runtime.execute("book", {"seat": "1A"})
    assert seen == [("book", {"seat": "1A"}, None), ("book", {"seat": "1A"}, "1A")]


@pytest.mark.parametrize("transition", ["reserve", "teleport"])
async def test_a_refused_commit_logs_the_requested_transition(transition: str) -> None:
    # 0.1 logs transitionAttempted = the requested name on a guard denial and on "No matching transition".
    runtime = _runtime(guards=[{"name": "closed", "deny": lambda ctx: True}])
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.GuardDeniedError):
        await runtime.commit(transition)
    entry = runtime.get_log()[-1]
    assert entry.error == "Guard closed denied"
    assert entry.transition_attempted == transition
    assert entry.transition_result == TransitionResult(None, False)


async def test_a_commit_to_an_unknown_transition_logs_the_requested_name() -> None:
    runtime = _runtime()
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.NoMatchingTransitionError):
        await runtime.commit("teleport")
    assert runtime.get_log()[-1].transition_attempted == "teleport"


async def test_an_unknown_transition_name_raises_no_matching_transition() -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.NoMatchingTransitionError) as info:
        await runtime.commit("teleport")
    assert str(info.value) == "No matching transition"
    assert runtime.get_state() == {}
    assert runtime.current_intent == intent
    entry = runtime.get_log()[-1]
    assert (entry.phase, entry.error) == ("commit", "No matching transition")
    assert entry.transition_result.permitted is False


async def test_a_named_transition_whose_when_fails_raises_no_matching_transition() -> None:
    # Implementation's reading of 0.1: a named transition must also hold.
    runtime = _runtime()
    await runtime.dispatch("book", {"seat": "1A"})
    with pytest.raises(errors.NoMatchingTransitionError, match=r"^No matching transition$"):
        await runtime.commit("release")
    assert runtime.get_state() == {}


async def test_a_named_transition_is_chosen_among_several_that_hold() -> None:
    transitions = {
        "a": {"when": lambda ctx: True, "effects": lambda ctx: {"via": "a"}},
        "b": {"when": lambda ctx: True, "effects": lambda ctx: {"via": "b"}},
    }
    runtime = _runtime(transitions=transitions)
    await runtime.dispatch("noop")
    entry = await runtime.commit("b")
    assert entry.transition_result == TransitionResult("b", True)
    assert runtime.get_state("via") == "b"


@pytest.mark.parametrize("holding", [0, 2, 3])
async def test_without_a_name_exactly_one_transition_must_hold(holding: int) -> None:
    transitions = {
        f"t{i}": {"when": (lambda ctx, i=i: i < holding), "effects": lambda ctx: {"x": 1}} for i in range(4)
    }
    runtime = _runtime(transitions=transitions)
    intent = await runtime.dispatch("noop")
    with pytest.raises(errors.AmbiguousTransitionError) as info:
        await runtime.commit()
    assert str(info.value) == f"Expected exactly one matching transition, found {holding}"
    assert isinstance(info.value, errors.TransitionError)
    assert runtime.get_state() == {}
    assert runtime.current_intent == intent
    assert runtime.get_log()[-1].error == str(info.value)


@pytest.mark.parametrize("named", [None, "t1"])
async def test_a_when_that_raises_is_a_condition_error_naming_the_transition(named: str | None) -> None:
    def broken(ctx: Any) -> bool:
        raise KeyError("missing")

    transitions = {"t0": {"when": lambda ctx: False, "effects": lambda ctx: {"x": 0}},
                   "t1": {"when": broken, "effects": lambda ctx: {"x": 1}}}
    runtime = _runtime(transitions=transitions)
    intent = await runtime.dispatch("noop")
    with pytest.raises(errors.ConditionError) as info:
        await runtime.commit(named)
    assert str(info.value) == "when of transition t1 raised: KeyError: 'missing'"
    assert info.value.where == "t1" and isinstance(info.value.__cause__, KeyError)
    assert runtime.get_state() == {} and runtime.current_intent == intent
    assert runtime.get_log()[-1].error == str(info.value)


async def test_a_successful_commit_applies_effects_logs_and_clears() -> None:
    guards = [{"name": "g1", "deny": lambda ctx: False}, {"name": "g2", "deny": lambda ctx: False}]
    runtime = _runtime(Provider({"meal": "veg"}), guards=guards)
    await runtime.dispatch("book", {"seat": "1A"})
    await runtime.propose("book")
    await runtime.accept_proposal("book")

    entry = await runtime.commit()

    assert runtime.get_state() == {"seat": "1A", "meal": "veg"}
    assert entry == runtime.get_log()[-1]
    assert entry.phase == "commit"
    assert entry.intent_name == "book"
    assert dict(entry.intent_payload) == {"seat": "1A", "meal": "veg"}
    assert entry.guard_outcomes == (GuardOutcome("g1", False), GuardOutcome("g2", False))
    assert entry.transition_attempted == "reserve"
    assert entry.transition_result == TransitionResult("reserve", True)
    assert entry.state_diff == (Change("set", "seat", "1A"), Change("set", "meal", "veg"))
    assert entry.error is None
    assert _phases(runtime) == ["dispatch", "propose", "accept", "commit"]
    assert runtime.current_intent is None
    assert runtime.staged_proposal is None
    with pytest.raises(errors.NoIntentError, match=r"^No intent to commit$"):
        await runtime.commit()
    assert runtime.get_state() == {"seat": "1A", "meal": "veg"}


async def test_commit_with_an_explicit_transition_name() -> None:
    runtime = _runtime()
    await runtime.dispatch("cancel", {"seat": "4D"})
    entry = await runtime.commit("release")
    assert entry.transition_attempted == "release"
    assert entry.transition_result == TransitionResult("release", True)
    assert entry.state_diff == (Change("set", "released", "4D"),)


async def test_guard_suggestion_is_staged_with_its_source_and_must_be_accepted() -> None:
    guards = [{
        "name": "small_party",
        "deny": lambda ctx: (ctx.intent.payload.get("party") or 0) > 4,
        "suggest": lambda ctx: {"party": 4},
    }]
    runtime = _runtime(guards=guards)
    await runtime.dispatch("book", {"seat": "1A", "party": 9})
    with pytest.raises(errors.GuardDeniedError) as info:
        await runtime.commit()
    assert info.value.suggestion == {"party": 4}
    assert runtime.staged_proposal.source == "guard:small_party"
    assert runtime.get_log()[-1].proposal_source == "guard:small_party"
    with pytest.raises(errors.UnacceptedProposalError):
        await runtime.commit()
    await runtime.accept_proposal("book")
    assert runtime.get_log()[-1].proposal_source == "guard:small_party"
    entry = await runtime.commit()
    assert entry.intent_payload["party"] == 4
    assert entry.transition_result.permitted is True


async def test_every_log_entry_has_a_transition_result() -> None:
    runtime = _runtime(Provider({"meal": "veg"}))
    await runtime.dispatch("book", {"seat": "1A"})
    await runtime.propose("book")
    await runtime.reject_proposal("book")
    await runtime.propose("book")
    await runtime.accept_proposal("book")
    await runtime.commit()
    results = [(e.phase, e.transition_result) for e in runtime.get_log()]
    assert results == [
        ("dispatch", TransitionResult(None, False)),
        ("propose", TransitionResult(None, False)),
        ("reject", TransitionResult(None, False)),
        ("propose", TransitionResult(None, False)),
        ("accept", TransitionResult(None, False)),
        ("commit", TransitionResult("reserve", True)),
    ]


# -- subscribers --------------------------------------------------------------------------


async def test_subscribers_get_the_whole_new_state_only_for_changed_keys() -> None:
    runtime = _runtime()
    calls: dict[str, list[dict[str, Any]]] = {"seat": [], "meal": [], "released": []}
    for key, seen in calls.items():
        runtime.subscribe(key, lambda state, seen=seen: seen.append(dict(state)))

    await runtime.execute("book", {"seat": "1A", "meal": "veg"})

    assert calls["seat"] == [{"seat": "1A", "meal": "veg"}]
    assert calls["meal"] == [{"seat": "1A", "meal": "veg"}]
    assert calls["released"] == []

    await runtime.execute("cancel", {"seat": "1A"})
    assert len(calls["seat"]) == 1
    assert calls["released"] == [{"seat": "1A", "meal": "veg", "released": "1A"}]


async def test_subscribers_are_not_called_when_nothing_changed_or_the_commit_failed() -> None:
    runtime = _runtime(guards=[{"name": "no_2b", "deny": lambda ctx: ctx.intent.payload.get("seat") == "2B"}])
    calls: list[Any] = []
    runtime.subscribe("seat", calls.append)
    await runtime.execute("noop")
    with pytest.raises(errors.GuardDeniedError):
        await runtime.execute("book", {"seat": "2B"})
    assert calls == []


async def test_subscribers_are_not_called_for_keys_written_with_an_unchanged_value() -> None:
    # 0.1 computes the diff by comparing old and new values: rewriting the same value is no change.
    runtime = _runtime()
    calls: list[Any] = []
    runtime.subscribe("seat", calls.append)
    await runtime.execute("book", {"seat": "1A", "meal": "veg"})
    assert len(calls) == 1
    await runtime.execute("book", {"seat": "1A", "meal": "fish"})
    assert len(calls) == 1
    assert runtime.get_state("meal") == "fish"


async def test_the_state_diff_leaves_out_keys_whose_value_did_not_change() -> None:
    runtime = _runtime()
    await runtime.execute("book", {"seat": "1A", "meal": "veg"})
    entry = await runtime.execute("book", {"seat": "1A", "meal": "fish"})
    assert entry.state_diff == (Change("set", "meal", "fish"),)


async def test_async_subscribers_are_awaited_and_unsubscribe_stops_calls() -> None:
    runtime = _runtime()
    calls: list[Any] = []

    async def on_seat(state: Any) -> None:
        await asyncio.sleep(0)
        calls.append(state["seat"])

    unsubscribe = runtime.subscribe("seat", on_seat)
    await runtime.execute("book", {"seat": "1A"})
    assert calls == ["1A"]
    unsubscribe()
    await runtime.execute("book", {"seat": "2B"})
    assert calls == ["1A"]
    assert runtime.get_state("seat") == "2B"


@pytest.mark.parametrize(
    ("watched", "called"),
    [
        ("user", True),  # above the written path
        ("user.profile", True),  # at it
        ("user.profile.name", True),  # under it (the whole profile was replaced)
        ("user.settings", False),
        ("users", False),  # a prefix of the string, not of the path
        ("seat", False),
    ],
)
async def test_subscribers_of_nested_paths(watched: str, called: bool) -> None:
    runtime = _runtime()
    calls: list[Any] = []
    runtime.subscribe(watched, lambda state: calls.append(state["user"]["profile"]["name"]))
    await runtime.execute("put", {"path": "user.profile", "value": {"name": "Ann"}})
    assert runtime.get_state("user.profile.name") == "Ann"
    assert calls == (["Ann"] if called else [])


# -- reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["missing", "user.missing", "user.profile.name.deeper", "seat.x"])
async def test_get_state_of_an_unknown_key_is_none(path: str) -> None:
    runtime = _runtime()
    await runtime.execute("put", {"path": "user", "value": {"profile": {"name": "Ann"}}})
    await runtime.execute("book", {"seat": "1A"})
    assert runtime.get_state(path) is None


async def test_get_state_returns_copies() -> None:
    runtime = _runtime()
    await runtime.execute("put", {"path": "user", "value": {"tags": ["a"], "profile": {"name": "Ann"}}})
    user = runtime.get_state("user")
    user["profile"]["name"] = "Bob"
    user["tags"].append("b")
    whole = runtime.get_state()
    whole["user"]["tags"].clear()
    assert runtime.get_state("user") == {"tags": ["a"], "profile": {"name": "Ann"}}


async def test_get_log_returns_a_copy() -> None:
    runtime = _runtime()
    await runtime.execute("book", {"seat": "1A"})
    log = runtime.get_log()
    assert len(log) == 2
    log.clear()
    log.append("junk")
    assert runtime.get_log() is not runtime.get_log()
    assert _phases(runtime) == ["dispatch", "commit"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        runtime.get_log()[0].phase = "commit"  # type: ignore[misc]


# -- execute ------------------------------------------------------------------------------


async def test_execute_dispatches_and_commits() -> None:
    runtime = _runtime()
    entry = await runtime.execute("book", {"seat": "1A", "meal": "veg"})
    assert entry.phase == "commit"
    assert entry.transition_result == TransitionResult("reserve", True)
    assert runtime.get_state() == {"seat": "1A", "meal": "veg"}
    assert _phases(runtime) == ["dispatch", "commit"]
    assert runtime.current_intent is None


async def test_execute_with_a_transition_name_and_with_an_unknown_intent() -> None:
    runtime = _runtime()
    entry = await runtime.execute("cancel", {"seat": "1A"}, "release")
    assert entry.transition_result == TransitionResult("release", True)
    with pytest.raises(errors.UnknownIntentError, match=r"^Unknown intent fly$"):
        await runtime.execute("fly", {})
    assert _phases(runtime) == ["dispatch", "commit"]


async def test_fifty_concurrent_executes_on_a_counter_give_fifty() -> None:
    async def increment(ctx: Any) -> dict[str, Any]:
        current = ctx.state.get("count") or 0
        await asyncio.sleep(0)  # let other tasks run between the read and the write
        return {"count": current + (ctx.intent.payload.get("amount") or 1)}

    contract = clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": {"when": lambda ctx: ctx.intent.complete, "effects": increment}},
    )
    runtime = clp.create_runtime(contract)

    entries = await asyncio.gather(*(runtime.execute("increment", {}) for _ in range(50)))

    assert runtime.get_state("count") == 50
    assert all(e.transition_result == TransitionResult("apply", True) for e in entries)
    assert sorted(e.state_diff[0].value for e in entries) == list(range(1, 51))
    assert _phases(runtime) == ["dispatch", "commit"] * 50
    assert runtime.current_intent is None
