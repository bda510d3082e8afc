"""CLP: AI may propose values, but only an explicit, guarded, logged transition changes state."""

from . import errors, ops
from .contract import Contract, ContractBuilder, Ctx, Guard, IntentDef, Transition, compiled, create_contract, path
from .errors import ClpError
from .events import Event, EventStore, MemoryEventStore
from .hookspecs import hookimpl
from .lifecycle import Context, Runtime, create_runtime
from .log import GuardOutcome, Intent, LogEntry, Proposal, TransitionResult
from .messages import Message
from .runtimes import Runtimes
from .saga import Parallel, Saga, SagaContext, SagaResult, Step
from .state import Change, ListView, StateView
from .storage import FileSystemAdapter, MemoryAdapter, SQLiteAdapter, StorageAdapter
from .storage.sqlite_events import SQLiteEventStore

__version__ = "0.2.0"

__all__ = [
    "Change", "ClpError", "Context", "Contract", "ContractBuilder", "Ctx", "Event", "EventStore",
    "FileSystemAdapter", "Guard",
    "GuardOutcome", "Intent", "IntentDef", "ListView", "LogEntry", "MemoryAdapter", "Message", "MemoryEventStore",
    "Parallel", "Proposal", "Runtime", "Runtimes", "SQLiteAdapter", "SQLiteEventStore", "Saga", "SagaContext",
    "SagaResult",
    "StateView", "Step", "StorageAdapter", "Transition", "TransitionResult",
    "compiled", "create_contract", "create_runtime", "errors", "hookimpl", "ops", "path",
]
