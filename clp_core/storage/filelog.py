"""The patch log of a :class:`~clp_core.storage.filesystem.FileSystemAdapter` key: the file
``<key's file>.patches`` next to the key's file (the base), appended to under the key's lock.

A record is ``<version>\\t<length>\\t<text>\\n`` (``length``: the bytes of ``text``, so the text
may hold anything). A record cut short at the end of the file, by a writer killed mid-append
(its save was never acknowledged) or one still writing, is not there: readers stop before it
and the next writer cuts it off before appending.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ..errors import CorruptStateError

T = TypeVar("T")

_HEADER = 24  # at most this many bytes before a record's second tab


def encode_record(version: int, text: str) -> bytes:
    data = text.encode()
    return b"%d\t%d\t" % (version, len(data)) + data + b"\n"


def parse_records(raw: bytes, *, key: str, backend: str) -> tuple[list[tuple[int, bytes]], int]:
    """The whole records at the start of ``raw`` as (version, text) pairs, and the number of
    bytes they take (any more is a record cut short). A malformed whole record is a
    :class:`CorruptStateError`."""
    records: list[tuple[int, bytes]] = []
    pos, size = 0, len(raw)
    while pos < size:
        first = raw.find(b"\t", pos, pos + _HEADER)
        second = raw.find(b"\t", first + 1, pos + _HEADER) if first >= 0 else -1
        if second < 0:
            if size - pos < _HEADER:
                break  # the header is cut short
            raise _corrupt(key, backend, pos)
        version, length = raw[pos:first], raw[first + 1:second]
        if not (version.isdigit() and length.isdigit()):
            raise _corrupt(key, backend, pos)
        end = second + 1 + int(length)
        if end >= size:
            break  # the text, or its newline, is cut short
        if raw[end] != 0x0A:
            raise _corrupt(key, backend, pos)
        records.append((int(version), raw[second + 1:end]))
        pos = end + 1
    return records, pos


def _corrupt(key: str, backend: str, offset: int) -> CorruptStateError:
    return CorruptStateError(f"patch log of key {key!r} is malformed at byte {offset}", backend=backend)


def after_base(records: list[tuple[int, bytes]], base: int, head: int, *, key: str,
               backend: str) -> list[tuple[int, bytes]]:
    """The records of versions ``head + 1``, ``head + 2``... (``head``: the last version known,
    the base's or a record's). Records of ``base`` or older are left over from before the base
    was written (a writer killed between writing it and removing the log): skipped."""
    kept: list[tuple[int, bytes]] = []
    for version, text in records:
        if version <= base and head == base:
            continue
        if version != head + 1:
            raise CorruptStateError(f"patch log of key {key!r} skips from version {head} to {version}",
                                    backend=backend)
        kept.append((version, text))
        head = version
    return kept


class OpenFile:
    """A file descriptor held open, closed when the object is dropped: while it is open its
    inode cannot be reused, so a path still naming it is still the same file."""

    __slots__ = ("fd", "ident")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        st = os.fstat(fd)
        self.ident = (st.st_dev, st.st_ino)

    def names(self, st: os.stat_result | None) -> bool:
        return st is not None and (st.st_dev, st.st_ino) == self.ident

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except Exception:  # pragma: no cover - closed already, or the interpreter is exiting
            pass


@attrs.frozen
class Seen:
    """What a writer knows of a key: its base file (open) and version, its log (open, or None
    for no log) read up to ``offset``, and the head version there."""

    base: OpenFile
    version: int
    log: OpenFile | None = None
    offset: int = 0
    head: int = 0


def stat(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def read_from(fd: int, offset: int) -> bytes:
    """The bytes of ``fd`` from ``offset`` to its end."""
    chunks: list[bytes] = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def in_thread_to_the_end(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, waited for to the end even when the caller is cancelled (the
    cancellation is raised once the thread is done): for work under a lock that must not be
    let go while the thread still writes."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            try:
                await asyncio.wait([work])
            except asyncio.CancelledError:
                continue
        if not work.cancelled():
            work.exception()  # retrieved: the cancellation is what the caller hears
        raise
