"""LLMProvider against real llm models: scripted llm.AsyncModel / llm.Model subclasses,
registered through llm's register_models plugin hook (clp_llm.testing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from clp_llm import LLMProvider, proposal_schema
from clp_llm.testing import scripted_model

import clp_core as clp
from clp_core import errors
from clp_core.log import Proposed


@pytest.fixture(autouse=True)
def _llm_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))  # llm reads aliases.json there
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def triage() -> clp.Contract:
    contract = clp.Contract(state={"tickets": "array"})
    contract.intent("triage", inputs={"text": "string", "priority": "string", "team": "string?",
                                      "due": "date?"}, description="Route a support ticket")
    contract.intent("other", inputs={"x": "number?"})

    @contract.transition(on="triage")
    def file(ctx: Any) -> dict[str, Any]:
        return {"tickets": clp.ops.push(dict(ctx.intent.payload))}

    return contract


async def _runtime(provider: LLMProvider) -> clp.Runtime:
    runtime = clp.create_runtime(triage(), provider)
    provider.bind(runtime)
    await runtime.dispatch("triage", {"text": "The site is down"})
    return runtime


async def test_structured_proposal_is_staged_with_meta() -> None:
    reply = '{"priority": "high", "team": "ops", "due": null}'
    with scripted_model("triage-bot", [reply], needs_key=True) as script:
        provider = LLMProvider("triage-bot", system="You triage tickets.", key="sk-SECRET")
        runtime = await _runtime(provider)
        proposal = await runtime.propose("triage")
    assert proposal == {"priority": "high", "team": "ops"}  # nulls are not proposed
    assert script.schemas[0] == proposal_schema(runtime.intent_schema("triage"), {"text": "The site is down"})
    assert set(script.schemas[0]["properties"]) == {"priority", "team", "due"}  # only missing fields
    assert script.systems == ["You triage tickets."]
    assert script.keys == ["sk-SECRET"]  # given to llm ...
    meta = provider.last_meta
    assert meta is not None
    assert meta["model"] == "triage-bot" and meta["schema_mode"] == "structured"
    assert "The site is down" in meta["prompt"] and "Route a support ticket" in meta["prompt"]
    assert meta["response"] == '{"priority": "high", "team": "ops", "due": null}'
    assert meta["usage"]["output"] == 6 and meta["usage"]["input"] > 0
    text = json.dumps(meta)  # loggable as it is
    assert "SECRET" not in text and "SECRET" not in repr(provider)  # ... never recorded
    await runtime.accept_proposal("triage")
    await runtime.commit()
    assert runtime.get_state("tickets")[0]["priority"] == "high"


async def test_answer_is_a_proposed_dict_with_meta() -> None:
    with scripted_model("bot", ['{"priority": "low"}']):
        provider = LLMProvider("bot", contract=triage())  # schemas from the contract's type strings
        result = await provider(clp.Intent("triage", {"text": "hi"}))
    assert isinstance(result, Proposed) and result == {"priority": "low"}
    assert result.meta["attempts"][0]["problem"] is None


async def test_schema_in_prompt_when_the_model_has_no_schema_support() -> None:
    with scripted_model("plain-bot", ['```json\n{"priority": "normal"}\n```'], supports_schema=False) as script:
        provider = LLMProvider("plain-bot", schemas={"triage": clp.create_runtime(triage()).intent_schema("triage")})
        result = await provider(clp.Intent("triage", {"text": "x", "team": "web"}))
    assert result == {"priority": "normal"}
    assert script.schemas == [None]
    assert '"additionalProperties": false' in script.prompts[0] and '"team"' not in script.prompts[0].split(
        "JSON Schema:")[1]
    assert provider.last_meta["schema_mode"] == "prompt"


async def test_sync_only_model_works() -> None:
    with scripted_model("sync-bot", ['{"priority": "low"}'], async_model=False):
        provider = LLMProvider("sync-bot", contract=triage())
        assert await provider(clp.Intent("triage", {"text": "x"})) == {"priority": "low"}


@pytest.mark.parametrize(
    ("replies", "problem"),
    [(["not json at all"], "not JSON"), (["[1, 2]"], "not an object"),
     (['{"priority": 3}'], "priority: expected string"), (['{"team": "ops"}'], "priority: missing"),
     (['{"priority": "high", "text": "rewritten"}'], "text: not a field of this intent"),
     (['{"priority": "high", "colour": "red"}'], "colour: not a field"),
     (['{"priority": "high", "due": "next week"}'], "due: ")],
)
async def test_malformed_or_off_schema_output_stages_nothing(replies: list[str], problem: str) -> None:
    with scripted_model("bad-bot", replies) as script:
        provider = LLMProvider("bad-bot", retries=2)
        runtime = await _runtime(provider)
        with pytest.raises(errors.ProposalError, match=problem) as info:
            await runtime.propose("triage")
    assert "3 attempts" in str(info.value)
    assert len(script.prompts) == 3  # bounded retries
    assert "previous answer was rejected" in script.prompts[1]
    assert runtime.staged_proposal is None
    assert [e.phase for e in runtime.get_log()] == ["dispatch"]
    assert len(provider.last_meta["attempts"]) == 3


async def test_a_retry_can_recover() -> None:
    with scripted_model("flaky-bot", ["oops", '{"priority": "high"}']) as script:
        provider = LLMProvider("flaky-bot", retries=1)
        runtime = await _runtime(provider)
        proposal = await runtime.propose("triage")
    assert proposal == {"priority": "high"}
    assert len(script.prompts) == 2
    assert [a["problem"] is None for a in provider.last_meta["attempts"]] == [False, True]


async def test_no_retry_when_retries_is_zero() -> None:
    with scripted_model("bad-bot", ["oops", '{"priority": "high"}']) as script:
        provider = LLMProvider("bad-bot", retries=0)
        runtime = await _runtime(provider)
        with pytest.raises(errors.ProposalError, match="1 attempt:"):
            await runtime.propose("triage")
    assert len(script.prompts) == 1


@pytest.mark.parametrize("async_model", [True, False])
async def test_timeout_is_a_proposal_error(async_model: bool) -> None:
    with scripted_model("slow-bot", ['{"priority": "high"}'], delay=0.5, async_model=async_model):
        provider = LLMProvider("slow-bot", timeout=0.1)
        runtime = await _runtime(provider)
        with pytest.raises(errors.ProposalError, match=r"did not answer within 0\.1s"):
            await runtime.propose("triage")
    assert runtime.staged_proposal is None
    assert provider.last_meta["error"] == "timeout after 0.1s"


async def test_nothing_to_propose_does_not_call_the_model() -> None:
    with scripted_model("bot", ['{"priority": "x"}']) as script:
        provider = LLMProvider("bot", contract=triage())
        result = await provider(clp.Intent("triage", {"text": "a", "priority": "b", "team": "c", "due": "2026-01-01"}))
    assert result == {} and script.prompts == []


async def test_unknown_model_and_missing_schema_are_clear() -> None:
    with pytest.raises(errors.ProposalError, match="llm knows no model 'no-such-model'"):
        await LLMProvider("no-such-model", contract=triage())(clp.Intent("triage", {"text": "a"}))
    with pytest.raises(errors.ProposalError, match=r"provider.bind\(runtime\)"):
        await LLMProvider("bot")(clp.Intent("triage", {"text": "a"}))
    with pytest.raises(errors.ConfigError):
        LLMProvider("bot", timeout=0)
    with pytest.raises(errors.ConfigError):
        LLMProvider("bot", retries=-1)


async def test_a_missing_api_key_is_a_proposal_error() -> None:
    with scripted_model("keyed-bot", ['{"priority": "low"}'], needs_key=True):
        provider = LLMProvider("keyed-bot", contract=triage())
        with pytest.raises(errors.ProposalError, match="No key found"):
            await provider(clp.Intent("triage", {"text": "a"}))


async def test_model_errors_are_proposal_errors() -> None:
    def boom(prompt: Any) -> str:
        raise RuntimeError("rate limited")

    with scripted_model("boom-bot", [boom]):
        provider = LLMProvider("boom-bot", contract=triage())
        with pytest.raises(errors.ProposalError, match="rate limited"):
            await provider(clp.Intent("triage", {"text": "a"}))


async def test_pydantic_model_constraints_reach_the_schema() -> None:
    pydantic = pytest.importorskip("pydantic")
    pytest.importorskip("clp_pydantic")
    contract = clp.Contract()

    @contract.intent("triage")
    class Triage(pydantic.BaseModel):
        text: str
        priority: str = pydantic.Field(default="normal", pattern="^(low|normal|high)$", max_length=6)

    with scripted_model("bot", ['{"priority": "urgent!"}', '{"priority": "high"}']) as script:
        provider = LLMProvider("bot")
        runtime = clp.create_runtime(contract, provider, validation={})
        provider.bind(runtime)
        await runtime.dispatch("triage", {"text": "down"})
        await runtime.propose("triage")
    assert script.schemas[0]["properties"]["priority"]["maxLength"] == 6
    assert "length out of bounds" in script.prompts[1]
