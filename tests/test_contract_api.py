"""The decorator API (``clp.Contract()``), ``on=`` scoping, ``compiled()`` and ``clp.path``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, TypedDict

import pytest

import clp_core as clp
from clp_core import errors
from clp_core.contract import Contract, ContractBuilder, compiled, inputs_from_class


def _dict_contract() -> clp.Contract:
    return clp.create_contract(
        intents={
            "open_ticket": {"inputs": {"title": "string", "priority": "string?"}},
            "assign": {"inputs": {"ticket": "integer", "agent": "string?"}},
        },
        state={"tickets": "array"},
        guards=[
            {"name": "empty_title", "deny": lambda ctx: not ctx.intent.payload["title"], "on": "open_ticket"},
            {"name": "unknown_agent", "deny": lambda ctx: False, "on": ["assign"],
             "suggest": lambda ctx: {"agent": "alice"}},
            {"name": "everywhere", "deny": lambda ctx: False},
        ],
        transitions={
            "open_ticket": {"effects": lambda ctx: {}, "on": "open_ticket", "timeout": 2.0},
            "assign": {"effects": lambda ctx: {}, "on": ("assign",)},
            "audit": {"effects": lambda ctx: {}, "on": ["open_ticket", "assign"]},
        },
    )


def _decorated() -> ContractBuilder:
    contract = clp.Contract(state={"tickets": "array"})

    @contract.intent("open_ticket")
    class OpenTicket:
        title: str
        priority: Literal["low", "normal", "high"] | None = None

    contract.intent("assign", inputs={"ticket": "integer", "agent": "string?"})

    @contract.guard(on="open_ticket")
    def empty_title(ctx: clp.Ctx[Any]) -> bool:
        return not ctx.intent.payload["title"]

    @contract.guard(on=["assign"], suggest=lambda ctx: {"agent": "alice"})
    def unknown_agent(ctx: Any) -> bool:
        return False

    @contract.guard
    def everywhere(ctx: Any) -> bool:
        return False

    @contract.transition(on="open_ticket", timeout=2.0)
    def open_ticket(ctx: Any) -> dict[str, Any]:
        return {}

    @contract.transition(on=("assign",))
    def assign(ctx: Any) -> dict[str, Any]:
        return {}

    @contract.transition(on=["open_ticket", "assign"])
    def audit(ctx: Any) -> dict[str, Any]:
        return {}

    return contract


def _shape(contract: clp.Contract) -> Any:
    return (
        {n: (dict(i.inputs), i.required) for n, i in contract.intents.items()},
        dict(contract.state),
        [(g.name, g.on, g.suggest is not None) for g in contract.guards],
        [(n, t.name, t.on, t.timeout) for n, t in contract.transitions.items()],
        {n: [g.name for g in contract.guards_for(n)] for n in contract.intents},
        {n: list(contract.transitions_for(n)) for n in contract.intents},
    )


def test_contract_without_arguments_is_a_builder_and_a_contract() -> None:
    builder = clp.Contract()
    assert isinstance(builder, ContractBuilder)
    assert isinstance(builder, clp.Contract)
    assert type(clp.create_contract(intents={})) is Contract  # unchanged


def test_decorators_and_dicts_compile_to_the_same_contract() -> None:
    built = compiled(_decorated())
    assert type(built) is Contract
    assert _shape(built) == _shape(_dict_contract())


def test_guards_for_and_transitions_for_follow_on() -> None:
    for contract in (_dict_contract(), compiled(_decorated())):
        assert [g.name for g in contract.guards_for("open_ticket")] == ["empty_title", "everywhere"]
        assert [g.name for g in contract.guards_for("assign")] == ["unknown_agent", "everywhere"]
        assert list(contract.transitions_for("open_ticket")) == ["open_ticket", "audit"]
        assert list(contract.transitions_for("assign")) == ["assign", "audit"]
        assert contract.guards_for("open_ticket") is contract.guards_for("open_ticket")  # precomputed
        assert contract.guards[0].on == frozenset({"open_ticket"})
        assert contract.guards[2].on is None


@pytest.mark.parametrize(
    ("on", "field"),
    [("nope", "guards[0].on"), (["assign", "nope"], "guards[0].on"), ([], "guards[0].on"), (3, "guards[0].on")],
)
def test_on_must_name_declared_intents_dict_form(on: Any, field: str) -> None:
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(intents={"assign": {}}, guards=[{"name": "g", "deny": bool, "on": on}])
    assert info.value.field == field
    with pytest.raises(errors.ContractError) as info:
        clp.create_contract(intents={"assign": {}}, transitions={"t": {"effects": dict, "on": on}})
    assert info.value.field == "transitions['t'].on"


def test_on_must_name_declared_intents_decorators() -> None:
    contract = clp.Contract()
    contract.intent("assign", inputs={})

    @contract.transition(on="asign")
    def assign(ctx: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(errors.ContractError) as info:
        compiled(contract)
    assert info.value.field == "transitions['assign'].on"
    assert "'asign'" in str(info.value)


def test_pydantic_model_inputs_and_model_recorded() -> None:
    pydantic = pytest.importorskip("pydantic")

    contract = clp.Contract()

    @contract.intent("open_ticket")
    class OpenTicket(pydantic.BaseModel):
        """Open a support ticket."""

        title: str
        priority: Literal["low", "normal", "high"] | None = None
        due: dt.date | None = None
        tags: list[str] = pydantic.Field(default_factory=list)
        count: int = pydantic.Field(default=1, alias="n")

    intent = compiled(contract).intents["open_ticket"]
    assert intent.definition.inputs == {"title": "string", "priority": "string?", "due": "date?",
                                        "tags": "array?", "n": "integer?"}
    assert intent.definition.model is OpenTicket
    assert intent.definition.description == "Open a support ticket."
    assert intent.required == ("title",)


def test_typed_dict_and_plain_class_inputs() -> None:
    class Total(TypedDict):
        a: float
        b: dict[str, int]

    class Partial(TypedDict, total=False):
        when: dt.datetime

    class Plain:
        flag: bool
        anything: Any
        maybe: str | None

    assert inputs_from_class(Total) == {"a": "number", "b": "object"}
    assert inputs_from_class(Partial) == {"when": "datetime?"}
    assert inputs_from_class(Plain) == {"flag": "boolean", "anything": "any?", "maybe": "string?"}


def test_builder_is_sealed_once_compiled() -> None:
    contract = clp.Contract()
    contract.intent("a", inputs={})
    compiled(contract)
    with pytest.raises(errors.ContractError, match="already compiled"):
        contract.intent("b", inputs={})
    with pytest.raises(errors.ContractError, match="already compiled"):
        contract.guard(lambda ctx: False)
    assert contract.intent("a") is compiled(contract).intents["a"]  # lookup, like Contract.intent
    assert contract.intent("b") is None


def test_duplicates_are_contract_errors() -> None:
    contract = clp.Contract()
    contract.intent("a", inputs={})
    with pytest.raises(errors.ContractError, match="twice"):
        contract.intent("a", inputs={})
    contract.guard(bool, name="g")
    contract.guard(bool, name="g")
    with pytest.raises(errors.ContractError, match="duplicate guard name"):
        compiled(contract)


def test_compiled_refuses_anything_else() -> None:
    with pytest.raises(errors.ConfigError, match=r"create_contract\(\) or clp.Contract\(\)"):
        compiled({"intents": {}})


def test_decorated_functions_are_returned_unchanged() -> None:
    contract = clp.Contract()

    def deny(ctx: Any) -> bool:
        return True

    assert contract.guard(on=None)(deny) is deny
    assert contract.transition(deny) is deny


async def test_a_builder_runs_in_todays_runtime() -> None:
    contract = clp.Contract(state={"count": "number"})

    @contract.intent("increment")
    class Increment:
        amount: int | None = None

    @contract.guard(suggest=lambda ctx: {"amount": 0})
    def no_negative(ctx: Any) -> bool:
        return (ctx.intent.payload.get("amount") or 0) < 0

    @contract.transition(on="increment")
    async def apply(ctx: Any) -> dict[str, Any]:
        return {"count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}

    runtime = clp.create_runtime(contract, initial_state={"count": 0})
    with pytest.raises(errors.UnknownIntentError):
        await runtime.dispatch("nope")
    await runtime.execute("increment", {"amount": 2})
    with pytest.raises(errors.GuardDeniedError):
        await runtime.execute("increment", {"amount": -1})
    assert runtime.get_state("count") == 2
    assert runtime.intent_schema("increment")["properties"]["amount"]
    assert contract.sealed


async def test_pydantic_model_is_used_by_clp_pydantic() -> None:
    pydantic = pytest.importorskip("pydantic")
    pytest.importorskip("clp_pydantic")
    contract = clp.Contract()

    @contract.intent("open_ticket")
    class OpenTicket(pydantic.BaseModel):
        title: str = pydantic.Field(min_length=3)

    @contract.transition
    def open_ticket(ctx: Any) -> dict[str, Any]:
        return {"title": ctx.intent.payload["title"]}

    runtime = clp.create_runtime(contract, validation={"strict": True})
    with pytest.raises(errors.ValidationError) as info:  # min_length is only in the model
        await runtime.dispatch("open_ticket", {"title": "ab"})
    assert info.value.errors[0]["field"] == "title"
    assert runtime.intent_schema("open_ticket")["properties"]["title"]["minLength"] == 3
    await runtime.execute("open_ticket", {"title": "abc"})
    assert runtime.get_state("title") == "abc"


def test_path_builds_dot_paths() -> None:
    assert clp.path("tickets", "T-1", "tags", 0) == "tickets.T-1.tags.0"
    assert clp.path("a") == "a"


@pytest.mark.parametrize(
    ("segments", "named"),
    [(("tickets", "a.b"), "'a.b'"), (("tickets", ""), "segment 1 is empty"), ((), "at least one"),
     (("x", -1), "negative"), (("x", True), "bool"), (("x", 1.5), "float"), (("__proto__",), "reserved")],
)
def test_path_refuses_bad_segments(segments: tuple[Any, ...], named: str) -> None:
    with pytest.raises(errors.PathError, match=named.replace(".", r"\.")):
        clp.path(*segments)


async def test_a_schema_model_in_validation_wins_over_the_declared_one() -> None:
    pydantic = pytest.importorskip("pydantic")
    pytest.importorskip("clp_pydantic")
    contract = clp.Contract()

    @contract.intent("open_ticket")
    class OpenTicket(pydantic.BaseModel):
        title: str = pydantic.Field(min_length=3)

    class Lenient(pydantic.BaseModel):
        title: str

    runtime = clp.create_runtime(contract, validation={"schema": {"open_ticket": Lenient}})
    await runtime.dispatch("open_ticket", {"title": "ab"})  # OpenTicket would refuse it
    assert "minLength" not in runtime.intent_schema("open_ticket")["properties"]["title"]
