"""LiveInspector: a runtime that opts in publishes what the event store does not hold.

Only commits are events. A runtime's pending intent, its staged proposal, and the denials
and failures of its lifecycle calls live in its memory; :class:`LiveInspector` (middleware)
follows them through the ``on_log_entry`` and ``on_error`` hooks and writes them, as one JSON
document, to a storage adapter under the reserved key ``__clp_inspect__/<storage key>``.
``clp inspect`` reads that document through the same adapter, read-only.

Several runtimes (processes) on one storage key share the document: each one writes only its
own entry under ``runtimes``, with compare-and-set saves where the adapter has them. A
failure to publish is logged and never reaches the runtime.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import math
import os
import socket
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from clp_core import hookimpl
from clp_core.plugin_api import ConflictError, VersionedStorage, now, plain, resolve_storage

logger = logging.getLogger("clp.inspect")

LIVE_PREFIX = "__clp_inspect__/"
INDEX_KEY = "__clp_inspect__"
FORMAT = "clp-inspect/1"

#: A closed runtime's entry is dropped this long after it closed; a silent one (killed) later.
CLOSED_TTL = _dt.timedelta(hours=1)
SILENT_TTL = _dt.timedelta(days=1)
MAX_RUNTIMES = 20


def live_key(storage_key: str) -> str:
    """The reserved storage key a runtime of ``storage_key`` publishes its live data under."""
    return LIVE_PREFIX + storage_key


def is_reserved(key: str) -> bool:
    return key == INDEX_KEY or key.startswith(LIVE_PREFIX)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` the storage codec can write: containers, strings, finite numbers,
    booleans, None and dates as they are; anything else as its ``repr``."""
    value = plain(value)
    if depth > 50:
        return "…"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, bool, int, _dt.date)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    return repr(value)


class LiveInspector:
    """Middleware that publishes a runtime's pending intent, staged proposal and recent
    denials, errors and replays for ``clp inspect``.

    ``storage`` is a storage URL or adapter the inspector can read (usually the runtime's
    store: ``"sqlite:///app.db"``); ``storage_key`` must be the runtime's. ``initial_state``
    (the runtime's, if it has one) lets the page rebuild full states: the event store keeps
    only diffs. ``keep`` bounds the recent records.
    """

    name = "clp-inspect-live"

    def __init__(
        self,
        storage: Any,
        storage_key: str,
        *,
        initial_state: Mapping[str, Any] | None = None,
        keep: int = 50,
        runtime_id: str | None = None,
    ) -> None:
        if not isinstance(storage_key, str) or not storage_key:
            raise ValueError("LiveInspector needs the runtime's storage_key")
        self._owns_storage = isinstance(storage, str)
        self.storage = resolve_storage(storage)
        self.storage_key = storage_key
        self.key = live_key(storage_key)
        self.initial_state = None if initial_state is None else jsonable(initial_state)
        self.runtime_id = runtime_id or uuid.uuid4().hex[:12]
        self.started = now()
        self.pending_intent: dict[str, Any] | None = None
        self.staged_proposal: dict[str, Any] | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.closed: str | None = None
        self._lock = asyncio.Lock()
        self._dirty = False
        self._indexed = False
        self.failures = 0
        self.published = False

    # -- hooks ---------------------------------------------------------------------------
    @hookimpl
    async def on_log_entry(self, entry: Any) -> None:
        try:
            self._follow(entry)
        except Exception:  # never let the inspector break the runtime
            logger.exception("clp-inspect could not read a log entry")
            return
        await self._publish()

    @hookimpl
    async def on_error(self, error: BaseException, phase: str) -> None:
        message = str(error)
        last = self.recent[-1] if self.recent else None
        if (last is not None and last["kind"] == "error" and last["phase"] == "commit" and not last.get("matched")
                and last.get("message") == message and phase in ("commit", "storage")):
            last["matched"] = True  # execute() logs a failed commit before reporting it: one record
            last["error"] = f"{type(error).__name__}: {message}"
        else:
            self._add({"kind": "error", "timestamp": now(), "phase": phase, "intent_name": None,
                       "intent_payload": None, "error": f"{type(error).__name__}: {message}", "message": message})
        await self._publish()

    @hookimpl
    async def on_close(self) -> None:
        self.closed = now()
        if self.published:  # a runtime that did nothing is not worth a write
            await self._publish()
        if self._owns_storage:
            close = getattr(self.storage, "close", None)
            if close is not None:
                await close()

    # -- what the log says ---------------------------------------------------------------
    def _follow(self, entry: Any) -> None:
        phase = entry.phase
        payload = jsonable(entry.intent_payload) if entry.intent_payload is not None else None
        if phase == "dispatch":
            self.pending_intent = {"name": entry.intent_name, "payload": payload, "since": entry.timestamp}
            self.staged_proposal = None
        elif phase == "propose":
            self.staged_proposal = {"values": jsonable(entry.staged_proposal), "source": entry.proposal_source,
                                    "since": entry.timestamp}
        elif phase == "accept":
            if self.pending_intent is not None:
                self.pending_intent = {**self.pending_intent, "payload": payload, "source": entry.proposal_source}
            self.staged_proposal = None
        elif phase == "reject":
            self.staged_proposal = None
        elif phase == "commit" and entry.error is None:
            self.pending_intent = self.staged_proposal = None
            if entry.replay:
                self._add(self._record("replay", entry, payload))
        elif phase == "commit":
            denied = [g.name for g in entry.guard_outcomes if g.denied]
            record = self._record("denial" if denied else "error", entry, payload)
            if denied:
                record["denied_guard"] = denied[0]
            if entry.staged_proposal is not None:  # a denying guard's suggestion, now staged
                suggestion = jsonable(entry.staged_proposal)
                record["suggestion"] = suggestion
                self.staged_proposal = {"values": suggestion, "source": entry.proposal_source,
                                        "since": entry.timestamp}
            last = self.recent[-1] if self.recent else None
            if (not denied and last is not None and last["kind"] == "error" and last["intent_name"] is None
                    and last["phase"] in ("commit", "storage") and last.get("message") == entry.error):
                self.recent.pop()  # on_error told this failure first: keep one record, with the intent
                record["error"], record["matched"] = last["error"], True
            self._add(record)
        elif phase == "saga" and entry.error:
            record = self._record("error", entry, payload)
            record["detail"] = jsonable(entry.detail)
            self._add(record)

    @staticmethod
    def _record(kind: str, entry: Any, payload: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "timestamp": entry.timestamp,
            "phase": entry.phase,
            "intent_name": entry.intent_name,
            "intent_payload": payload,
            "proposal_source": entry.proposal_source,
            "guard_outcomes": [{"name": g.name, "denied": g.denied} for g in entry.guard_outcomes],
            "transition": entry.transition_attempted,
            "error": entry.error,
            "message": entry.error,
            "idempotency_key": entry.idempotency_key,
        }

    def _add(self, record: dict[str, Any]) -> None:
        self.recent.append(record)

    def snapshot(self) -> dict[str, Any]:
        """This runtime's entry of the published document."""
        return {
            "id": self.runtime_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "updated": now(),
            "closed": self.closed,
            "pending_intent": self.pending_intent,
            "staged_proposal": self.staged_proposal,
            "recent": list(self.recent),
        }

    # -- publishing ----------------------------------------------------------------------
    async def _publish(self) -> None:
        """Write this runtime's entry; concurrent calls coalesce into the write under way."""
        self._dirty = True
        if self._lock.locked():
            return
        async with self._lock:
            while self._dirty:
                self._dirty = False
                try:
                    if not self._indexed:
                        await self._update(INDEX_KEY, self._index)
                        self._indexed = True
                    await self._update(self.key, self._merge)
                    self.published = True
                except Exception as exc:
                    self.failures += 1
                    logger.warning("clp-inspect could not publish %s: %s: %s", self.key, type(exc).__name__, exc)

    async def _update(self, key: str, change: Any) -> None:
        if isinstance(self.storage, VersionedStorage):
            for _ in range(20):
                document, version = await self.storage.load_versioned(key)
                try:
                    await self.storage.save_versioned(key, change(document), version)
                    return
                except ConflictError:
                    await asyncio.sleep(0.005)
            raise ConflictError(f"{key!r} kept changing", backend=getattr(self.storage, "name", "storage"))
        await self.storage.save(key, change(await self.storage.load(key)))

    def _index(self, document: Any) -> dict[str, Any]:
        keys = document.get("keys") if isinstance(document, dict) else None
        keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
        if self.storage_key not in keys:
            keys.append(self.storage_key)
        return {"format": FORMAT, "keys": sorted(keys)}

    def _merge(self, document: Any) -> dict[str, Any]:
        runtimes = document.get("runtimes") if isinstance(document, dict) else None
        runtimes = dict(runtimes) if isinstance(runtimes, dict) else {}
        runtimes[self.runtime_id] = self.snapshot()
        current = _dt.datetime.now(_dt.UTC)

        def stale(entry: Any) -> bool:
            if not isinstance(entry, dict):
                return True
            try:
                if entry.get("closed"):
                    return current - _dt.datetime.fromisoformat(entry["closed"]) > CLOSED_TTL
                return current - _dt.datetime.fromisoformat(entry["updated"]) > SILENT_TTL
            except (KeyError, TypeError, ValueError):
                return True

        kept = {k: v for k, v in runtimes.items() if k == self.runtime_id or not stale(v)}
        newest = sorted(kept, key=lambda k: str(kept[k].get("updated", "")), reverse=True)[:MAX_RUNTIMES]
        if self.runtime_id not in newest:
            newest[-1] = self.runtime_id
        result: dict[str, Any] = {"format": FORMAT, "storage_key": self.storage_key,
                                  "runtimes": {k: kept[k] for k in newest}}
        initial = self.initial_state
        if initial is None and isinstance(document, dict):
            initial = document.get("initial_state")
        if initial is not None:
            result["initial_state"] = initial
        return result
