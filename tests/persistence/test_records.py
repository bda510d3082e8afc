"""persistence.records: the window of committed intent ids, as stored."""

from __future__ import annotations

import json

import pytest

from clp_core.ids import compact_id, expand_id, new_id
from clp_core.log import LogEntry, TransitionResult
from clp_core.persistence.records import Records, stored_intents

# -- the stored window of intent ids ------------------------------------------------------


def _committed(records: Records, intent_id: str, transition: str) -> None:
    records.add(LogEntry(intent_name="i", intent_payload={}, phase="commit", intent_id=intent_id,
                         transition_result=TransitionResult(transition, True)))


def test_the_window_is_stored_compactly_and_read_back() -> None:
    records = Records(10, window=4)
    ids = [new_id() for _ in range(5)]
    for intent_id, transition in zip(ids, ["a", "a", "b", "a", "a"], strict=True):
        _committed(records, intent_id, transition)
    stored = records.intents_stored()
    assert stored == {"ids": " ".join(compact_id(i) for i in ids[1:]), "runs": [["a", 1], ["b", 1], ["a", 2]]}
    assert len(stored["ids"]) == 4 * 23 - 1  # 22 characters an id
    assert stored_intents(json.loads(json.dumps(stored))) == tuple(zip(ids[1:], ["a", "b", "a", "a"], strict=True))
    assert records.committed(ids[2]) == (True, "b") and records.committed(ids[0]) == (False, None)


@pytest.mark.parametrize("intent_id", ["order 42", "ORDER-42", "é", "01A24D76-EFBE-714C-9D54-5064019B33F0",
                                       "x" * 128, "AaJNd33Gcky0Qw5VBSYBTQ"])
def test_any_intent_id_round_trips(intent_id: str) -> None:
    short = compact_id(intent_id)
    assert " " not in short and json.dumps(short) == f'"{short}"'
    assert expand_id(short) == intent_id
    records = Records(10, window=2)
    _committed(records, intent_id, "pay")
    assert stored_intents(records.intents_stored()) == ((intent_id, "pay"),)
    assert records.committed(intent_id) == (True, "pay")


def test_the_stored_form_follows_removals() -> None:
    records = Records(10, window=3)
    entries = [new_id() for _ in range(3)]
    for n, intent_id in enumerate(entries):
        _committed(records, intent_id, "t" if n < 2 else "u")
    records.intents_stored()  # built once, then kept up to date
    records.discard(LogEntry(intent_name="i", intent_payload={}, phase="commit", intent_id=entries[2]))
    assert stored_intents(records.intents_stored()) == ((entries[0], "t"), (entries[1], "t"))
    _committed(records, entries[2], "u")
    _committed(records, "last", "u")
    assert records.intents_stored()["runs"] == [["t", 1], ["u", 2]]
    assert stored_intents(records.intents_stored()) == ((entries[1], "t"), (entries[2], "u"), ("last", "u"))


def test_the_window_written_before_as_pairs_still_reads() -> None:
    assert stored_intents([["a", "t"], ["b", None]]) == (("a", "t"), ("b", None))
    assert stored_intents({"ids": "", "runs": []}) == ()


@pytest.mark.parametrize("stored", [
    {"ids": "=YQ =Yg", "runs": [["t", 1]]},       # counts do not add up
    {"ids": "=YQ", "runs": [["t", 0], ["t", 1]]},  # an empty run
    {"ids": 3, "runs": []},
    {"ids": ["=YQ"], "runs": [["t", 1]]},
    {"ids": "=YQ", "runs": [[1, 1]]},
    {"ids": "=YQ", "runs": [["t", True]]},
    {"ids": "short", "runs": [["t", 1]]},         # neither form of a stored id
    {"ids": "=%%%", "runs": [["t", 1]]},
    {"ids": "=YQ"},
    [["a"]],
])
def test_a_malformed_window_is_refused(stored: object) -> None:
    with pytest.raises(ValueError, match="malformed intent ids"):
        stored_intents(stored)
