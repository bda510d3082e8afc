"""Run-time type checks of dispatched payloads, AI proposals and guard suggestions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import clp_core as clp
from clp_core import errors

SECRET = "hunter2-s3cr3t-value"

INPUTS = {
    "s": "string?",
    "n": "number?",
    "i": "integer?",
    "b": "boolean?",
    "d": "date?",
    "dt": "datetime?",
    "a": "array?",
    "o": "object?",
    "x": "any?",
}


def _contract(guards: list[Any] | None = None) -> clp.Contract:
    return clp.create_contract(
        intents={
            "typed": {"inputs": INPUTS},
            "pay": {"inputs": {"card": "string", "amount": "number", "note": "string?"}},
        },
        guards=guards or [],
        transitions={"record": {"effects": lambda ctx: {"last": ctx.intent.name}}},
    )


def _runtime(provider: Any = None, guards: list[Any] | None = None) -> clp.Runtime:
    return clp.create_runtime(_contract(guards), provider)


def _leaks(error: BaseException, value: Any) -> bool:
    text = str(error) + repr(error.args) + repr(getattr(error, "errors", ""))
    return str(value) in text or repr(value) in text


# (field, value, expected, got); every value is distinctive enough to be spotted in a message.
BAD = [
    ("n", SECRET, "number?", "str"),
    ("n", "12345.678", "number?", "str"),
    ("n", True, "number?", "bool"),
    ("n", False, "number?", "bool"),
    ("n", float("nan"), "number?", "non-finite float"),
    ("n", float("inf"), "number?", "non-finite float"),
    ("n", float("-inf"), "number?", "non-finite float"),
    ("n", [98765], "number?", "list"),
    ("n", {"v": 98765}, "number?", "dict"),
    ("i", 98765.5, "integer?", "float"),
    ("i", 4.0, "integer?", "float"),
    ("i", True, "integer?", "bool"),
    ("i", "98765", "integer?", "str"),
    ("s", 98765, "string?", "int"),
    ("s", b"bytes-secret", "string?", "bytes"),
    ("s", ["list-secret"], "string?", "list"),
    ("b", 1, "boolean?", "int"),
    ("b", "true-ish-secret", "boolean?", "str"),
    ("d", "2024-13-45", "date?", "str (not an ISO 8601 date)"),
    ("d", SECRET, "date?", "str (not an ISO 8601 date)"),
    ("d", 20240101, "date?", "int"),
    ("d", dt.datetime(2024, 1, 2, 3, 4, 5), "date?", "datetime"),
    ("dt", "2024-01-02T25:61:00", "datetime?", "str (not an ISO 8601 datetime)"),
    ("dt", SECRET, "datetime?", "str (not an ISO 8601 datetime)"),
    ("dt", dt.date(2024, 1, 2), "datetime?", "date"),
    ("dt", 1704164645.25, "datetime?", "float"),
    ("a", "array-secret", "array?", "str"),
    ("a", {"k": "array-secret"}, "array?", "dict"),
    ("o", ["object-secret"], "object?", "list"),
    ("o", "object-secret", "object?", "str"),
]

GOOD = [
    ("s", ""),
    ("s", "text"),
    ("n", 0),
    ("n", -3),
    ("n", 1.5),
    ("n", 10**30),
    ("i", 0),
    ("i", -7),
    ("i", 10**30),
    ("b", True),
    ("b", False),
    ("d", "2024-02-29"),
    ("d", dt.date(2024, 2, 29)),
    ("dt", "2024-01-02T03:04:05"),
    ("dt", "2024-01-02T03:04:05+00:00"),
    ("dt", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("a", []),
    ("a", [1, "two", None]),
    ("o", {}),
    ("o", {"nested": {"k": [1]}}),
    ("x", None),
    ("x", "anything"),
    ("x", {"k": [1, 2.5, True]}),
]

_ids = [f"{f}={type(v).__name__}:{i}" for i, (f, v, _, _) in enumerate(BAD)]


def _check_error(error: errors.ValidationError, field: str, value: Any, expected: str, got: str) -> None:
    assert isinstance(error, errors.ClpError)
    assert error.errors == [{"field": field, "expected": expected, "got": got}]
    assert f"{field}: expected {expected}, got {got}" in str(error)
    assert not _leaks(error, value)


# -- dispatch ---------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "expected", "got"), BAD, ids=_ids)
async def test_a_dispatched_value_that_does_not_fit_is_refused(field: str, value: Any, expected: str, got: str) -> None:
    runtime = _runtime()
    with pytest.raises(errors.ValidationError) as info:
        await runtime.dispatch("typed", {field: value})
    _check_error(info.value, field, value, expected, got)
    assert runtime.current_intent is None
    assert runtime.get_log() == []


@pytest.mark.parametrize(("field", "value", "expected", "got"), BAD, ids=_ids)
async def test_a_refused_dispatch_leaves_the_current_intent_and_stage_alone(
    field: str, value: Any, expected: str, got: str
) -> None:
    runtime = _runtime(lambda intent: {"s": "proposed"})
    intent = await runtime.dispatch("typed", {"n": 1})
    await runtime.propose("typed")
    staged = runtime.staged_proposal
    log = runtime.get_log()

    with pytest.raises(errors.ValidationError):
        await runtime.dispatch("typed", {field: value})

    assert runtime.current_intent == intent
    assert runtime.staged_proposal == staged
    assert runtime.get_log() == log
    assert not any(e.phase == "accept" for e in runtime.get_log())


@pytest.mark.parametrize(("field", "value", "expected", "got"), BAD[:8], ids=_ids[:8])
async def test_execute_refuses_values_that_do_not_fit_and_commits_nothing(
    field: str, value: Any, expected: str, got: str
) -> None:
    runtime = _runtime()
    with pytest.raises(errors.ValidationError):
        await runtime.execute("typed", {field: value})
    assert runtime.get_state() == {}
    assert runtime.get_log() == []


async def test_a_required_field_is_checked_too_and_all_bad_fields_are_listed() -> None:
    runtime = _runtime()
    with pytest.raises(errors.ValidationError) as info:
        await runtime.dispatch("pay", {"card": 4111111111111111, "amount": SECRET, "note": "ok"})
    assert info.value.errors == [
        {"field": "card", "expected": "string", "got": "int"},
        {"field": "amount", "expected": "number", "got": "str"},
    ]
    assert "4111111111111111" not in str(info.value)
    assert SECRET not in str(info.value)
    assert runtime.current_intent is None


@pytest.mark.parametrize(("field", "value"), GOOD, ids=[f"{f}:{i}" for i, (f, _) in enumerate(GOOD)])
async def test_values_that_fit_are_accepted(field: str, value: Any) -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("typed", {field: value})
    assert intent.payload[field] == value
    entry = await runtime.commit()
    assert entry.transition_result.permitted is True


@pytest.mark.parametrize("field", list(INPUTS))
async def test_none_fits_every_optional_input(field: str) -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("typed", {field: None})
    assert intent.complete is True


async def test_none_for_a_required_input_is_not_a_type_error_but_makes_the_intent_incomplete() -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("pay", {"card": None, "amount": 5})
    assert intent.complete is False
    with pytest.raises(errors.IncompleteIntentError):
        await runtime.commit()


async def test_undeclared_payload_fields_are_refused() -> None:
    runtime = _runtime()
    intent = await runtime.dispatch("pay", {"card": "4111", "amount": 5})
    with pytest.raises(errors.ValidationError) as info:
        await runtime.dispatch("pay", {"card": "4111", "amount": 5, "cvv": SECRET})
    assert [e["field"] for e in info.value.errors] == ["cvv"]
    assert SECRET not in str(info.value)
    assert runtime.current_intent == intent
    assert [e.phase for e in runtime.get_log()] == ["dispatch"]


@pytest.mark.parametrize("payload", [[("card", "4111")], "card=4111", 42])
async def test_a_payload_that_is_not_a_mapping_is_refused(payload: Any) -> None:
    runtime = _runtime()
    with pytest.raises(errors.ValidationError):
        await runtime.dispatch("pay", payload)
    assert runtime.current_intent is None
    assert runtime.get_log() == []


# -- AI proposals -------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "expected", "got"), BAD, ids=_ids)
async def test_a_proposed_value_that_does_not_fit_is_refused_and_not_staged(
    field: str, value: Any, expected: str, got: str
) -> None:
    runtime = _runtime(lambda intent: {field: value})
    intent = await runtime.dispatch("typed", {"s": "kept"})

    with pytest.raises(errors.ValidationError) as info:
        await runtime.propose("typed")

    _check_error(info.value, field, value, expected, got)
    assert runtime.staged_proposal is None
    assert runtime.current_intent == intent
    assert [e.phase for e in runtime.get_log()] == ["dispatch"]
    with pytest.raises(errors.NoStagedProposalError):
        await runtime.accept_proposal("typed")
    assert not any(e.phase == "accept" for e in runtime.get_log())
    await runtime.commit()  # the intent was not spoiled
    assert runtime.get_state("last") == "typed"


async def test_an_async_provider_proposal_is_checked_too() -> None:
    async def provider(intent: clp.Intent) -> dict[str, Any]:
        return {"amount": SECRET}

    runtime = clp.create_runtime(_contract(), provider)
    intent = await runtime.dispatch("pay", {"card": "4111"})
    with pytest.raises(errors.ValidationError) as info:
        await runtime.propose("pay")
    assert info.value.errors == [{"field": "amount", "expected": "number", "got": "str"}]
    assert SECRET not in str(info.value)
    assert runtime.staged_proposal is None
    assert runtime.current_intent == intent


async def test_a_proposal_that_fits_is_staged_as_given() -> None:
    when = dt.date(2024, 2, 29)
    runtime = _runtime(lambda intent: {"d": when, "n": 2.5, "o": {"k": [1]}})
    await runtime.dispatch("typed", {})
    assert await runtime.propose("typed") == {"d": when, "n": 2.5, "o": {"k": [1]}}
    intent = await runtime.accept_proposal("typed")
    assert dict(intent.payload) == {"d": when, "n": 2.5, "o": {"k": [1]}}


# -- guard suggestions --------------------------------------------------------------------


async def test_a_guard_suggestion_that_does_not_fit_is_not_staged() -> None:
    guards = [{"name": "limit", "deny": lambda ctx: ctx.intent.payload["amount"] > 100,
               "suggest": lambda ctx: {"amount": "one hundred"}}]
    runtime = _runtime(guards=guards)
    intent = await runtime.dispatch("pay", {"card": "4111", "amount": 500})
    with pytest.raises(errors.GuardDeniedError) as info:
        await runtime.commit()
    assert info.value.suggestion is None
    assert runtime.staged_proposal is None
    assert runtime.current_intent == intent
    assert not any(e.phase == "accept" for e in runtime.get_log())
    with pytest.raises(errors.NoStagedProposalError):
        await runtime.accept_proposal("pay")


async def test_a_guard_suggestion_that_fits_may_replace_a_required_input() -> None:
    guards = [{"name": "limit", "deny": lambda ctx: ctx.intent.payload["amount"] > 100,
               "suggest": lambda ctx: {"amount": 100}}]
    runtime = _runtime(guards=guards)
    await runtime.dispatch("pay", {"card": "4111", "amount": 500})
    with pytest.raises(errors.GuardDeniedError) as info:
        await runtime.commit()
    assert info.value.suggestion == {"amount": 100}
    intent = await runtime.accept_proposal("pay")
    assert intent.payload["amount"] == 100
    entry = await runtime.commit()
    assert entry.transition_result.permitted is True


@pytest.mark.parametrize("kind", ["deep", "cyclic"])
async def test_cyclic_or_absurdly_deep_payloads_are_validation_errors(kind: str) -> None:
    contract = clp.create_contract(intents={"put": {"inputs": {"value": "any"}}},
                                   transitions={"t": {"effects": lambda ctx: {"v": 1}}})
    value: list = []
    if kind == "cyclic":
        value.append(value)
    else:
        node = value
        for _ in range(5000):
            node.append([])
            node = node[0]
    rt = clp.create_runtime(contract)
    with pytest.raises(clp.errors.ValidationError, match="cyclic or too deeply nested"):
        await rt.dispatch("put", {"value": value})
    assert rt.current_intent is None
