"""The validator protocol as the runtime uses it: strict, lenient, coercion, state checks, schemas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import ConfigError, ValidationError


class StringNumbers:
    """A validator that accepts numbers written as strings (coercion) and caps the count at 10."""

    checks_state = True

    def validate_payload(self, intent: str, values: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        out = {}
        for field, value in values.items():
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValidationError(f"payload of {intent}", [{"field": field, "expected": "integer",
                                                               "got": type(value).__name__}])
            out[field] = value
        return out

    def validate_state(self, state: Mapping[str, Any]) -> None:
        if (state.get("count") or 0) > 10:
            raise ValidationError("state", [{"field": "count", "expected": "at most 10", "got": "int"}])

    def intent_schema(self, intent: str) -> dict[str, Any]:
        return {"title": intent, "from": "validator"}


def runtime(strict: bool, calls: list[Any] | None = None) -> clp.Runtime:
    contract = clp.create_contract(
        intents={"add": {"inputs": {"amount": "number"}}},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                        + ctx.intent.payload["amount"]}}},
    )

    class Spy:
        def on_error(self, error: BaseException, phase: str) -> None:
            if calls is not None:
                calls.append((phase, type(error).__name__))

    return clp.create_runtime(contract, validation={"strict": strict, "validator": StringNumbers()},
                              middleware=[Spy()])


async def test_coerced_values_are_what_the_transition_sees() -> None:
    rt = runtime(strict=True)
    await rt.execute("add", {"amount": "4"})
    assert rt.get_state("count") == 4
    assert rt.get_log()[-1].intent_payload == {"amount": 4}


async def test_strict_refuses_and_changes_nothing() -> None:
    rt = runtime(strict=True)
    with pytest.raises(ValidationError, match="amount: expected integer, got float"):
        await rt.execute("add", {"amount": 1.5})
    assert rt.get_log() == [] and rt.current_intent is None


async def test_strict_state_model_refuses_a_commit_whose_result_breaks_it() -> None:
    rt = runtime(strict=True)
    await rt.execute("add", {"amount": 8})
    with pytest.raises(ValidationError, match="count: expected at most 10"):
        await rt.execute("add", {"amount": 5})
    assert rt.get_state("count") == 8
    assert rt.get_log()[-1].error and not rt.get_log()[-1].transition_result.permitted


async def test_lenient_records_failures_on_the_entry_and_in_on_error_and_goes_on() -> None:
    calls: list[Any] = []
    rt = runtime(strict=False, calls=calls)
    await rt.dispatch("add", {"amount": 1.5})
    assert rt.get_log()[-1].validation_errors == ({"field": "amount", "expected": "integer", "got": "float"},)
    assert calls == [("dispatch", "ValidationError")]
    entry = await rt.commit()
    assert rt.get_state("count") == 1.5
    await rt.execute("add", {"amount": 10})  # breaks the state model: recorded, committed anyway
    assert rt.get_state("count") == 11.5
    assert rt.get_log()[-1].validation_errors[0]["field"] == "count"
    assert calls[-1] == ("commit", "ValidationError")
    assert entry.validation_errors == ()


async def test_intent_schema_from_type_strings_and_from_the_validator() -> None:
    contract = clp.create_contract(intents={"remind": {"inputs": {"text": "string", "on": "date?"}}})
    schema = clp.create_runtime(contract).intent_schema("remind")
    assert schema["required"] == ["text"]
    assert schema["properties"]["on"] == {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}
    assert runtime(strict=True).intent_schema("add") == {"title": "add", "from": "validator"}
    with pytest.raises(clp.errors.UnknownIntentError):
        runtime(strict=True).intent_schema("nope")


@pytest.mark.parametrize(("options", "message"), [
    ({"strict": True, "validator": "nonexistent"}, "no installed plugin registers a validator"),
    ({"strict": True, "validator": object()}, "must be a name or"),
    ({"strict": True, "surprise": 1}, "unknown options"),
])
def test_bad_validation_options(options: dict[str, Any], message: str) -> None:
    contract = clp.create_contract(intents={"a": {"inputs": {}}})
    with pytest.raises(ConfigError, match=message):
        clp.create_runtime(contract, validation=options)


async def test_a_failing_proposal_is_reported_as_a_proposal() -> None:
    contract = clp.create_contract(intents={"add": {"inputs": {"amount": "number?"}}},
                                   transitions={"apply": {"effects": lambda ctx: {}}})
    rt = clp.create_runtime(contract, lambda intent: {"amount": 1.5},
                            validation={"strict": True, "validator": StringNumbers()})
    await rt.dispatch("add", {})
    with pytest.raises(ValidationError, match=r"^Invalid proposal for add: amount: expected integer, got float"):
        await rt.propose("add")
    assert rt.staged_proposal is None


def test_without_the_pydantic_plugin_validation_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from clp_core.plugins import process_config

    monkeypatch.setenv("CLP_DISABLE_PLUGINS", "clp-pydantic")  # as if it were not installed
    process_config(refresh=True)
    try:
        contract = clp.create_contract(intents={"a": {"inputs": {}}})
        with pytest.raises(ConfigError, match=r"pip install 'clp-core\[pydantic\]'"):
            clp.create_runtime(contract, validation={"strict": True, "schema": {"a": object}})
    finally:
        monkeypatch.delenv("CLP_DISABLE_PLUGINS")
        process_config(refresh=True)
