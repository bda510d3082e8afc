"""clp-pydantic through the runtime: type strings and hand-written models, every phase,
strict and lenient, explicit coercion, error reports that never quote values, JSON Schema."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import clp_pydantic
import pytest
from clp_pydantic import PydanticValidator
from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

import clp_core as clp
from clp_core.errors import (
    ClpError,
    ConfigError,
    GuardDeniedError,
    IncompleteIntentError,
    UnknownIntentError,
    ValidationError,
)
from clp_core.validation import Validator

ISOLATED = {"disable": ["*"], "enable": ["clp-pydantic", "clp-storage"]}  # no other installed plugin's hooks


class Spy:
    """Middleware recording on_error calls as (phase, error)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, BaseException]] = []

    def on_error(self, error: BaseException, phase: str) -> None:
        self.errors.append((phase, error))


def make_runtime(contract: clp.Contract, ai: Any = None, spy: Spy | None = None,
                 initial_state: dict[str, Any] | None = None, **validation: Any) -> clp.Runtime:
    validation.setdefault("strict", True)
    return clp.create_runtime(contract, ai, validation=validation, config=ISOLATED, initial_state=initial_state,
                              middleware=[spy] if spy else [])


def counter() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number?"}}},
        state={"count": "number"},
        transitions={"apply": {"when": lambda ctx: ctx.intent.complete,
                               "effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                       + (ctx.intent.payload.get("amount") or 1)}}},
    )


def recorder(inputs: dict[str, str], state: dict[str, Any] | None = None, **extra: Any) -> clp.Contract:
    """One intent ``put`` whose commit stores its payload under ``last``."""
    return clp.create_contract(
        intents={"put": {"inputs": inputs}},
        state=state or {},
        transitions={"store": {"effects": lambda ctx: {"last": dict(ctx.intent.payload)}}},
        **extra,
    )


# -- registration ------------------------------------------------------------------------------
def test_registers_the_pydantic_validator_through_the_hook() -> None:
    assert clp_pydantic.register_validators() == {"pydantic": clp_pydantic.create_validator}
    runtime = make_runtime(counter())
    assert isinstance(runtime.validator, PydanticValidator)
    assert isinstance(runtime.validator, Validator)


def test_discovered_as_an_entry_point_plugin() -> None:
    from clp_core.plugins import discover

    records = {r.name: r for r in discover()}
    assert records["clp-pydantic"].error is None
    assert records["clp-pydantic"].plugin is clp_pydantic
    assert records["clp-pydantic"].distribution == "clp-pydantic"


# -- type strings, strict --------------------------------------------------------------------
@pytest.mark.parametrize(("value", "got"), [
    ("5", "str"), (True, "bool"), (float("nan"), "non-finite float"), (float("inf"), "non-finite float"),
    ([1], "list"), ({"a": 1}, "dict"),
])
async def test_a_number_is_a_number_nothing_is_coerced(value: Any, got: str) -> None:
    runtime = make_runtime(counter())
    with pytest.raises(ValidationError) as info:
        await runtime.dispatch("increment", {"amount": value})
    assert info.value.errors == [{"field": "amount", "expected": "number?", "got": got}]
    assert str(info.value) == f"Invalid payload of increment: amount: expected number?, got {got}"
    assert runtime.get_log() == [] and runtime.current_intent is None


async def test_valid_values_pass_unchanged() -> None:
    runtime = make_runtime(counter())
    await runtime.execute("increment", {"amount": 2})
    await runtime.execute("increment", {"amount": 0.5})
    await runtime.execute("increment", {})
    assert runtime.get_state("count") == 3.5
    assert runtime.get_log()[0].intent_payload == {"amount": 2}
    assert type(runtime.get_log()[0].intent_payload["amount"]) is int  # an int stays an int


async def test_every_type_string() -> None:
    inputs = {"s": "string?", "n": "number?", "i": "integer?", "b": "boolean?", "d": "date?", "t": "datetime?",
              "a": "array?", "o": "object?", "x": "any?"}
    runtime = make_runtime(recorder(inputs))
    good = {"s": "x", "n": 1.5, "i": 3, "b": False, "d": "2024-02-29", "t": "2024-02-29T10:00:00",
            "a": (1, "two"), "o": {"k": [1]}, "x": 7}
    await runtime.execute("put", good)
    assert runtime.get_log()[-1].intent_payload["d"] == "2024-02-29"  # dates are kept as given
    bad = {"s": 1, "n": "1", "i": 1.0, "b": 1, "d": "29/02/2024", "t": dt.date(2024, 2, 29), "a": "ab", "o": [1]}
    with pytest.raises(ValidationError) as info:
        await runtime.dispatch("put", bad)
    assert {e["field"]: (e["expected"], e["got"]) for e in info.value.errors} == {
        "s": ("string?", "int"), "n": ("number?", "str"), "i": ("integer?", "float"), "b": ("boolean?", "int"),
        "d": ("date?", "str (not an ISO 8601 date)"), "t": ("datetime?", "date"), "a": ("array?", "str"),
        "o": ("object?", "list"),
    }


async def test_dates_accept_date_objects_and_iso_strings_in_both_modes() -> None:
    for coerce in (False, True):
        runtime = make_runtime(recorder({"on": "date"}), coerce=coerce)
        await runtime.execute("put", {"on": dt.date(2024, 1, 2)})
        assert runtime.get_state("last.on") == dt.date(2024, 1, 2)
        await runtime.execute("put", {"on": "2024-01-03"})
        assert runtime.get_state("last.on") == "2024-01-03"
        with pytest.raises(ValidationError, match="not an ISO 8601 date"):
            await runtime.execute("put", {"on": "tomorrow"})


async def test_containers_in_the_payload_are_copied() -> None:
    runtime = make_runtime(recorder({"tags": "array", "meta": "object"}))
    tags, meta = ["a"], {"k": {"deep": 1}}
    await runtime.dispatch("put", {"tags": tags, "meta": meta})
    tags.append("b")
    meta["k"]["deep"] = 2
    assert runtime.current_intent.payload == {"tags": ["a"], "meta": {"k": {"deep": 1}}}


async def test_deep_or_cyclic_values_are_refused_not_crashed_on() -> None:
    runtime = make_runtime(recorder({"meta": "object?", "tags": "array?"}))
    deep: Any = {}
    node = deep
    for _ in range(5000):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(ValidationError, match="at most 100 levels of nesting"):
        await runtime.dispatch("put", {"meta": deep})
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValidationError, match="levels of nesting"):
        await runtime.dispatch("put", {"tags": cyclic})
    assert runtime.get_log() == []


# -- coercion --------------------------------------------------------------------------------
async def test_coerce_lets_pydantic_lax_mode_convert_and_the_transition_sees_the_result() -> None:
    seen = []
    contract = clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number"}}},
        transitions={"apply": {"effects": lambda ctx: seen.append(ctx.intent.payload["amount"])
                               or {"count": (ctx.state.get("count") or 0) + ctx.intent.payload["amount"]}}},
    )
    runtime = make_runtime(contract, coerce=True)
    await runtime.execute("increment", {"amount": "5"})
    assert seen == [5] and runtime.get_state("count") == 5
    assert runtime.get_log()[-1].intent_payload == {"amount": 5}
    with pytest.raises(ValidationError, match="amount: expected number, got str"):
        await runtime.execute("increment", {"amount": "five"})


async def test_coerce_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="coerce"):
        make_runtime(counter(), coerce="yes")


# -- hand-written models ----------------------------------------------------------------------
class IncrementPayload(BaseModel):
    amount: int = Field(ge=0, le=100)
    note: str | None = None

    @field_validator("note")
    @classmethod
    def tidy(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class AppState(BaseModel):
    count: int = Field(default=0, ge=0, le=10)


def modelled_counter() -> clp.Contract:
    return clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number", "note": "string?", "by": "string?"}}},
        state={"count": "number"},
        transitions={"apply": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                       + ctx.intent.payload["amount"]}}},
    )


async def test_a_model_s_constraints_and_validators_apply() -> None:
    runtime = make_runtime(modelled_counter(), schema={"increment": IncrementPayload})
    await runtime.execute("increment", {"amount": 2, "note": "  Hello ", "by": "me"})
    assert runtime.get_log()[-1].intent_payload == {"amount": 2, "note": "hello", "by": "me"}
    for payload, message in [
        ({"amount": -1}, "amount: expected a value >= 0, got int"),
        ({"amount": 101}, "amount: expected a value <= 100, got int"),
        ({"amount": 1.0}, "amount: expected integer, got float"),
        ({"amount": "1"}, "amount: expected integer, got str"),
        ({"amount": 1, "by": 3}, "by: expected string?, got int"),  # not in the model: its type string
    ]:
        with pytest.raises(ValidationError) as info:
            await runtime.execute("increment", payload)
        assert str(info.value) == f"Invalid payload of increment: {message}"
    assert runtime.get_state("count") == 2


async def test_coerce_with_a_model_is_lax_but_the_model_s_own_strict_fields_stay_strict() -> None:
    class Payload(BaseModel):
        amount: int
        note: str | None = Field(default=None, strict=True)

    runtime = make_runtime(modelled_counter(), schema={"increment": Payload}, coerce=True)
    await runtime.execute("increment", {"amount": "3"})
    assert runtime.get_state("count") == 3
    with pytest.raises(ValidationError, match="note: expected string, got bytes"):
        await runtime.execute("increment", {"amount": 1, "note": b"x"})


async def test_partial_payloads_validate_the_fields_present() -> None:
    class Range(BaseModel):
        lo: int = Field(ge=0)
        hi: int

        @model_validator(mode="after")
        def ordered(self) -> Range:
            if self.hi < self.lo:
                raise ValueError("hi must not be below lo")
            return self

    proposals: list[dict[str, Any]] = [{"hi": "9"}, {"hi": 1}, {"hi": 9}]

    async def ai(intent: clp.Intent) -> dict[str, Any]:
        return proposals.pop(0)

    contract = clp.create_contract(
        intents={"range": {"inputs": {"lo": "number", "hi": "number"}}},
        transitions={"set": {"when": lambda ctx: ctx.intent.complete,
                             "effects": lambda ctx: {"range": dict(ctx.intent.payload)}}},
    )
    spy = Spy()
    runtime = make_runtime(contract, ai, spy, schema={"range": Range})
    with pytest.raises(ValidationError, match="lo: expected a value >= 0"):
        await runtime.dispatch("range", {"lo": -1})
    await runtime.dispatch("range", {"lo": 5})  # hi missing: fine, the intent is incomplete
    assert not runtime.current_intent.complete
    with pytest.raises(IncompleteIntentError):
        await runtime.commit()
    # an AI proposal that fails is never staged
    with pytest.raises(ValidationError, match="hi: expected integer, got str"):
        await runtime.propose("range")
    assert runtime.staged_proposal is None
    assert [e.phase for e in runtime.get_log()] == ["dispatch", "commit"]
    assert spy.errors[-1][0] == "propose"
    # a proposal valid on its own, but the merged payload breaks the model: refused at accept
    assert await runtime.propose("range") == {"hi": 1}
    with pytest.raises(ValidationError) as info:
        await runtime.accept_proposal("range")
    assert info.value.errors == [{"field": "<payload>", "expected": "a value its validator accepts "
                                  "(hi must not be below lo)", "got": "dict"}]
    assert runtime.current_intent.payload == {"lo": 5}
    await runtime.reject_proposal("range")
    await runtime.propose("range")
    await runtime.accept_proposal("range")
    await runtime.commit()
    assert runtime.get_state("range") == {"lo": 5, "hi": 9}


async def test_a_whole_payload_at_dispatch_is_checked_by_the_whole_model() -> None:
    class Range(BaseModel):
        lo: int
        hi: int
        step: int | None = None

        @model_validator(mode="after")
        def ordered(self) -> Range:
            if self.hi < self.lo:
                raise ValueError("hi must not be below lo")
            return self

    contract = recorder({"lo": "number", "hi": "number", "step": "number?"})
    runtime = make_runtime(contract, schema={"put": Range})
    with pytest.raises(ValidationError, match="hi must not be below lo"):
        await runtime.execute("put", {"lo": 5, "hi": 1})
    assert runtime.get_state() == {} and runtime.get_log() == []
    await runtime.execute("put", {"lo": 1, "hi": 5, "step": None})
    assert runtime.get_state("last") == {"lo": 1, "hi": 5, "step": None}


async def test_an_invalid_guard_suggestion_is_not_staged() -> None:
    contract = clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number"}}},
        guards=[{"name": "small", "deny": lambda ctx: ctx.intent.payload["amount"] > 10,
                 "suggest": lambda ctx: {"amount": ctx.intent.payload["amount"] - 1000}}],
        transitions={"apply": {"effects": lambda ctx: {"count": ctx.intent.payload["amount"]}}},
    )

    class Payload(BaseModel):
        amount: int = Field(ge=0)

    spy = Spy()
    runtime = make_runtime(contract, spy=spy, schema={"increment": Payload})
    with pytest.raises(GuardDeniedError) as info:
        await runtime.execute("increment", {"amount": 50})
    assert info.value.suggestion is None and runtime.staged_proposal is None
    phase, error = spy.errors[-1]
    assert phase == "suggest" and isinstance(error, ValidationError)
    assert error.errors == [{"field": "amount", "expected": "a value >= 0", "got": "int"}]


async def test_a_guard_suggestion_that_fits_is_staged_validated() -> None:
    contract = clp.create_contract(
        intents={"increment": {"inputs": {"amount": "number"}}},
        guards=[{"name": "small", "deny": lambda ctx: ctx.intent.payload["amount"] > 10,
                 "suggest": lambda ctx: {"amount": "10"}}],
        transitions={"apply": {"effects": lambda ctx: {"count": ctx.intent.payload["amount"]}}},
    )
    runtime = make_runtime(contract, coerce=True)
    with pytest.raises(GuardDeniedError) as info:
        await runtime.execute("increment", {"amount": 50})
    assert info.value.suggestion == {"amount": 10}
    await runtime.accept_proposal("increment")
    await runtime.commit()
    assert runtime.get_state("count") == 10


async def test_aliases_name_payload_keys() -> None:
    class Payload(BaseModel):
        user_name: str = Field(alias="userName", min_length=2)

    runtime = make_runtime(recorder({"userName": "string"}), schema={"put": Payload})
    await runtime.execute("put", {"userName": "ada"})
    assert runtime.get_state("last") == {"userName": "ada"}
    with pytest.raises(ValidationError) as info:
        await runtime.execute("put", {"userName": "a"})
    assert info.value.errors == [{"field": "userName", "expected": "a string of at least 2 characters", "got": "str"}]


async def test_nested_models_unions_and_lists_report_dot_paths() -> None:
    class Address(BaseModel):
        street: str
        zip: str = Field(pattern=r"^\d{4}$")

    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        good: bool

    class Person(BaseModel):
        address: Address
        pet: Cat | Dog = Field(discriminator="kind")
        code: int | str
        scores: list[int] = []

    runtime = make_runtime(recorder({"address": "object", "pet": "object", "code": "any", "scores": "array?"}),
                           schema={"put": Person})
    with pytest.raises(ValidationError) as info:
        await runtime.dispatch("put", {"address": {"zip": "12"}, "pet": {"kind": "cat", "lives": "9"},
                                       "code": 1.5, "scores": [1, "2", 3]})
    assert info.value.errors == [
        {"field": "address.street", "expected": "a value", "got": "missing"},  # a value given is checked whole
        {"field": "address.zip", "expected": r"a string matching ^\d{4}$", "got": "str"},
        {"field": "pet.lives", "expected": "integer", "got": "str"},
        {"field": "code", "expected": "integer or string", "got": "float"},
        {"field": "scores.1", "expected": "integer", "got": "str"},
    ]
    with pytest.raises(ValidationError) as info:
        await runtime.dispatch("put", {"pet": {"kind": "hamster"}})
    assert info.value.errors == [{"field": "pet", "expected": "one of the tags 'cat', 'dog' in 'kind'", "got": "dict"}]
    await runtime.dispatch("put", {"code": 1})  # partial: the fields absent are not required yet
    with pytest.raises(ValidationError, match="pet: expected a value, got missing"):
        await runtime.validator.validate_payload("put", {"code": 1}, complete=True)
    await runtime.execute("put", {"address": {"street": "Main", "zip": "1234"},
                                  "pet": {"kind": "dog", "good": True}, "code": "x"})
    assert runtime.get_state("last") == {"address": {"street": "Main", "zip": "1234"},
                                          "pet": {"kind": "dog", "good": True}, "code": "x"}


async def test_a_field_the_model_requires_but_the_contract_does_not_must_be_filled() -> None:
    class Payload(BaseModel):
        amount: int

    contract = clp.create_contract(
        intents={"put": {"inputs": {"amount": "number?", "note": "string?"}}},
        transitions={"store": {"effects": lambda ctx: {"last": dict(ctx.intent.payload)}}},
    )
    runtime = make_runtime(contract, schema={"put": Payload})
    with pytest.raises(ValidationError, match="amount: expected a value, got NoneType"):
        await runtime.dispatch("put", {"amount": None, "note": "hi"})  # complete for the contract
    assert runtime.current_intent is None


async def test_validators_that_raise_something_else_become_validation_errors() -> None:
    class Payload(BaseModel):
        amount: int

        @field_validator("amount")
        @classmethod
        def boom(cls, value: int) -> int:
            raise TypeError(f"secret {value}")

    runtime = make_runtime(counter(), schema={"increment": Payload})
    with pytest.raises(ValidationError) as info:
        await runtime.dispatch("increment", {"amount": 123456})
    assert info.value.errors == [{"field": "<payload>", "expected": "a value the validators can check "
                                  "(TypeError raised)", "got": "dict"}]
    assert "123456" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


# -- configuration errors --------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"schema": {"nope": IncrementPayload}}, "names intent 'nope', which the contract does not declare"),
    ({"schema": {"increment": dict}}, r"validation\['schema'\]\['increment'\] must be a pydantic model"),
    ({"schema": ["increment"]}, "must map intent names"),
    ({"state": {"count": "number"}}, r"validation\['state'\] must be a pydantic model"),
])
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_runtime(modelled_counter(), **options)


def test_a_model_requiring_an_undeclared_input_is_refused() -> None:
    class Payload(BaseModel):
        amount: int
        currency: str

    with pytest.raises(ConfigError, match=r"requires \['currency'\], which intent 'increment' does not declare"):
        make_runtime(modelled_counter(), schema={"increment": Payload})


def test_only_plain_string_aliases_can_name_payload_keys() -> None:
    class Payload(BaseModel):
        amount: int = Field(validation_alias=AliasChoices("amount", "qty"))

    with pytest.raises(ConfigError, match="field 'amount' of Payload has a AliasChoices alias"):
        make_runtime(modelled_counter(), schema={"increment": Payload})


def test_unknown_intents_raise() -> None:
    validator = clp_pydantic.create_validator(counter(), {})
    with pytest.raises(UnknownIntentError):
        validator.validate_payload("nope", {}, complete=False)
    with pytest.raises(UnknownIntentError):
        validator.intent_schema("nope")


# -- state -----------------------------------------------------------------------------------
async def test_the_state_schema_is_checked_at_commit_and_a_bad_result_changes_nothing() -> None:
    contract = clp.create_contract(
        intents={"rename": {"inputs": {"name": "any"}}},
        state={"count": "number", "user": {"profile": {"name": "string", "born": "date?"}}},
        transitions={"apply": {"effects": lambda ctx: {"user.profile.name": ctx.intent.payload["name"],
                                                       "count": (ctx.state.get("count") or 0) + 1}}},
    )
    runtime = make_runtime(contract, initial_state={"other": object.__name__})
    await runtime.execute("rename", {"name": "Ada"})
    before = runtime.get_state()
    with pytest.raises(ValidationError) as info:
        await runtime.execute("rename", {"name": 42})
    assert info.value.errors == [{"field": "user.profile.name", "expected": "string", "got": "int"}]
    assert str(info.value) == "Invalid state: user.profile.name: expected string, got int"
    assert runtime.get_state() == before
    entry = runtime.get_log()[-1]
    assert entry.error and not entry.transition_result.permitted and entry.state_diff == ()


async def test_a_state_model_is_checked_at_commit() -> None:
    runtime = make_runtime(modelled_counter(), schema={"increment": IncrementPayload}, state=AppState)
    await runtime.execute("increment", {"amount": 8})
    with pytest.raises(ValidationError, match="count: expected a value <= 10, got int"):
        await runtime.execute("increment", {"amount": 5})
    assert runtime.get_state("count") == 8


def test_checks_state_only_when_there_is_something_to_check() -> None:
    bare = clp.create_contract(intents={"a": {"inputs": {}}})
    assert clp_pydantic.create_validator(bare, {}).checks_state is False
    assert clp_pydantic.create_validator(bare, {"state": AppState}).checks_state is True
    assert clp_pydantic.create_validator(counter(), {}).checks_state is True


def test_state_validation_takes_a_state_view_without_copying_and_ignores_undeclared_keys() -> None:
    validator = clp_pydantic.create_validator(counter(), {})
    validator.validate_state(clp.StateView({"count": 1, "huge": list(range(10))}))
    validator.validate_state({"count": None})  # unset / not yet written
    validator.validate_state({})
    with pytest.raises(ValidationError, match="count: expected number, got str"):
        validator.validate_state(clp.StateView({"count": "1"}))


# -- lenient ---------------------------------------------------------------------------------
async def test_lenient_records_failures_on_the_log_and_in_on_error_and_goes_on() -> None:
    spy = Spy()
    contract = recorder({"amount": "number"}, state={"last": {"amount": "number"}})
    runtime = make_runtime(contract, spy=spy, strict=False)
    await runtime.dispatch("put", {"amount": "5"})
    entry = runtime.get_log()[-1]
    assert entry.validation_errors == ({"field": "amount", "expected": "number", "got": "str"},)
    assert runtime.current_intent.payload == {"amount": "5"}  # as 0.1 would: unchanged
    assert [(p, type(e).__name__) for p, e in spy.errors] == [("dispatch", "ValidationError")]
    await runtime.commit()  # the state breaks its schema: recorded, committed anyway
    assert runtime.get_state("last") == {"amount": "5"}
    assert runtime.get_log()[-1].validation_errors == (
        {"field": "last.amount", "expected": "number", "got": "str"},)
    assert spy.errors[-1][0] == "commit"


# -- secrets -----------------------------------------------------------------------------------
async def test_errors_never_quote_values() -> None:
    secret = "hunter2-TOKEN"

    class Login(BaseModel):
        user: str
        password: str = Field(min_length=20)
        pin: int

    contract = recorder({"user": "string", "password": "string", "pin": "number", "extra": "number?"})
    spy = Spy()
    for options in ({}, {"schema": {"put": Login}}):
        runtime = make_runtime(contract, spy=spy, **options)
        with pytest.raises(ValidationError) as info:
            await runtime.execute("put", {"user": "ada", "password": secret, "pin": secret, "extra": secret})
        text = str(info.value) + repr(info.value) + repr(info.value.errors)
        assert secret not in text
        assert info.value.__cause__ is None and info.value.__context__ is None
    lenient = make_runtime(contract, spy=spy, strict=False, schema={"put": Login})
    await lenient.dispatch("put", {"pin": secret})
    assert secret not in repr(lenient.get_log()[-1].validation_errors)
    assert all(secret not in str(error) for _, error in spy.errors)


# -- JSON Schema -----------------------------------------------------------------------------
def test_intent_schema_from_type_strings() -> None:
    contract = clp.create_contract(intents={"remind": {"inputs": {"text": "string", "on": "date?"},
                                                       "description": "Set a reminder"}})
    runtime = make_runtime(contract)
    assert runtime.intent_schema("remind") == {
        "title": "remind", "type": "object", "description": "Set a reminder",
        "properties": {"text": {"type": "string"},
                       "on": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}},
        "required": ["text"], "additionalProperties": False,
    }
    with pytest.raises(UnknownIntentError):
        runtime.intent_schema("nope")


def test_intent_schema_from_a_model() -> None:
    runtime = make_runtime(modelled_counter(), schema={"increment": IncrementPayload})
    schema = runtime.intent_schema("increment")
    assert schema["title"] == "IncrementPayload"
    assert schema["properties"]["amount"] == {"title": "Amount", "type": "integer", "minimum": 0, "maximum": 100}
    assert schema["properties"]["by"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["required"] == ["amount"] and schema["additionalProperties"] is False
    schema["properties"].clear()  # a copy: the next call is unaffected
    assert "amount" in runtime.intent_schema("increment")["properties"]


async def test_errors_are_clp_errors() -> None:
    runtime = make_runtime(counter())
    with pytest.raises(ClpError):
        await runtime.dispatch("increment", {"amount": "x"})
