"""The shortcuts of a commit's usual path (flat payloads, scalar effects at top-level keys,
log entries built without converters, timestamps formatted once a second) do exactly what
the general path does."""

from __future__ import annotations

import copy
import datetime as dt
import math
import pickle
from typing import Any

import attrs
import pytest

import clp_core as clp
from clp_core import errors, log
from clp_core.lifecycle.intake import Intake
from clp_core.log import FrozenDict, LogEntry, TransitionResult, commit_entry, dispatch_entry, trusted_intent
from clp_core.state import Writer, parse_path
from clp_core.state.writer import Change

CONTRACT = clp.create_contract(
    intents={"order": {"inputs": {"sku": "string", "qty": "integer?", "price": "number?", "gift": "boolean?",
                                  "note": "any?", "when": "date?", "tags": "array?"}}},
    transitions={"place": {"effects": lambda ctx: {"placed": True}}},
)


def _slow(intake: Intake, name: str, payload: Any, intent_id: str | None = None) -> Any:
    """What Intake.intent does without its shortcut (a payload that is not a dict takes it)."""

    class Payload(dict):  # type: ignore[type-arg]
        pass

    return intake.intent(name, Payload(payload) if isinstance(payload, dict) else payload, intent_id)


PAYLOADS = [
    {"sku": "A1"},
    {"sku": "A1", "qty": 2, "gift": False, "note": "x"},
    {"sku": "A1", "qty": None},
    {},
    {"qty": 3},
    {"sku": "A1", "price": 2.5},
    {"sku": "A1", "price": 3},
    {"sku": "A1", "note": 1.5},
    {"sku": "A1", "note": True},
    {"sku": "A1", "when": "2026-01-02"},
    {"sku": "A1", "tags": ["a", {"b": 1}]},
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_flat_payload_makes_the_intent_the_general_path_makes(payload: dict[str, Any]) -> None:
    intake = Intake(CONTRACT, None, True)
    fast, slow = intake.intent("order", payload), _slow(intake, "order", payload)
    assert attrs.evolve(fast, id=slow.id) == slow
    assert type(fast.payload) is FrozenDict and fast.payload is not payload
    assert intake.intent("order", payload, "my-id").id == "my-id"


@pytest.mark.parametrize("payload", [
    {"sku": 1}, {"sku": "A1", "qty": True}, {"sku": "A1", "qty": 1.5}, {"sku": "A1", "price": True},
    {"sku": "A1", "price": math.inf}, {"sku": "A1", "gift": 1}, {"sku": "A1", "unknown": 1}, {1: "x"},
    {"sku": "A1", "when": "not a date"},
])
def test_a_bad_flat_payload_is_refused_as_before(payload: dict[Any, Any]) -> None:
    intake = Intake(CONTRACT, None, True)
    with pytest.raises(errors.ValidationError) as fast:
        intake.intent("order", payload)
    with pytest.raises(errors.ValidationError) as slow:
        _slow(intake, "order", payload)
    assert fast.value.errors == slow.value.errors and fast.value.where == slow.value.where


@pytest.mark.parametrize("intent_id", ["", "x" * 129, 12])
def test_a_bad_intent_id_is_refused_with_a_flat_payload_too(intent_id: Any) -> None:
    with pytest.raises(errors.ValidationError):
        Intake(CONTRACT, None, True).intent("order", {"sku": "A1"}, intent_id)


def test_an_unknown_intent_is_refused_and_not_remembered() -> None:
    intake = Intake(CONTRACT, None, True)
    for _ in range(3):
        with pytest.raises(errors.UnknownIntentError):
            intake.intent("nope", {"sku": "A1"})
    assert "nope" not in intake._scalars


def _intent() -> clp.Intent:
    return trusted_intent("order", FrozenDict({"sku": "A1"}), True)


def _made(kind: str) -> tuple[LogEntry, LogEntry]:
    """An entry of ``kind`` made the hot path's way, and the same made by ``LogEntry(...)``."""
    intent = _intent()
    if kind == "dispatch":
        entry = dispatch_entry(intent)
        return entry, LogEntry(intent_name="order", intent_payload={"sku": "A1"}, phase="dispatch",
                               timestamp=entry.timestamp, intent_id=intent.id)
    if kind in ("deliver", "deliver-failed"):
        error = "TimeoutError: slow" if kind == "deliver-failed" else None
        detail = {"message_id": "m1", "topic": "placed", "attempts": 2}
        entry = log.delivery_entry(intent.id, detail, error)
        return entry, LogEntry(intent_name=None, intent_payload=None, phase="deliver", timestamp=entry.timestamp,
                               intent_id=intent.id, detail=detail, error=error)
    outcomes, change = (log.GuardOutcome("g", False),), Change("set", "placed", True)
    entry = commit_entry(intent, outcomes, "place", (change,), "k")
    return entry, LogEntry(intent_name="order", intent_payload={"sku": "A1"}, phase="commit",
                           timestamp=entry.timestamp, guard_outcomes=outcomes, transition_attempted="place",
                           transition_result=TransitionResult("place", True), state_diff=(change,),
                           idempotency_key="k", proposal_source="user", intent_id=intent.id)


def test_trusted_intents_are_what_the_class_makes() -> None:
    intent = _intent()
    assert intent == clp.Intent("order", {"sku": "A1"}, True, id=intent.id)
    assert trusted_intent("order", FrozenDict({}), False, "given").id == "given"


@pytest.mark.parametrize("kind", ["dispatch", "commit", "deliver", "deliver-failed"])
@pytest.mark.parametrize("first", [None, *(a.name for a in attrs.fields(LogEntry))])
def test_hot_path_entries_are_what_the_class_makes(kind: str, first: str | None) -> None:
    """Whichever field is read first (the ones left at their defaults are set then)."""
    entry, expected = _made(kind)
    if first is not None:
        assert getattr(entry, first) == getattr(expected, first)
    assert entry == expected and repr(entry) == repr(expected)


@pytest.mark.parametrize("kind", ["dispatch", "commit", "deliver", "deliver-failed"])
def test_hot_path_entries_copy_pickle_evolve_and_convert_as_others(kind: str) -> None:
    for make in (lambda e: e, copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e)),
                 lambda e: attrs.evolve(e), lambda e: log.entry_from_dict(log.entry_to_dict(e))):
        entry, expected = _made(kind)
        assert make(entry) == expected
        entry, expected = _made(kind)
        assert entry.to_dict() == expected.to_dict()
    entry, _ = _made(kind)
    assert attrs.asdict(attrs.evolve(entry, replay=True))["replay"] is True
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        entry.error = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="'LogEntry' object has no attribute 'nope'"):
        entry.nope  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(entry, "nope") and getattr(entry, "nope", 1) == 1


@pytest.mark.parametrize("ns", [0, 1_700_000_000_000_000_000, 1_700_000_000_000_001_999, 1_700_000_000_999_999_999,
                                1_700_000_001_500_000_000, 4_102_444_799_123_456_000])
def test_timestamps_read_as_datetime_isoformat_writes_them(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(log, "_time_ns", lambda: ns)
    expected = dt.datetime.fromtimestamp(ns // 1000 / 1_000_000, dt.UTC)
    assert log.now() == expected.isoformat()
    assert dt.datetime.fromisoformat(log.now()) == expected


def test_timestamps_stay_right_when_the_clock_goes_back_or_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    for ns in (1_700_000_005_000_000_000, 1_700_000_004_999_999_000, 1_700_000_004_000_001_000,
               1_700_000_005_000_000_000, 0, 999_000, 1_000_000_000):
        monkeypatch.setattr(log, "_time_ns", lambda ns=ns: ns)
        assert log.now() == dt.datetime.fromtimestamp(ns // 1000 / 1_000_000, dt.UTC).isoformat()


def _general(root: dict[str, Any], effects: dict[str, Any]) -> Writer:
    writer = Writer(root)
    for key, value in effects.items():
        writer._apply(parse_path(key), value)
    return writer


@pytest.mark.parametrize("effects", [
    {"count": 1}, {"count": 0}, {"count": 0.0}, {"count": False}, {"new": "x"}, {"count": None}, {"name": "a"},
    {"count": 2, "new": 1.5, "flag": True}, {"a.b": 1}, {"nested": {"x": 1}}, {"when": dt.date(2026, 1, 1)},
])
def test_scalar_effects_at_top_level_keys_write_what_the_general_path_writes(effects: dict[str, Any]) -> None:
    start = {"count": 0, "name": "a", "nested": {"x": 0}}
    for _ in range(2):  # the first write of a key takes the general path, the next ones the shortcut
        fast_state, slow_state = {**start, "nested": {"x": 0}}, {**start, "nested": {"x": 0}}
        fast = Writer(fast_state)
        fast.apply_effects(effects)
        slow = _general(slow_state, effects)
        assert fast_state == slow_state and fast.changes == slow.changes and fast._undo == slow._undo
        assert [repr(c) for c in fast.changes] == [repr(c) for c in slow.changes]
        assert [attrs.asdict(c) for c in fast.changes] == [attrs.asdict(c) for c in slow.changes]
        fast.rollback()
        assert fast_state == start


def test_a_commit_context_is_what_the_classes_make() -> None:
    from clp_core.lifecycle.context import Context, context
    from clp_core.state import StateView

    intent, state = _intent(), {"count": 1}
    made = context(intent, state)
    assert made == Context(intent, StateView(state)) and repr(made) == repr(Context(intent, StateView(state)))
    assert type(made.state) is StateView and made.state._data is state and made.state["count"] == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.intent = intent  # type: ignore[misc]


@pytest.mark.parametrize(("effects", "error"), [
    ({"count": math.nan}, errors.StateValueError), ({"__x__": 1}, errors.PathError), ({"": 1}, errors.PathError),
    ({"a..b": 1}, errors.PathError),
])
def test_bad_scalar_effects_are_refused_as_before(effects: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Writer({"count": 0}).apply_effects(effects)
