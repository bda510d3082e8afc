"""Stored events as JSON dicts: the checks a stored event passes, upcasting older formats,
and replay's fast path.

Every store keeps an event as the text :func:`clp_core.events.event_to_json` wrote. Reading
one means :func:`event_dict`: decode it (:mod:`clp_core.codec`) and upgrade an older format
(registered upcasters); then either build the :class:`~clp_core.events.Event`, which checks
each field as it goes (:func:`clp_core.events.event_from_dict`), or check the same fields
without building anything (:func:`check_event`). Anything else is a
:class:`CorruptStateError`. A store that can list a stream as *rows*, ``(seq, stored text)``
pairs, gets one more check per row: the event is the one filed under that seq and aggregate
(:func:`decode_row`). Replay applies such rows with :func:`replay_rows`: each event decoded
and checked as above, its diff applied from the dict
(:func:`clp_core.state.stored.apply_stored`), no ``Event``, ``Change`` or undo record built,
and the dict dropped unless the caller keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import codec
from .errors import CorruptStateError, PathError
from .state.stored import Parsed, apply_stored

FORMAT_VERSION = 1

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_upcasters: dict[int, Upcaster] = {}

#: A stored event as :func:`replay_rows` reads it (a dict), kept by a store that serves it
#: again (:class:`~clp_core.events.MemoryEventStore`) in place of its text. Shared: never
#: changed, and replay copies the arrays and objects it puts into a state.
Checked = dict[str, Any]

#: One stored event of a stream: the seq it is filed under, and its stored text (or, from a
#: store that keeps them, the event as read: a :data:`Checked` dict).
Row = tuple[int, "str | bytes | Checked"]

#: How many events of one stream :func:`checked_rows` keeps read.
CHECKED_PER_STREAM = 100_000


def checked_rows(rows: Iterable[tuple[int, Any]], kept: dict[int, tuple[Any, Checked]], aggregate_id: str,
                 backend: str) -> list[Row]:
    """``rows`` with each text replaced by the event as read (as :func:`replay_rows` reads it), read once
    and then taken from ``kept`` (``seq -> (text, event)``; an entry whose text is not the row's,
    replaced since, is read again). At most :data:`CHECKED_PER_STREAM` are kept; others stay text."""
    out: list[Row] = []
    for seq, text in rows:
        hit = kept.get(seq)
        if hit is None or hit[0] is not text:
            if len(kept) >= CHECKED_PER_STREAM and hit is None:
                out.append((seq, text))
                continue
            raw = codec.plain_object(text)
            if raw is None or not _common(raw, seq, aggregate_id):
                raw = decode_row(seq, text, aggregate_id, backend)  # raises, upcasts, or opens
            hit = kept[seq] = (text, raw)
        out.append((seq, hit[1]))
    return out

_TEXT_FIELDS = ("intent_name", "proposal_source", "transition", "timestamp", "idempotency_key", "intent_id")


def register_upcaster(from_version: int, upcaster: Upcaster) -> None:
    """Register ``upcaster(raw_event_dict) -> raw_event_dict`` upgrading events of format
    ``from_version`` to ``from_version + 1``; chains run until the current format."""
    _upcasters[from_version] = upcaster


def text_field(value: Any, name: str) -> Any:
    """``value`` if it is a string or ``None``; a ``TypeError`` otherwise."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is {type(value).__name__}, not a string")
    return value


def check_event(raw: dict[str, Any]) -> None:
    """Raise (``KeyError``, ``TypeError``, ``ValueError``) unless ``raw``, a decoded event of
    the current format, can be built into an :class:`~clp_core.events.Event`: what building it
    (:func:`clp_core.events.event_from_dict`, which checks as it builds) would raise, without
    building anything."""
    _check_fields(raw)
    for change in raw.get("diff") or ():
        op, path = change["op"], change["path"]
        if (op is not None and not isinstance(op, str)) or (path is not None and not isinstance(path, str)):
            text_field(op, "op")
            text_field(path, "path")


def _check_fields(raw: dict[str, Any]) -> None:
    """:func:`check_event` but the diff, which :func:`replay_rows` checks as it applies it."""
    seq, kind, aggregate = raw["seq"], raw["kind"], raw["aggregate_id"]
    if type(seq) is not int or not isinstance(kind, str) or not isinstance(aggregate, str):
        raise TypeError("aggregate_id, seq and kind must be a string, an integer and a string")
    get = raw.get
    payload, data = get("payload"), get("data")  # null, {} or another falsy value reads as {}
    if (payload and not isinstance(payload, dict)) or (data and not isinstance(data, dict)):
        raise TypeError("payload and data must be objects")
    for name in _TEXT_FIELDS:
        value = get(name)
        if value is not None and not isinstance(value, str):
            text_field(value, name)
    for outcome in get("guard_outcomes") or ():
        outcome["name"]
        outcome["denied"]
    for message in get("messages") or ():
        dict(message)


def _upcast(raw: dict[str, Any], version: Any, backend: str) -> dict[str, Any]:
    if type(version) is not int:
        raise CorruptStateError(f"stored event has format version {version!r}, not an integer", backend=backend)
    while version < FORMAT_VERSION:
        upcaster = _upcasters.get(version)
        if upcaster is None:
            raise CorruptStateError(f"no upcaster registered for event format {version}", backend=backend)
        raw = upcaster(dict(raw))
        version = raw["format_version"] = version + 1
    if version > FORMAT_VERSION:
        raise CorruptStateError(f"event format {version} is newer than this clp-core reads", backend=backend)
    return raw


def event_dict(text: str | bytes, *, backend: str, key: str = "event") -> dict[str, Any]:
    """A stored event as its JSON dict, decoded for this call and upgraded to
    :data:`FORMAT_VERSION`, not yet checked (:func:`check_event`, or building the event, does
    that); :class:`CorruptStateError` if it is not even that (``key`` names it)."""
    raw = codec.plain_object(text)
    if raw is None:  # sealed, spaced out, or not an event at all: the full decode says which
        raw = codec.decode(text, backend=backend, key=key)
        if not isinstance(raw, dict):
            raise CorruptStateError("stored event is not an object", backend=backend)
    version = raw.get("format_version", 1)
    if version != FORMAT_VERSION:
        raw = _upcast(raw, version, backend)
    return raw


def malformed(exc: Exception, backend: str) -> CorruptStateError:
    """The error for an event that :func:`check_event` (or building it) refuses with ``exc``."""
    return CorruptStateError(f"stored event is malformed: {type(exc).__name__}: {exc}", backend=backend)


def row_error(exc: CorruptStateError, seq: Any, aggregate_id: str) -> CorruptStateError:
    """``exc``, raised reading a row, naming the event: ``event <seq> of <aggregate>: ...``."""
    problem = str(exc).removeprefix(f"[{exc.backend}] ")
    return CorruptStateError(f"event {seq} of {aggregate_id!r}: {problem}", backend=exc.backend)


def misfiled(seq: Any, aggregate_id: str, holds_seq: Any, holds_aggregate: Any, backend: str) -> CorruptStateError:
    """The error for a row that holds another event than the one it is filed as."""
    return CorruptStateError(f"event stored as {seq} of {aggregate_id!r} says it is {holds_seq} "
                             f"(it holds event {holds_seq} of {holds_aggregate!r})", backend=backend)


def decode_row(seq: Any, text: Any, aggregate_id: str, backend: str) -> dict[str, Any]:
    """A row of ``aggregate_id``'s stream as a checked event dict (:func:`event_dict`,
    :func:`check_event`), which must be event ``seq`` of that aggregate; errors name both."""
    try:
        raw = event_dict(text, backend=backend, key=aggregate_id)
        try:
            check_event(raw)
        except Exception as exc:  # a missing key, a wrong type
            raise malformed(exc, backend) from exc
    except CorruptStateError as exc:
        raise row_error(exc, seq, aggregate_id) from exc
    if raw["seq"] != seq or raw["aggregate_id"] != aggregate_id:
        raise misfiled(seq, aggregate_id, raw["seq"], raw["aggregate_id"], backend)
    return raw


def replay_rows(state: dict[str, Any], rows: Sequence[Row], aggregate_id: str, backend: str,
                keep: list[dict[str, Any]] | None = None) -> None:
    """Apply the diffs of ``rows`` (in order) to ``state`` in place. Each row is read as
    :func:`decode_row` reads it, and its diff applied by :func:`apply_stored`; a row that
    cannot be read, or whose diff cannot be applied, is a :class:`CorruptStateError` naming
    the event. ``keep``: a list the decoded dicts are appended to (else each is dropped).

    The common case costs one scan of the text and a few checks: a plain envelope of the
    current format whose fields pass :func:`_check_fields` and that is the event filed under
    its seq. Anything else goes through :func:`decode_row`, which upcasts, opens a sealed
    envelope, or raises its error. The diff's ops and paths are checked as applied: a
    change that is not a ``set``/``unset``/``push``/``splice`` of a valid path raises."""
    paths: dict[Any, Parsed] = {}
    fast = codec.plain_object
    for seq, text in rows:
        shared = keep is not None or isinstance(text, dict)  # kept: the events must not share the state's values
        if isinstance(text, dict):
            raw: dict[str, Any] | None = text
        else:
            raw = fast(text)
            if raw is None or not _common(raw, seq, aggregate_id):
                raw = decode_row(seq, text, aggregate_id, backend)  # raises, upcasts, or opens
        assert raw is not None
        try:
            apply_stored(state, raw.get("diff") or (), paths, shared=shared)
        except (PathError, KeyError, TypeError, ValueError) as exc:
            raise CorruptStateError(f"event {seq} of {aggregate_id!r} cannot be applied: {type(exc).__name__}: "
                                    f"{exc}", backend=backend) from exc
        if keep is not None:
            keep.append(raw)


def _common(raw: dict[str, Any], seq: int, aggregate_id: str) -> bool:
    """Whether ``raw`` is an event of the current format whose fields pass
    :func:`_check_fields`, and the one filed as ``seq`` of ``aggregate_id``."""
    if raw.get("format_version", 1) != FORMAT_VERSION:
        return False
    try:
        _check_fields(raw)
    except Exception:
        return False
    return bool(raw["seq"] == seq and raw["aggregate_id"] == aggregate_id)
