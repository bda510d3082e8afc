"""Snapshots: an aggregate's state (and the records kept with it) as of one event, and
their stored form; the stored records' formats (idempotency records, committed intent ids),
which full-state documents share."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import attrs

from . import codec
from .errors import CorruptStateError
from .state import plain


@attrs.frozen
class Snapshot:
    seq: int
    state: Mapping[str, Any]
    idempotency: Mapping[str, Any] = attrs.field(factory=dict)
    intents: tuple[tuple[str, str | None], ...] = ()  # (intent id, transition) of the last commits
    #: a fork's ancestry, nearest first: ((parent key, seq forked at), (grandparent key, seq), ...)
    lineage: tuple[tuple[str, int], ...] = ()
    outbox: tuple[Mapping[str, Any], ...] = ()  # messages not yet delivered


def snapshot_to_json(snapshot: Snapshot) -> str:
    records = [[k, v] for k, v in snapshot.idempotency.items()]  # a list keeps their age order
    document = {"seq": snapshot.seq, "state": plain(snapshot.state), "idempotency": records,
                "intents": [list(pair) for pair in snapshot.intents], "outbox": [dict(m) for m in snapshot.outbox]}
    if snapshot.lineage:
        document["lineage"] = [list(pair) for pair in snapshot.lineage]
    return codec.encode(document)


def snapshot_from_json(text: str | bytes, *, backend: str) -> Snapshot:
    raw = codec.decode(text, backend=backend, key="snapshot")
    if not isinstance(raw, dict) or not isinstance(raw.get("state"), dict) or not isinstance(raw.get("seq"), int):
        raise CorruptStateError("stored snapshot is malformed", backend=backend)
    try:
        records = idempotency_records(raw.get("idempotency"))
    except ValueError:
        raise CorruptStateError("stored snapshot has malformed idempotency records", backend=backend) from None
    try:
        intents = committed_intents(raw.get("intents"))
    except ValueError:
        raise CorruptStateError("stored snapshot has malformed intent ids", backend=backend) from None
    outbox = raw.get("outbox") or []
    if not isinstance(outbox, list) or not all(isinstance(m, dict) and "id" in m for m in outbox):
        raise CorruptStateError("stored snapshot has a malformed outbox", backend=backend)
    ancestry = raw.get("lineage") or []
    if not isinstance(ancestry, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int for p in ancestry
    ):
        raise CorruptStateError("stored snapshot has a malformed lineage", backend=backend)
    return Snapshot(raw["seq"], raw["state"], records, intents, tuple((k, s) for k, s in ancestry), tuple(outbox))


def idempotency_records(stored: Any) -> collections.OrderedDict[str, Any]:
    """Idempotency records as stored (a list of ``[key, entry]``, oldest first; older
    documents used a dict), in age order. Raises ``ValueError`` if malformed."""
    if stored is None:
        return collections.OrderedDict()
    if isinstance(stored, dict):
        return collections.OrderedDict(stored)
    if isinstance(stored, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in stored
    ):
        return collections.OrderedDict((k, v) for k, v in stored)
    raise ValueError("malformed idempotency records")


def committed_intents(stored: Any) -> tuple[tuple[str, str | None], ...]:
    """The window of committed intent ids as stored (a list of ``[id, transition]``, oldest
    first). Raises ``ValueError`` if malformed."""
    if stored is None:
        return ()
    if isinstance(stored, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
        and (pair[1] is None or isinstance(pair[1], str)) for pair in stored
    ):
        return tuple((i, t) for i, t in stored)
    raise ValueError("malformed intent ids")
