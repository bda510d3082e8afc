"""Records of what happened: intents, proposals, guard outcomes and log entries."""

from __future__ import annotations

import collections
import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import cattrs

from .ids import new_id
from .state import Change, StateView, _View, plain


def _readonly(mapping: Mapping[str, Any]) -> StateView:
    return mapping if isinstance(mapping, StateView) else StateView(dict(mapping))


def _readonly_optional(mapping: Mapping[str, Any] | None) -> StateView | None:
    return None if mapping is None else _readonly(mapping)


@attrs.frozen
class Intent:
    """What a caller asked for. ``payload`` is a read-only mapping."""

    name: str
    payload: Mapping[str, Any] = attrs.field(converter=_readonly)
    complete: bool = False
    source: str = "user"  # who supplied the payload last: "user", "ai" or "guard:<name>"
    id: str = attrs.field(factory=new_id)  # unique and sortable (UUIDv7); a retry with it commits once


@attrs.frozen
class Proposal:
    """Values staged for acceptance; ``source`` is ``"ai"`` or ``"guard:<name>"``."""

    values: Mapping[str, Any] = attrs.field(converter=_readonly)
    source: str = "ai"


@attrs.frozen
class GuardOutcome:
    name: str
    denied: bool


@attrs.frozen
class TransitionResult:
    name: str | None
    permitted: bool


def now() -> str:
    """The timestamp format of log entries (ISO 8601, UTC)."""
    return _dt.datetime.now(_dt.UTC).isoformat()


@attrs.frozen
class LogEntry:
    """One record of the audit log (0.1's fields in snake_case, plus phase/source/error).

    Entries are immutable: payloads, proposals and diff values are read-only views.

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
    transition_result: TransitionResult = TransitionResult(None, False)
    state_diff: tuple[Change, ...] = ()
    proposal_source: str | None = None
    error: str | None = None
    replay: bool = False
    idempotency_key: str | None = None
    validation_errors: tuple[Mapping[str, Any], ...] = ()
    detail: Mapping[str, Any] | None = attrs.field(default=None, converter=_readonly_optional)  # sagas
    intent_id: str | None = None


converter = cattrs.Converter()
converter.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, _View), plain)
converter.register_unstructure_hook(Mapping, lambda m: {k: converter.unstructure(v) for k, v in m.items()})


def entry_to_dict(entry: LogEntry) -> dict[str, Any]:
    """A JSON-ready dict of an entry (cattrs)."""
    return converter.unstructure(entry)  # type: ignore[no-any-return]


def entry_from_dict(data: Mapping[str, Any]) -> LogEntry:
    return converter.structure(dict(data), LogEntry)


class AuditLog:
    """The in-memory log, bounded to the last ``limit`` entries (``None``: unbounded)."""

    def __init__(self, limit: int | None = 10_000) -> None:
        self._entries: collections.deque[LogEntry] = collections.deque(maxlen=limit)
        self.dropped = 0

    def append(self, entry: LogEntry) -> None:
        if self._entries.maxlen is not None and len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append(entry)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> list[LogEntry]:
        return list(self._entries)
