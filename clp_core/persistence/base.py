"""The persistence protocol and the one mapping of backend failures to :class:`StorageError`."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from ..errors import ClpError, StorageError
from ..log import LogEntry
from ..messages import Message
from ..state import State
from .records import Records

# Where a failure that must not fail the commit (a snapshot) is reported: (error, phase).
Report = Callable[[BaseException, str], None]


class Persistence(Protocol):
    """Loads an aggregate's state and records each commit, atomically with its idempotency record."""

    name: str
    records: Records

    async def load(self) -> State:
        """The stored state (the initial state when nothing is stored); fills :attr:`records`."""

    async def save(self, state: State, entry: LogEntry, messages: tuple[Message, ...] = ()) -> None:
        """Record the commit ``entry`` whose effects produced ``state``, with the messages it
        emitted. Raises :class:`ConflictError` if another writer got there first,
        :class:`StorageError` on failure; either way :attr:`records` is as before."""

    async def refresh(self, state: State) -> State:
        """What storage holds now, after another writer got there first: ``state`` (as of the
        last load or save) brought up to date, or loaded anew."""

    async def settle(self, state: State, tries: int = 100) -> State:
        """Record the deliveries made since the last write (``records.acked``); returns the
        state to go on with."""


class storage_errors:
    """Anything but a :class:`ClpError` raised inside becomes a :class:`StorageError` naming
    the action, the key and the backend. (A class, not ``contextlib.contextmanager``: it wraps
    every save, and a generator costs more.)"""

    __slots__ = ("action", "backend", "key")

    def __init__(self, action: str, key: str, backend: str) -> None:
        self.action, self.key, self.backend = action, key, backend

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, ClpError) or not isinstance(exc, Exception):
            return
        raise StorageError(f"{self.action} {self.key!r} failed: {type(exc).__name__}: {exc}",
                           backend=self.backend) from exc
