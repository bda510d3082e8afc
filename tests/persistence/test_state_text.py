"""persistence.state_text: a compaction of a big document encodes only the top-level state
values written since the last one, and writes exactly what encoding the whole document writes,
through in-place writes, deleted and restored keys, failed saves rolled back, loads, and a
state that shrinks below patching and grows again."""

from __future__ import annotations

import random
from typing import Any

import pytest

import clp_core as clp
from clp_core import codec
from clp_core.errors import StateValueError, StorageError
from clp_core.persistence.document import write_document
from clp_core.persistence.state_text import StateText
from clp_core.storage.memory import MemoryAdapter
from clp_core.storage.patch import Write
from clp_core.testing.patching import compact_next

KEY = "big"
KEYS = 300  # records of about 30 bytes: a document past the 8 KiB a patch log needs


def initial_state() -> dict[str, Any]:
    return {f"k{i}": {"id": i, "name": f"item {i}", "tags": [i]} for i in range(KEYS)}


def effects(ctx: Any) -> dict[str, Any]:
    """A write chosen by ``n``: in place under a record, a record replaced, removed, put back,
    an array pushed to or cut, a deep merge, a new top-level key."""
    n = ctx.intent.payload["n"]
    rng = random.Random(n)
    key = f"k{rng.randrange(KEYS)}"
    present = key in ctx.state
    choice = n % 7
    if choice == 0 and present:
        return {f"{key}.name": f"renamed {n}"}
    if choice == 1:
        return {key: clp.ops.unset()}
    if choice == 2:
        return {key: {"id": n, "name": "back", "tags": []}}
    if choice == 3 and present:
        return {f"{key}.tags": clp.ops.push(n)}
    if choice == 4 and present and ctx.state[key].get("tags"):
        return {f"{key}.tags": clp.ops.splice(0, 1)}
    if choice == 5 and present:
        return {key: {"extra": {"n": n}}}
    return {f"new{n}": n}


CONTRACT = clp.create_contract(intents={"write": {"inputs": {"n": "number"}}},
                               transitions={"write": {"effects": effects}})


class Checked(MemoryAdapter):
    """Each whole write of a patched document is checked against ``codec.encode`` of the
    document the runtime holds at that moment; ``fail_next`` makes the next whole write fail
    (nothing stored), after its text was made."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Any = None
        self.whole = self.checked = 0
        self.fail_next = False

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        if write.compacts:
            self.whole += 1
            persistence = self.runtime._persistence
            if persistence._log.patching:
                expected = codec.encode(write_document(self.runtime._state, persistence.records))
                assert write.text == expected, f"compaction {self.whole} wrote another text"
                self.checked += 1
            if self.fail_next:
                self.fail_next = False
                raise StorageError("refused", backend="memory", outcome="not_applied")
        return await super().save_logged(key, write, expected_version)


async def runtime_on(adapter: Checked, state: dict[str, Any] | None = None) -> clp.Runtime:
    runtime = clp.create_runtime(CONTRACT, storage=adapter, storage_key=KEY,
                                 initial_state=initial_state() if state is None else state)
    adapter.runtime = runtime
    await runtime.hydrate()
    await runtime.execute("write", {"n": 6})  # the first write: the base, written whole
    return runtime


async def keep_texts(runtime: clp.Runtime) -> None:
    """A compaction of the big document: from here the state's texts are kept."""
    compact_next(runtime)
    await runtime.execute("write", {"n": 13})
    assert not runtime._persistence._text._whole_stale  # type: ignore[attr-defined]  # stored


async def assert_reloads(adapter: Checked, runtime: clp.Runtime) -> None:
    reader = clp.create_runtime(CONTRACT, storage=adapter, storage_key=KEY, initial_state={})
    await reader.hydrate()
    assert reader.get_state() == runtime.get_state()
    assert list(reader.get_state()) == list(runtime.get_state()), "the keys' order"


async def test_compactions_write_what_encoding_the_whole_document_writes() -> None:
    adapter = Checked()
    runtime = await runtime_on(adapter)
    for n in range(400):
        if n % 9 == 0:
            compact_next(runtime)
        await runtime.execute("write", {"n": n})
    assert adapter.checked >= 40
    await assert_reloads(adapter, runtime)


async def test_a_failed_compaction_is_rolled_back_and_the_next_one_is_right() -> None:
    adapter = Checked()
    runtime = await runtime_on(adapter)
    await keep_texts(runtime)
    for n in (7, 1, 3, 5):  # in place, a record removed, an array pushed to, a deep merge
        compact_next(runtime)
        adapter.fail_next = True
        before = runtime.get_state()
        with pytest.raises(StorageError):
            await runtime.execute("write", {"n": n})
        assert runtime.get_state() == before
        compact_next(runtime)
        await runtime.execute("write", {"n": 10 + n * 7})  # checked against a fresh encode
    await assert_reloads(adapter, runtime)


async def test_a_state_that_shrinks_below_patching_and_grows_again() -> None:
    adapter = Checked()
    small = clp.create_contract(
        intents={"write": {"inputs": {"n": "number"}}, "shrink": {}, "touch": {}, "grow": {}},
        transitions={"write": {"on": "write", "effects": effects},
                     "shrink": {"on": "shrink", "effects": lambda ctx: {
                         k: clp.ops.unset() for k in ctx.state if k not in ("k0", "k1")}},
                     "touch": {"on": "touch", "effects": lambda ctx: {"k0.name": "written small"}},
                     "grow": {"on": "grow", "effects": lambda ctx: {
                         k: v for k, v in initial_state().items() if k not in ctx.state}}})
    runtime = clp.create_runtime(small, storage=adapter, storage_key=KEY, initial_state=initial_state())
    adapter.runtime = runtime
    await runtime.execute("write", {"n": 6})
    await keep_texts(runtime)  # k0's text among them
    compact_next(runtime)
    await runtime.execute("shrink")  # the small document is the base: whole writes from here
    assert not runtime._persistence._log.patching  # type: ignore[attr-defined]
    await runtime.execute("touch")  # k0 written, no texts made
    await runtime.execute("grow")
    compact_next(runtime)
    await runtime.execute("write", {"n": 14})  # big again: checked against a fresh encode
    before = adapter.checked
    compact_next(runtime)
    await runtime.execute("write", {"n": 21})
    assert adapter.checked == before + 1
    assert runtime.get_state()["k0"]["name"] == "written small"


async def test_a_runtime_that_reloads_starts_its_texts_anew() -> None:
    adapter = Checked()
    first = await runtime_on(adapter)
    await keep_texts(first)
    other = clp.create_runtime(CONTRACT, storage=adapter, storage_key=KEY, initial_state={})
    await other.hydrate()
    for n in (0, 1, 2, 28):  # records renamed, removed, replaced
        await other.execute("write", {"n": n})
    await first.execute("write", {"n": 35})  # a conflict: first reloads, then writes a patch
    await assert_reloads(adapter, first)
    adapter.runtime = first
    compact_next(first)
    await first.execute("write", {"n": 42})  # checked against a fresh encode
    await assert_reloads(adapter, first)


async def test_a_later_compaction_encodes_only_the_values_written_since(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = Checked()
    runtime = await runtime_on(adapter)
    await keep_texts(runtime)
    encoded: list[str] = []
    encode_members = codec.encode_members

    def counting(items: Any, depth: int) -> dict[str, str]:
        members = encode_members(items, depth)
        if depth == 3:
            encoded.extend(members)
        return members

    monkeypatch.setattr(codec, "encode_members", counting)
    await runtime.execute("write", {"n": 7})  # a patch: a record's name (n % 7 == 0)
    await runtime.execute("write", {"n": 20})  # a patch: a new top-level key, new20
    compact_next(runtime)
    await runtime.execute("write", {"n": 27})  # the compaction, writing new27: these three, no other
    written = {f"k{random.Random(7).randrange(KEYS)}", "new20", "new27"}
    assert sorted(encoded) == sorted(written) and adapter.checked >= 2


# -- the texts themselves ---------------------------------------------------------------------


def test_member_texts_join_into_the_text_of_encode() -> None:
    state = {"a": 1, "é": {"b": [1, 2.5, None, True]}, "d": "\u2603"}
    document = {"state": state, "idempotency": [["k", {"x": 1}]], "outbox": []}
    text = StateText()
    assert text.encode(document, state) == codec.encode(document)
    with codec.using(_Upper()):
        assert text.encode(document, state) == codec.encode(document)


class _Upper:
    def seal(self, text: str) -> str:
        return '{"format":"clp/1+enc","t":' + codec._json(text.upper()) + "}"

    def open(self, envelope: Any, *, backend: str, key: str) -> str:
        raise NotImplementedError


def test_a_member_nesting_past_the_limit_is_refused_at_its_depth() -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    fits = {"state": {"a": nested(codec.MAX_NESTING - 3)}}
    codec.encode(fits)
    assert StateText().encode(fits, fits["state"]) == codec.encode(fits)
    deep = {"state": {"a": nested(codec.MAX_NESTING - 2)}}
    for encode in (codec.encode, lambda d: StateText().encode(d, d["state"])):
        with pytest.raises(StateValueError, match="nests deeper"):
            encode(deep)


@pytest.mark.parametrize("value", [float("nan"), "\ud800", object()])
def test_a_member_that_cannot_be_stored_is_refused_as_encode_refuses_it(value: Any) -> None:
    document = {"state": {"a": 1, "b": value}}
    with pytest.raises(StateValueError):
        codec.encode(document)
    with pytest.raises(StateValueError):
        StateText().encode(document, document["state"])
