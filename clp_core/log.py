"""Records of what happened: intents, proposals, guard outcomes and log entries."""

from __future__ import annotations

import collections
import datetime as _dt
import time
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import attrs
import cattrs

from .ids import new_id
from .slots import new, slot_setters
from .state import Change, _View, plain


def _read_only(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is read-only (make a copy: dict(x) / list(x), or to_dict())")


class FrozenDict(dict[str, Any]):
    """A read-only ``dict``: what records hold. ``json.dumps`` and ``repr`` treat it as the
    dict it is; every mutator raises ``TypeError``. Nested containers are frozen too."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """A read-only ``list`` (see :class:`FrozenDict`)."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _read_only
    __iadd__ = __imul__ = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenList:
        return self

    __hash__ = None  # type: ignore[assignment]  # as list's: unhashable


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _freeze_items(value: Mapping[str, Any]) -> FrozenDict:
    for item in value.values():
        if type(item) not in _PLAIN:
            return FrozenDict({k: freeze(v) for k, v in value.items()})
    return FrozenDict(value)  # flat (the usual payload): one C-level copy


def freeze(value: Any) -> Any:
    """A read-only, plain copy of a value (frozen containers are kept as they are)."""
    kind = type(value)
    if kind in _PLAIN or kind is FrozenDict or kind is FrozenList:
        return value
    if isinstance(value, _View):
        value = value._data
    if isinstance(value, Mapping):
        return _freeze_items(value)
    if isinstance(value, (list, tuple)):
        return FrozenList([freeze(v) for v in value])
    return value


def _readonly(mapping: Mapping[str, Any]) -> FrozenDict:
    if type(mapping) is FrozenDict:
        return mapping
    if isinstance(mapping, _View):
        mapping = mapping._data
    return _freeze_items(mapping)


def _readonly_optional(mapping: Mapping[str, Any] | None) -> FrozenDict | None:
    return None if mapping is None else _readonly(mapping)


def _readonly_rows(rows: Any) -> tuple[FrozenDict, ...]:
    return tuple(_readonly(row) for row in rows)


def _json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: containers copied, dates as ISO 8601 strings."""
    if isinstance(value, _View):
        value = value._data
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


class Proposed(FrozenDict):
    """What an AI provider may return instead of a plain dict: the proposed values (it is a
    read-only dict of them, so a runtime that only knows dicts takes it as it is) and
    ``meta`` about how they were made (model id, prompt, raw response, token usage; never
    a secret), which the runtime records on the log entry as ``proposal_meta``."""

    __slots__ = ("meta",)
    meta: FrozenDict

    def __init__(self, values: Mapping[str, Any] = FrozenDict(), meta: Mapping[str, Any] | None = None) -> None:
        super().__init__(_readonly(values))
        object.__setattr__(self, "meta", _readonly(meta or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Proposed is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Proposed, (dict(self), dict(self.meta)))

    def __repr__(self) -> str:
        return f"Proposed({dict(self)!r}, meta={dict(self.meta)!r})"


@attrs.frozen
class Intent:
    """What a caller asked for. ``payload`` is a read-only dict (:class:`FrozenDict`)."""

    name: str
    payload: Mapping[str, Any] = attrs.field(converter=_readonly)
    complete: bool = False
    source: str = "user"  # who supplied the payload last: "user", "ai" or "guard:<name>"
    id: str = attrs.field(factory=new_id)  # unique and sortable (UUIDv7); a retry with it commits once

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (dates as ISO 8601 strings), a copy the caller owns."""
        return _json_ready(converter.unstructure(self))  # type: ignore[no-any-return]


@attrs.frozen
class Proposal:
    """Values staged for acceptance; ``source`` is ``"ai"`` or ``"guard:<name>"``."""

    values: Mapping[str, Any] = attrs.field(converter=_readonly)
    source: str = "ai"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (dates as ISO 8601 strings), a copy the caller owns."""
        return _json_ready(converter.unstructure(self))  # type: ignore[no-any-return]


@attrs.frozen
class GuardOutcome:
    name: str
    denied: bool


@attrs.frozen
class TransitionResult:
    name: str | None
    permitted: bool


_second: tuple[int, str] = (-1_000_000, "")  # the first microsecond of the last second formatted, and its text
_time_ns = time.time_ns


_NOT_TAKEN = TransitionResult(None, False)  # LogEntry's default


def now() -> str:
    """The timestamp format of log entries (ISO 8601, UTC), as
    ``datetime.now(UTC).isoformat()`` writes it; the date and time of day are formatted once
    a second."""
    global _second
    micros = _time_ns() // 1000
    second = _second
    into = micros - second[0]
    if not 0 <= into < 1_000_000:  # a new second (or the clock went back)
        start = micros - micros % 1_000_000
        second = _second = (start, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 1_000_000)))
        into = micros - start
    return f"{second[1]}.{into:06d}+00:00" if into else f"{second[1]}+00:00"


@attrs.frozen
class LogEntry:
    """One record of the audit log (0.1's fields in snake_case, plus phase/source/error).

    Entries are immutable: payloads and proposals are read-only dicts (:class:`FrozenDict`,
    which ``json.dumps`` and ``repr`` treat as plain dicts); diff values are read-only views.
    :meth:`to_dict` gives the whole entry as plain JSON data.

    ``proposal_meta`` is what the AI provider said about a proposal (:class:`Proposed`).

    ``phase`` is ``dispatch``, ``propose``, ``accept``, ``reject`` or ``commit``; ``replay``
    marks a commit answered from its idempotency record without running effects.
    """

    intent_name: str | None
    intent_payload: Mapping[str, Any] | None = attrs.field(converter=_readonly_optional)
    phase: str
    timestamp: str = attrs.field(factory=now)
    staged_proposal: Mapping[str, Any] | None = attrs.field(default=None, converter=_readonly_optional)
    accepted_proposal: Mapping[str, Any] | None = attrs.field(default=None, converter=_readonly_optional)
    guard_outcomes: tuple[GuardOutcome, ...] = ()
    transition_attempted: str | None = None
    transition_result: TransitionResult = _NOT_TAKEN
    state_diff: tuple[Change, ...] = ()
    proposal_source: str | None = None
    error: str | None = None
    replay: bool = False
    idempotency_key: str | None = None
    validation_errors: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_readonly_rows)
    detail: Mapping[str, Any] | None = attrs.field(default=None, converter=_readonly_optional)  # sagas
    intent_id: str | None = None
    proposal_meta: Mapping[str, Any] | None = attrs.field(default=None, converter=_readonly_optional)

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON data: ``json.dumps(entry.to_dict())`` always works.

        Field names are the attribute names; guard outcomes, the transition result and
        diff changes become dicts; dates become ISO 8601 strings.
        """
        return _json_ready(converter.unstructure(self))  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:  # only for a field dispatch_entry or commit_entry left unset
        return _set_defaults(self, name)


_new = new
_i_name, _i_payload, _i_complete, _i_source, _i_id = slot_setters(Intent, "name payload complete source id")
(_e_intent_name, _e_intent_payload, _e_phase, _e_timestamp, _e_staged_proposal, _e_accepted_proposal,
 _e_guard_outcomes, _e_transition_attempted, _e_transition_result, _e_state_diff, _e_proposal_source, _e_error,
 _e_replay, _e_idempotency_key, _e_validation_errors, _e_detail, _e_intent_id, _e_proposal_meta) = slot_setters(
    LogEntry, "intent_name intent_payload phase timestamp staged_proposal accepted_proposal guard_outcomes "
    "transition_attempted transition_result state_diff proposal_source error replay idempotency_key "
    "validation_errors detail intent_id proposal_meta")


def trusted_intent(name: str, payload: FrozenDict, complete: bool, id: str | None = None) -> Intent:
    """``Intent(name, payload, complete, id=id)`` for a payload already frozen (:func:`freeze`),
    without the converter: the runtime's hot path."""
    intent = _new(Intent)
    _i_name(intent, name)
    _i_payload(intent, payload)
    _i_complete(intent, complete)
    _i_source(intent, "user")
    _i_id(intent, new_id() if id is None else id)
    return intent  # type: ignore[no-any-return]


# The fields a dispatch entry and a successful commit's entry made by the functions below
# leave unset, at their defaults: the first read of one sets them all (LogEntry.__getattr__).
_COMMIT_UNSET = (
    (_e_staged_proposal, None), (_e_accepted_proposal, None), (_e_error, None), (_e_replay, False),
    (_e_validation_errors, ()), (_e_detail, None), (_e_proposal_meta, None))
_DISPATCH_UNSET = (
    *_COMMIT_UNSET, (_e_guard_outcomes, ()), (_e_transition_attempted, None), (_e_transition_result, _NOT_TAKEN),
    (_e_state_diff, ()), (_e_proposal_source, None), (_e_idempotency_key, None))
_UNSET = frozenset({
    "staged_proposal", "accepted_proposal", "error", "replay", "validation_errors", "detail", "proposal_meta",
    "guard_outcomes", "transition_attempted", "transition_result", "state_diff", "proposal_source",
    "idempotency_key"})


_TAKEN: dict[str | None, TransitionResult] = {}


def _set_defaults(entry: LogEntry, name: str) -> Any:
    if name not in _UNSET:
        raise AttributeError(f"{type(entry).__name__!r} object has no attribute {name!r}", name=name, obj=entry)
    for setter, value in _DISPATCH_UNSET if entry.phase == "dispatch" else _COMMIT_UNSET:
        setter(entry, value)
    return getattr(entry, name)


def dispatch_entry(intent: Intent) -> LogEntry:
    """``LogEntry(intent_name=..., intent_payload=..., phase="dispatch", intent_id=...)`` of
    ``intent``, made for the runtime's hot path: no converter runs (the intent's payload is
    frozen already) and the other fields are their defaults, set when first read."""
    entry = _new(LogEntry)
    _e_intent_name(entry, intent.name)
    _e_intent_payload(entry, intent.payload)
    _e_phase(entry, "dispatch")
    _e_timestamp(entry, now())
    _e_intent_id(entry, intent.id)
    return entry  # type: ignore[no-any-return]


def delivery_entry(intent_id: str | None, detail: Mapping[str, Any], error: str | None) -> LogEntry:
    """``LogEntry(intent_name=None, intent_payload=None, phase="deliver", intent_id=...,
    detail=..., error=...)``, made as :func:`dispatch_entry` makes one (``detail`` is a fresh
    dict of plain values, frozen here)."""
    entry = _new(LogEntry)
    _e_intent_name(entry, None)
    _e_intent_payload(entry, None)
    _e_phase(entry, "deliver")
    _e_timestamp(entry, now())
    _e_intent_id(entry, intent_id)
    for setter, value in _DISPATCH_UNSET:
        setter(entry, value)
    _e_detail(entry, _readonly(detail))
    _e_error(entry, error)
    return entry  # type: ignore[no-any-return]


def commit_entry(
    intent: Intent, guard_outcomes: tuple[GuardOutcome, ...], transition: str | None,
    state_diff: tuple[Change, ...], idempotency_key: str | None,
) -> LogEntry:
    """The entry of ``intent``'s successful commit through ``transition`` (``transition_attempted``
    and ``transition_result``, ``proposal_source`` the intent's source), as :func:`dispatch_entry`
    makes one: the fields a success leaves at their defaults are set when first read."""
    entry = _new(LogEntry)
    _e_intent_name(entry, intent.name)
    _e_intent_payload(entry, intent.payload)
    _e_phase(entry, "commit")
    _e_timestamp(entry, now())
    _e_guard_outcomes(entry, guard_outcomes)
    _e_transition_attempted(entry, transition)
    taken = _TAKEN.get(transition)
    if taken is None:
        taken = TransitionResult(transition, True)
        if len(_TAKEN) < 1024:  # one per transition name (they are immutable)
            _TAKEN[transition] = taken
    _e_transition_result(entry, taken)
    _e_state_diff(entry, state_diff)
    _e_proposal_source(entry, intent.source)
    _e_idempotency_key(entry, idempotency_key)
    _e_intent_id(entry, intent.id)
    return entry  # type: ignore[no-any-return]


converter = cattrs.Converter()
converter.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, _View), plain)
converter.register_unstructure_hook(Mapping, lambda m: {k: converter.unstructure(v) for k, v in m.items()})
converter.register_unstructure_hook_func(lambda t: t in (FrozenDict, FrozenList), plain)


def entry_to_dict(entry: LogEntry) -> dict[str, Any]:
    """A JSON-ready dict of an entry (cattrs)."""
    return converter.unstructure(entry)  # type: ignore[no-any-return]


def entry_from_dict(data: Mapping[str, Any]) -> LogEntry:
    return converter.structure(dict(data), LogEntry)


class AuditLog:
    """The in-memory log, bounded to the last ``limit`` entries (``None``: unbounded)."""

    def __init__(self, limit: int | None = 10_000) -> None:
        self._entries: collections.deque[LogEntry] = collections.deque(maxlen=limit)
        self.append = self._entries.append  # the oldest entry goes when a new one comes

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> list[LogEntry]:
        return list(self._entries)
