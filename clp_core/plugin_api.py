"""Everything a plugin needs, in one place: ``from clp_core.plugin_api import ...``.

The first-party plugins import from ``clp_core`` (the public names) and from this module
only; a test holds them to it. Third-party plugins should do the same: what is here is kept
stable, the modules behind it may move. The conformance kits (``StorageAdapterSuite``,
``EventStoreSuite``, ``PluginSuite``, ``FaultProxy``, ``run_increments``, ``run_outbox``,
``commit_through_lost_replies``) are here too, loaded
when first asked for, since they need pytest.
"""

from __future__ import annotations

from typing import Any

from . import codec
from .codec import Transform as CodecTransform
from .contract import CompiledIntent, Contract, Guard, IntentDef, Transition, compiled
from .deadlines import Deadline, deadline_at
from .errors import (
    OUTCOME_NOT_APPLIED,
    OUTCOME_UNKNOWN,
    ClpError,
    ConfigError,
    ConflictError,
    CorruptStateError,
    DeliveryError,
    EffectError,
    GuardDeniedError,
    HistoryError,
    HookError,
    PathError,
    PluginError,
    ProposalError,
    StateValueError,
    StorageError,
    UnknownIntentError,
    ValidationError,
)
from .event_codec import Row as EventRow
from .events import (
    Event,
    EventStore,
    RetainingEventStore,
    RowEventStore,
    Snapshot,
    apply_events,
    event_from_json,
    event_to_dict,
    event_to_json,
    events_from_rows,
    lineage,
    prune_point,
    replay,
    snapshot_from_json,
    snapshot_to_json,
)
from .hookspecs import hookimpl
from .lifecycle import Context
from .log import Intent, LogEntry, Proposal, Proposed, entry_from_dict, entry_to_dict, now
from .messages import Message
from .plugins import Inactive, registration_manager, shared
from .resolve import resolve_event_store, resolve_storage
from .state import ListView, StateView, plain
from .storage import Document, StorageAdapter, VersionedStorage
from .storage.base import PatchingStorage, refuse_writes
from .storage.patch import Patch, PatchLog, Write, apply_patch, patched_document
from .storage.plugin import sqlite_path
from .types import FieldType, type_name
from .validation import Validator, intent_json_schema

_KITS = {
    "StorageAdapterSuite": "clp_core.testing.storage",
    "EventStoreSuite": "clp_core.testing.events",
    "PluginSuite": "clp_core.testing.plugins",
    "FaultProxy": "clp_core.testing.faults",
    "run_increments": "clp_core.testing.multiprocess",
    "run_outbox": "clp_core.testing.multiprocess",
    "commit_through_lost_replies": "clp_core.testing.exactly_once",
}


def __getattr__(name: str) -> Any:
    module = _KITS.get(name)
    if module is None:
        raise AttributeError(f"module 'clp_core.plugin_api' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "OUTCOME_NOT_APPLIED", "OUTCOME_UNKNOWN", "ClpError", "CodecTransform", "CompiledIntent", "ConfigError",
    "ConflictError",
    "Context", "Contract", "CorruptStateError", "Deadline", "DeliveryError", "Document", "EffectError", "Event",
    "EventRow", "EventStore",
    "FieldType", "Guard", "GuardDeniedError", "HistoryError", "HookError",
    "Inactive", "Intent", "IntentDef", "ListView", "LogEntry", "Message", "Patch", "PatchLog", "PatchingStorage",
    "PathError", "PluginError",
    "Proposal", "ProposalError", "Proposed", "RetainingEventStore", "RowEventStore", "Snapshot", "StateValueError",
    "StateView", "StorageAdapter", "StorageError", "Transition", "UnknownIntentError",
    "ValidationError", "Validator", "VersionedStorage", "Write", "apply_events",
    "apply_patch", "codec", "compiled", "deadline_at", "entry_from_dict",
    "entry_to_dict", "event_from_json", "event_to_dict", "event_to_json", "events_from_rows", "hookimpl",
    "intent_json_schema",
    "lineage", "now", "patched_document", "plain", "prune_point", "refuse_writes", "registration_manager", "replay",
    "resolve_event_store", "resolve_storage", "shared", "snapshot_from_json", "snapshot_to_json", "sqlite_path",
    "type_name",
]
__all__ += list(_KITS)  # the conformance kits, loaded on first use
