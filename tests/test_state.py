"""clp_core.state: paths, views, copies and in-place writes with undo."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clp_core import ops
from clp_core.errors import PathError, StateValueError
from clp_core.state import (
    ListView,
    StateView,
    Writer,
    copy_value,
    lookup,
    parse_path,
    touches,
)


def apply(state: dict, result: dict) -> Writer:
    writer = Writer(state)
    writer.apply_effects(result)
    return writer


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "a.__class__", "__proto__", "x.__dict__.y"])
def test_bad_paths_are_refused(text: str) -> None:
    with pytest.raises(PathError):
        parse_path(text)


def test_parse_path() -> None:
    assert parse_path("user.profile.name") == ("user", "profile", "name")
    assert parse_path("items.0.done") == ("items", "0", "done")


def test_dot_path_creates_containers() -> None:
    state: dict = {}
    writer = apply(state, {"user.profile.name": "Ada"})
    assert state == {"user": {"profile": {"name": "Ada"}}}
    assert [c.path for c in writer.changes] == ["user.profile.name"]


def test_nested_dicts_merge_deeply() -> None:
    state = {"user": {"profile": {"name": "Ada", "email": "a@x"}, "settings": {"n": True}}}
    apply(state, {"user": {"profile": {"name": "Grace"}}})
    assert state == {"user": {"profile": {"name": "Grace", "email": "a@x"}, "settings": {"n": True}}}


def test_replace_does_not_merge() -> None:
    state = {"user": {"profile": {"name": "Ada", "email": "a@x"}}}
    apply(state, {"user.profile": ops.replace({"name": "Grace"})})
    assert state == {"user": {"profile": {"name": "Grace"}}}


def test_array_index_paths() -> None:
    state = {"items": [{"done": False}, {"done": False}]}
    writer = apply(state, {"items.1.done": True})
    assert state == {"items": [{"done": False}, {"done": True}]}
    assert writer.changes[0].path == "items.1.done"


def test_push_splice_filter_unset() -> None:
    state: dict = {"tags": ["a", "b", "c", "d"], "gone": 1}
    apply(state, {"new": ops.push(1, 2)})  # push to a missing path creates the array
    assert state["new"] == [1, 2]
    apply(state, {"tags": ops.splice(1, 2, "x")})
    assert state["tags"] == ["a", "x", "d"]
    apply(state, {"tags": ops.filter(lambda t: t != "x")})
    assert state["tags"] == ["a", "d"]
    apply(state, {"gone": ops.unset(), "never.there": ops.unset()})
    assert "gone" not in state and "never" not in state
    apply(state, {"tags": ops.splice(-1, 1)})
    assert state["tags"] == ["a"]


@pytest.mark.parametrize(
    ("state", "result", "problem"),
    [
        ({"a": 5}, {"a.b": 1}, "crosses 'a'"),
        ({"items": [1]}, {"items.3": 2}, "out of range"),
        ({"items": [1]}, {"items.x": 2}, "not an array index"),
        ({"n": 1}, {"n": ops.push(1)}, "not an array"),
        ({}, {"a.__class__": 1}, "reserved"),
    ],
)
def test_bad_writes_change_nothing(state: dict, result: dict, problem: str) -> None:
    before = copy.deepcopy(state)
    writer = Writer(state)
    with pytest.raises(PathError, match=problem):
        writer.apply_effects({"first.write": 1, **result})
    writer.rollback()
    assert state == before


@pytest.mark.parametrize("value", [object(), {1: "int key"}, {"a.b": 1}, {"__class__": 1}, float("nan"), {1, 2}])
def test_unstorable_values_are_refused(value: object) -> None:
    with pytest.raises(StateValueError):
        copy_value({"v": value})


def test_copy_value_owns_the_copy() -> None:
    source = {"list": [1, {"x": 2}], "when": dt.date(2026, 1, 2)}
    copied = copy_value(source)
    source["list"][1]["x"] = 99
    assert copied == {"list": [1, {"x": 2}], "when": dt.date(2026, 1, 2)}


def test_views_are_read_only_and_live() -> None:
    data = {"user": {"tags": ["a"]}}
    state = StateView(data)
    assert isinstance(state["user"], StateView)
    assert isinstance(state["user"]["tags"], ListView)
    assert state["user"]["tags"] == ["a"]
    assert state == {"user": {"tags": ["a"]}}
    with pytest.raises(TypeError):
        state["user"]["x"] = 1  # type: ignore[index]
    assert not hasattr(state["user"]["tags"], "append")
    assert state.path("user.tags.0") == "a"
    copy_ = state.to_dict()
    copy_["user"]["tags"].append("b")
    assert data == {"user": {"tags": ["a"]}}


def test_writing_a_view_stores_a_copy() -> None:
    data = {"a": {"b": [1]}}
    apply(data, {"c": StateView(data)["a"]})
    data["a"]["b"].append(2)
    assert data["c"] == {"b": [1]}


def test_touches_at_under_and_above() -> None:
    changed = [("user", "profile", "name")]
    assert touches(changed, ("user", "profile"))  # under
    assert touches(changed, ("user", "profile", "name"))  # at
    assert touches(changed, ("user", "profile", "name", "first"))  # above
    assert not touches(changed, ("user", "settings"))
    assert not touches(changed, ("count",))


def test_lookup_missing() -> None:
    assert lookup({"a": [1]}, ("a", "5")) is None
    assert lookup({"a": 1}, ("a", "b")) is None


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
keys = st.sampled_from(["a", "b", "c", "0", "1"])
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=8,
)
paths = st.lists(keys, min_size=1, max_size=3).map(".".join)
op_values = st.one_of(
    json_value,
    st.builds(ops.push, json_leaf),
    st.builds(lambda s, d, x: ops.splice(s, d, x), st.integers(-3, 3), st.integers(0, 2), json_leaf),
    st.just(ops.unset()),
)


@settings(max_examples=300, deadline=None)
@given(start=st.dictionaries(keys, json_value, max_size=4), writes=st.lists(st.tuples(paths, op_values), max_size=5))
def test_rollback_restores_exactly_and_replay_reproduces(start: dict, writes: list) -> None:
    """Any sequence of writes either applies (and replays to the same state) or rolls back exactly."""
    state = copy.deepcopy(start)
    writer = Writer(state)
    try:
        for path, value in writes:
            writer.apply_effects({path: value})
    except PathError:
        writer.rollback()
        assert state == start
        return
    changes = list(writer.changes)
    replayed = copy.deepcopy(start)
    replayer = Writer(replayed)
    for change in changes:
        replayer.apply_change(change)
    assert replayed == state
    writer.rollback()
    assert state == start
