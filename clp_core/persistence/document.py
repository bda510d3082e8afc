"""Document persistence: the state and its idempotency records as one document under the
storage key, compare-and-set where the adapter can. An adapter that keeps patches
(:class:`~clp_core.storage.base.PatchingStorage`) is sent what each commit changed, and the
whole document only now and then (:class:`~clp_core.storage.patch.PatchLog`); others get the
whole document on every commit.

The document format::

    {"state": {...}, "idempotency": [[key, entry], ...],   # records oldest first
     "intents": {"ids": "id id ...", "runs": [[transition, n], ...]},  # the last intents committed
     "outbox": [message, ...]}                                # emitted, not yet delivered
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import ConflictError, CorruptStateError
from ..log import LogEntry
from ..messages import Message
from ..snapshots import idempotency_records
from ..state import Change, State, parse_path, plain
from ..storage.base import Document, PatchingStorage, StorageAdapter, VersionedStorage, provides
from ..storage.patch import Patch, PatchLog, patch_between
from .base import storage_errors
from .records import Records, stored_intents
from .state_text import StateText

_NONE_ACKED: frozenset[str] = frozenset()


def write_document(state: State, records: Records) -> Document:
    return {"state": state, "idempotency": records.to_list(), "intents": records.intents_stored(),
            "outbox": records.outbox_list()}


def read_document(document: Any, *, key: str, backend: str, empty: Records) -> tuple[State, Records]:
    """The state and records of a stored document; anything malformed is a :class:`CorruptStateError`."""
    if not isinstance(document, dict) or not isinstance(document.get("state"), dict):
        raise CorruptStateError(f"stored document for {key!r} has no state object", backend=backend)
    try:
        records = idempotency_records(document.get("idempotency"))
        intents = stored_intents(document.get("intents"))
        outbox = document.get("outbox") or []
        if not isinstance(outbox, list) or not all(isinstance(m, dict) and "id" in m for m in outbox):
            raise ValueError("a malformed outbox")
    except ValueError as exc:
        raise CorruptStateError(f"stored document for {key!r} has {exc}", backend=backend) from None
    return document["state"], Records(empty.limit, records, window=empty.window, intents=intents, outbox=outbox)


def patches(storage: StorageAdapter) -> bool:
    """Whether commits go to ``storage`` as patches: it keeps them, and no subclass overrode
    ``save_versioned`` or ``load_versioned`` below ``save_logged`` and ``load_logged`` (a
    wrapper written to see every versioned save and load goes on seeing them, whole)."""
    return provides(storage, PatchingStorage) and _logs_below_versions(type(storage))


@functools.lru_cache(maxsize=256)
def _logs_below_versions(kind: type) -> bool:
    def owner(name: str) -> type:
        return next((k for k in kind.__mro__ if name in vars(k)), object)
    return (issubclass(owner("save_logged"), owner("save_versioned"))
            and issubclass(owner("load_logged"), owner("load_versioned")))


class DocumentPersistence:
    """Keeps the aggregate ``key`` as one document in ``storage``; with ``save_on_commit``
    false, commits stay in memory (the state is still loaded from storage when asked)."""

    def __init__(
        self,
        storage: StorageAdapter,
        key: str,
        initial_state: Mapping[str, Any],
        *,
        save_on_commit: bool,
        records: Records,
    ) -> None:
        self.storage, self.key, self.save_on_commit = storage, key, save_on_commit
        self.name = str(getattr(storage, "name", type(storage).__name__))
        self.records = records
        self._initial = initial_state
        self._versioned = provides(storage, VersionedStorage)
        self._log = PatchLog() if patches(storage) else None
        self._text = StateText()
        self._version = 0
        self._saving = storage_errors("save of", key, self.name)  # one for every save: it keeps nothing

    async def load(self) -> State:
        self._text.reset()
        with storage_errors("load of", self.key, self.name):
            if self._log is not None:
                document, self._version = await self.storage.load_logged(self.key, self._log)  # type: ignore[attr-defined]
            elif self._versioned:
                document, self._version = await self.storage.load_versioned(self.key)  # type: ignore[attr-defined]
            else:
                document, self._version = await self.storage.load(self.key), 0
        if document is None:
            self.records = self.records.reloaded(self.records.empty())
            return plain(self._initial)  # type: ignore[no-any-return]
        state, stored = read_document(document, key=self.key, backend=self.name, empty=self.records)
        self.records = self.records.reloaded(stored)
        return state

    async def refresh(self, state: State) -> State:
        return await self.load()  # the document is the unit: read it again

    async def save(self, state: State, entry: LogEntry, messages: tuple[Message, ...] = ()) -> None:
        records = self.records
        records.add(entry, messages)
        if not self.save_on_commit:  # in memory: what _write would do, without the document
            if records.unwritten():
                records.written(set(records.acked))
            return
        fields: list[str] = []
        if self._log is not None and self._log.patching:  # what a patch must carry besides the state
            if entry.intent_id is not None and records.window:
                fields.append("intents")
            if entry.idempotency_key is not None:
                fields.append("idempotency")
            if messages or records.unwritten():
                fields.append("outbox")
        try:
            await self._write(state, entry.state_diff, fields)
        except BaseException:
            records.discard(entry, messages)
            raise

    async def settle(self, state: State, tries: int = 100) -> State:
        """Write the deliveries made since the last write (the stored outbox loses them);
        returns the state to go on with, re-read when another writer got there first."""
        for _ in range(tries):
            if not self.records.unwritten():
                break
            try:
                await self._write(state, (), ["outbox"])
            except ConflictError:
                state = await self.load()
        return state

    async def _write(self, state: State, changed: Iterable[Change], fields: list[str]) -> None:
        """Store the document; ``changed`` (the writes to the state) and ``fields`` (its
        top-level fields other than the state) say what changed since the last load or write."""
        records = self.records
        acked = set(records.acked) if records.acked else _NONE_ACKED
        if self.save_on_commit:
            with self._saving:
                if self._log is not None:
                    self._version = await self._write_logged(state, changed, fields)
                else:
                    document = write_document(state, records)
                    if self._versioned:
                        self._version = await self.storage.save_versioned(  # type: ignore[attr-defined]
                            self.key, document, self._version)
                    else:
                        await self.storage.save(self.key, document)
        if acked or records.failures_unwritten:
            records.written(acked)

    async def _write_logged(self, state: State, changed: Iterable[Change], fields: list[str]) -> int:
        log, text = self._log, self._text
        assert log is not None
        document = write_document(state, self.records)
        patch: Patch | None = None
        whole: Callable[[], str] | None = None
        if log.patching:  # a big document: patches, and now and then the whole, its state's text kept
            paths = [parse_path(c.path) for c in changed]
            text.forget(paths)
            if self._version:
                patch = patch_between(document, (("state", *p) for p in paths), fields)
            whole = functools.partial(text.encode, document, state)
        elif text.kept:
            text.reset()  # written whole, unseen: the texts kept are of an older state
        write = log.prepare(lambda: document, patch, text=whole)
        version: int = await self.storage.save_logged(self.key, write, self._version)  # type: ignore[attr-defined]
        log.done(write)
        if whole is not None and write.compacts:
            text.stored()
        return version
