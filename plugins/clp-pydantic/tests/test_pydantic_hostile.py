"""Hostile input: random and adversarial payloads, proposals and suggestions never crash the
runtime (only ClpError subclasses come out) and never change state unless valid."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import clp_pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

import clp_core as clp
from clp_core.errors import ClpError, ValidationError

ISOLATED = {"disable": ["*"], "enable": ["clp-pydantic", "clp-storage"]}

INPUTS = {"name": "string", "age": "integer?", "score": "number?", "ok": "boolean?", "on": "date?",
          "tags": "array?", "meta": "object?", "blob": "any?"}
STATE = {"count": "integer", "last": {"name": "string", "age": "integer?", "score": "number?"}}


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    age: int | None = Field(default=None, ge=0, le=150)
    score: float | None = None
    tags: list[str] | None = None
    meta: dict[str, Any] | None = None


class AppState(BaseModel):
    count: int = Field(default=0, ge=0)
    last: dict[str, Any] | None = None


def effects(ctx: Any) -> dict[str, Any]:
    p = ctx.intent.payload
    return {"count": (ctx.state.get("count") or 0) + 1,
            "last": {"name": p.get("name"), "age": p.get("age"), "score": p.get("score")}}


def contract() -> clp.Contract:
    return clp.create_contract(
        intents={"put": {"inputs": INPUTS}},
        state=STATE,
        guards=[{"name": "adult", "deny": lambda ctx: (ctx.intent.payload.get("age") or 0) > 200,
                 "suggest": lambda ctx: ctx.intent.payload.get("blob")}],  # hostile suggestions too
        transitions={"store": {"when": lambda ctx: ctx.intent.complete, "effects": effects}},
    )


VARIANTS: dict[str, dict[str, Any]] = {
    "type strings": {"strict": True},
    "coerce": {"strict": True, "coerce": True},
    "models": {"strict": True, "schema": {"put": Person}, "state": AppState},
    "models, coerce": {"strict": True, "schema": {"put": Person}, "state": AppState, "coerce": True},
}

HOSTILE_KEYS = st.sampled_from(["__class__", "__proto__", "constructor", "__dict__", "__init__", "prototype",
                                "", ".", "a.b", "\x00", "name", "__", "💥"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
    st.text(max_size=20), st.text(min_size=1, max_size=3).map(lambda s: s * 20_000),  # huge strings
    st.sampled_from(["5", "1.5", "true", "2024-02-29", "2024-13-45", "NaN", "Infinity", "0x10", "1e400"]),
    st.binary(max_size=8), st.dates(), st.datetimes(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.tuples(children, children),
        st.dictionaries(st.one_of(HOSTILE_KEYS, st.text(max_size=5)), children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"__proto__": value} if i % 2 else [value]
    return value


DEEP = st.builds(nested, st.sampled_from([50, 99, 100, 101, 150, 3000]), SCALARS)
PAYLOADS = st.one_of(
    st.dictionaries(st.sampled_from(sorted(INPUTS)), st.one_of(VALUES, DEEP), max_size=len(INPUTS)),
    st.dictionaries(st.one_of(HOSTILE_KEYS, st.sampled_from(sorted(INPUTS))), VALUES, max_size=5),
    st.fixed_dictionaries({"name": st.text(min_size=1, max_size=10)},
                          optional={"age": st.integers(-5, 300), "score": st.floats(),
                                    "tags": st.lists(st.text(max_size=3), max_size=3),
                                    "blob": st.one_of(VALUES, st.dictionaries(HOSTILE_KEYS, VALUES))}),
    VALUES,  # not even a mapping
)


class Hostile:
    """A value whose every method raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("gotcha")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("gotcha")

    __hash__ = None  # type: ignore[assignment]


def check(state: dict[str, Any], options: dict[str, Any]) -> None:
    """The state fits the validator, checked strictly even for coercing runtimes: a commit
    never left it broken."""
    clp_pydantic.create_validator(contract(), {**options, "coerce": False}).validate_state(state)


async def scenario(options: dict[str, Any], payload: Any, proposal: Any) -> None:
    runtime = clp.create_runtime(contract(), lambda intent: proposal, validation=options, config=ISOLATED,
                                 initial_state={"count": 0})
    before = runtime.get_state()
    try:
        await runtime.execute("put", payload)
    except ClpError:
        assert runtime.get_state() == before
    else:
        check(runtime.get_state(), options)
    # a dispatch, then a proposal: refused (nothing staged) or staged validated
    before = runtime.get_state()
    try:
        await runtime.dispatch("put", {"age": 1})
        staged = await runtime.propose("put")
    except ClpError:
        assert runtime.staged_proposal is None
        return
    assert runtime.staged_proposal is not None and staged is not None
    try:
        await runtime.accept_proposal("put")
        await runtime.commit()
    except ClpError:
        assert runtime.get_state() == before
    else:
        check(runtime.get_state(), options)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(VARIANTS)), payload=PAYLOADS, proposal=PAYLOADS)
def test_hostile_payloads_and_proposals_never_crash_or_break_state(variant: str, payload: Any, proposal: Any) -> None:
    asyncio.run(scenario(VARIANTS[variant], payload, proposal))


@settings(max_examples=100, deadline=None)
@given(variant=st.sampled_from(sorted(VARIANTS)), values=st.dictionaries(st.sampled_from(sorted(INPUTS)), VALUES),
       complete=st.booleans())
def test_the_validator_only_ever_raises_validation_errors(variant: str, values: dict[str, Any],
                                                          complete: bool) -> None:
    validator = clp_pydantic.create_validator(contract(), VARIANTS[variant])
    try:
        out = validator.validate_payload("put", values, complete=complete)
    except ValidationError as exc:
        for error in exc.errors:
            assert set(error) == {"field", "expected", "got"}
            assert all(isinstance(v, str) for v in error.values())
    else:
        assert set(out) <= set(INPUTS)
        validator.validate_payload("put", out, complete=complete)  # what it returns passes again


async def test_values_whose_methods_raise_are_refused() -> None:
    for options in VARIANTS.values():
        runtime = clp.create_runtime(contract(), validation=options, config=ISOLATED)
        for payload in ({"name": Hostile()}, {"name": "a", "blob": Hostile()}, {"name": "a", "meta": {"k": Hostile()}},
                        {"name": "a", "tags": [Hostile()]}):
            try:
                await runtime.execute("put", payload)
            except ClpError:
                pass
        check(runtime.get_state(), options)  # only "a" with an `any` blob could commit
        assert runtime.get_state("last.name") in (None, "a")


def test_huge_and_non_finite_numbers() -> None:
    validator = clp_pydantic.create_validator(contract(), {})
    for value in (math.nan, math.inf, -math.inf):
        try:
            validator.validate_payload("put", {"score": value}, complete=False)
        except ValidationError as exc:
            assert exc.errors == [{"field": "score", "expected": "number?", "got": "non-finite float"}]
        else:
            raise AssertionError("a non-finite float passed as a number")
    assert validator.validate_payload("put", {"age": 10**400}, complete=False) == {"age": 10**400}
    coercing = clp_pydantic.create_validator(contract(), {"coerce": True})
    for text in ("1" * 5000, "1e400", "nan"):
        try:
            coercing.validate_payload("put", {"age": text, "score": text}, complete=False)
        except ValidationError:
            pass


async def lenient_scenario(options: dict[str, Any], payload: Any) -> None:
    runtime = clp.create_runtime(contract(), validation=options, config=ISOLATED)
    try:
        await runtime.dispatch("put", payload)
    except ClpError:
        return
    entry = runtime.get_log()[-1]
    try:
        clp_pydantic.create_validator(contract(), {**options, "strict": True}).validate_payload(
            "put", payload, complete=False)
    except ValidationError as exc:  # recorded on the entry, and the dispatch went on
        assert list(entry.validation_errors) == exc.errors
    else:
        assert entry.validation_errors == ()
    try:
        await runtime.commit()
    except ClpError:
        pass


# Lenient runtimes hand the *unvalidated* values back to the core (as 0.1 would), whose copy is
# recursive: so this property is checked without the deep and cyclic values (refused by the
# strict validator above, but a RecursionError in clp-core's lenient path).
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(VARIANTS)),
       payload=st.dictionaries(st.sampled_from(sorted(INPUTS)), VALUES, max_size=len(INPUTS)))
def test_lenient_runtimes_record_and_go_on_with_only_clp_errors(variant: str, payload: Any) -> None:
    asyncio.run(lenient_scenario({**VARIANTS[variant], "strict": False}, payload))
