"""One depth limit (MAX_DEPTH) at write time, canonical array indices, reads without recursion."""

from __future__ import annotations

import pytest

from clp_core import codec, ops
from clp_core.errors import ClpError, NestingError, PathError
from clp_core.state import MAX_COPY_DEPTH, MAX_DEPTH, Change, Writer, array_index, copy_value, lookup, parse_path, plain


def _path(n: int) -> str:
    return ".".join(f"k{i}" for i in range(n))


def _nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"n": value}
    return value


def test_paths_up_to_max_depth_are_fine() -> None:
    assert len(parse_path(_path(MAX_DEPTH))) == MAX_DEPTH


def test_deeper_paths_are_a_path_error_naming_the_path() -> None:
    with pytest.raises(PathError, match="MAX_DEPTH") as info:
        parse_path(_path(MAX_DEPTH + 1))
    assert isinstance(info.value, ClpError)
    assert info.value.path.startswith("k0.k1.k2")


def test_a_huge_path_is_refused_with_a_short_message() -> None:
    with pytest.raises(PathError) as info:
        parse_path(_path(10_000))
    assert len(str(info.value)) < 400


def test_effect_path_plus_value_nesting_is_bounded() -> None:
    state: dict = {}
    Writer(state).apply_effects({_path(MAX_DEPTH - 3): _nested(3)})  # the innermost {} sits at MAX_DEPTH
    with pytest.raises(PathError, match="MAX_DEPTH"):
        Writer({}).apply_effects({_path(MAX_DEPTH - 3): _nested(4)})


def test_deep_merge_of_an_over_deep_mapping_is_a_path_error_not_recursion_error() -> None:
    state = {"n": _nested(50)}
    writer = Writer(state)
    with pytest.raises(PathError):
        writer.apply_effects({"n": _nested(10_000)})
    writer.rollback()
    assert state == {"n": _nested(50)}


def test_copy_value_of_a_very_deep_value_is_a_path_error() -> None:
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(PathError):
        copy_value({"x": deep})


def test_push_and_splice_items_count_their_depth() -> None:
    at = _path(MAX_DEPTH - 1)
    Writer({}).apply_effects({at: ops.push(1)})  # the item sits at MAX_DEPTH
    with pytest.raises(PathError):
        Writer({}).apply_effects({at: ops.push([1])})
    with pytest.raises(PathError):
        Writer({}).apply_effects({at: ops.splice(0, 0, {"a": 1})})


def test_replayed_changes_are_checked_too() -> None:
    with pytest.raises(PathError):
        Writer({}).apply_change(Change("set", _path(MAX_DEPTH - 1), {"a": {"b": 1}}))


def test_whatever_commits_can_be_stored_and_read_back() -> None:
    state: dict = {}
    Writer(state).apply_effects({_path(MAX_DEPTH - 1): [1]})
    document = {"version": 1, "document": {"state": state, "idempotency": {}}}
    assert codec.decode(codec.encode(document), backend="t", key="k") == document


def test_plain_copies_without_recursion_up_to_max_copy_depth() -> None:
    deep: list = []
    for _ in range(MAX_COPY_DEPTH - 2):
        deep = [deep]
    copied = plain({"x": deep})  # the dict and 999 lists: MAX_COPY_DEPTH levels
    node, levels = copied["x"], 0
    while node:
        assert isinstance(node, list) and len(node) == 1
        node, levels = node[0], levels + 1
    assert levels == MAX_COPY_DEPTH - 2
    assert copied["x"] is not deep


@pytest.mark.parametrize("kind", ["deep", "cyclic"])
def test_plain_of_a_cyclic_or_too_deep_value_is_a_nesting_error(kind: str) -> None:
    value: list = []
    if kind == "cyclic":
        value.append(value)
    else:
        for _ in range(50_000):
            value = [value]
    with pytest.raises(NestingError, match="cyclic or nested deeper") as info:
        plain({"x": value})
    assert isinstance(info.value, ClpError) and isinstance(info.value, RecursionError)


def test_lookup_is_iterative() -> None:
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    assert lookup({"x": deep}, ("x", "0", "0")) is deep[0][0]


@pytest.mark.parametrize("segment, index", [("0", 0), ("1", 1), ("10", 10), ("01", None), ("00", None),
                                            ("-1", None), ("+1", None), ("1.0", None), ("\u0661", None),
                                            ("²", None), ("", None), (" 1", None)])
def test_array_index_is_canonical(segment: str, index: int | None) -> None:
    assert array_index(segment) == index


def test_leading_zero_is_not_an_index_of_a_list() -> None:
    state = {"list": ["a", "b"]}
    assert lookup(state, ("list", "01")) is None
    assert lookup(state, ("list", "1")) == "b"
    with pytest.raises(PathError, match="'01' is not an array index"):
        Writer(state).apply_effects({"list.01": "x"})
    with pytest.raises(PathError, match="not an array index"):
        Writer(state).apply_effects({"list.01": ops.unset()})
    with pytest.raises(PathError):
        Writer(state).apply_effects({"list.01.x": 1})
    assert state == {"list": ["a", "b"]}


def test_leading_zero_is_a_key_of_an_object() -> None:
    state: dict = {"map": {"1": "one"}}
    Writer(state).apply_effects({"map.01": "zero-one"})
    assert state == {"map": {"1": "one", "01": "zero-one"}}
    assert lookup(state, ("map", "01")) == "zero-one"
