"""Diff-sized saves: a :class:`Patch` says what one commit changed in a stored document, and a
:class:`PatchLog` decides when an adapter appends it and when it writes the whole document
again (compaction), so a commit on a big state writes about what it changed.

An adapter that keeps patches stores a *base* document and, after it, the patches of the
versions written since, each applied in version order by :func:`apply_patch` when it loads.
The policy is here, the I/O in the adapter::

    write = log.prepare(document, patch)      # encoded: the patch, or the whole document
    ... compare-and-set ``write.text`` (append it, or replace the base and drop the patches)
    log.done(write)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from .. import codec
from ..errors import CorruptStateError
from ..state.paths import array_index

#: A document is written whole, never patched, while it encodes to fewer bytes than this.
MIN_PATCHED_BYTES = 8192

Path = tuple[str, ...]


@attrs.frozen
class Patch:
    """Values set (``set``: ``(path, value)`` pairs) and removed (``unset``) at paths of a
    stored document (``("state", "a", "b")``, ``("intents",)``). No path is listed twice or
    under another listed path, so the order of application does not matter."""

    set: tuple[tuple[Path, Any], ...] = ()
    unset: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"set": [[list(p), v] for p, v in self.set], "unset": [list(p) for p in self.unset]}

    @classmethod
    def from_json(cls, data: Any, *, key: str, backend: str) -> Patch:
        try:
            sets = tuple((_path(p), v) for p, v in data["set"])
            unsets = tuple(_path(p) for p in data["unset"])
        except (KeyError, TypeError, ValueError):
            raise CorruptStateError(f"stored patch of key {key!r} is malformed", backend=backend) from None
        return cls(sets, unsets)

    def encode(self) -> str:
        """In the codec's envelope (so an installed transform seals patches too)."""
        return codec.encode(self.to_json())

    @classmethod
    def decode(cls, text: str | bytes, *, key: str, backend: str) -> Patch:
        return cls.from_json(codec.decode(text, backend=backend, key=key), key=key, backend=backend)


def _path(raw: Any) -> Path:
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise ValueError("a path is a non-empty list of strings")
    return tuple(raw)


def apply_patch(document: dict[str, Any], patch: Patch, *, key: str, backend: str) -> dict[str, Any]:
    """Apply ``patch`` to ``document`` in place (values are used as they are: decode each
    patch anew). A path crossing a missing object creates it; one crossing a scalar, or an
    array index out of range, is a :class:`CorruptStateError` (the patch was not written for
    this base)."""
    for path, value in patch.set:
        parent = _parent(document, path, key=key, backend=backend, create=True)
        _put(parent, path, value, key=key, backend=backend)
    for path in patch.unset:
        parent = _parent(document, path, key=key, backend=backend, create=False)
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list):
            index = array_index(path[-1])
            if index is None or index >= len(parent):
                raise _mismatch(path, key, backend)
            del parent[index]
    return document


def patched_document(base: str | bytes, patches: Sequence[str | bytes], log: PatchLog, *, key: str, backend: str,
                     document: dict[str, Any] | None = None) -> dict[str, Any]:
    """An adapter's load: the base document (its stored text ``base``, decoded here unless given
    as ``document``) with the texts of ``patches`` applied in order; ``log`` takes their sizes."""
    if document is None:
        document = codec.decode_document(base, backend=backend, key=key)
    for text in patches:
        apply_patch(document, Patch.decode(text, key=key, backend=backend), key=key, backend=backend)
    log.loaded(len(base), (len(text) for text in patches))
    return document


def enveloped(text: str, fields: dict[str, Any], field: str, *, key: str, backend: str) -> str:
    """``codec.encode(fields)``, ``fields[field]`` being the document a whole write's ``text``
    encodes: for an adapter that stores it in an envelope of its own. Where ``text`` is plain
    (no transform), the document's text is spliced in instead of encoded again, and the result
    decoded once to check it (it nests a level deeper than ``text``, and a ``text`` not written
    by :func:`codec.encode` could end early and add fields of its own); else the document is
    decoded, and refused as :func:`codec.encode` refuses it."""
    if text.startswith(codec.PLAIN_PREFIX) and text.endswith("}}"):
        spliced = codec.encode_assembled(fields, field, [text[len(codec.PLAIN_PREFIX):-2]])
        try:
            read = codec.decode(spliced, backend=backend, key=key)
        except CorruptStateError:
            read = None
        if (isinstance(read, dict) and read.keys() == fields.keys()
                and all(read[name] == value for name, value in fields.items() if name != field)):
            return spliced
    return codec.encode({**fields, field: codec.decode_document(text, backend=backend, key=key)})


def _mismatch(path: Path, key: str, backend: str) -> CorruptStateError:
    return CorruptStateError(f"stored patch of key {key!r} does not fit its document at {'.'.join(path)!r}",
                             backend=backend)


def _parent(document: dict[str, Any], path: Path, *, key: str, backend: str, create: bool) -> Any:
    node: Any = document
    for segment in path[:-1]:
        if isinstance(node, dict):
            child = node.get(segment)
            if child is None:
                if not create:
                    return None
                child = node[segment] = {}
        elif isinstance(node, list):
            index = array_index(segment)
            if index is None or index >= len(node):
                raise _mismatch(path, key, backend)
            child = node[index]
        else:
            raise _mismatch(path, key, backend)
        node = child
    if not isinstance(node, (dict, list)):
        if node is None and not create:
            return None
        raise _mismatch(path, key, backend)
    return node


def _put(parent: Any, path: Path, value: Any, *, key: str, backend: str) -> None:
    if isinstance(parent, dict):
        parent[path[-1]] = value
        return
    index = array_index(path[-1])
    if index is None or index > len(parent):
        raise _mismatch(path, key, backend)
    if index == len(parent):
        parent.append(value)
    else:
        parent[index] = value


def patch_between(document: dict[str, Any], changed: Iterable[Path], fields: Iterable[str]) -> Patch:
    """The patch that brings a stored copy of ``document`` up to date after writes at the
    ``changed`` paths and to the top-level ``fields``. Each value is read from ``document``
    (so any sequence of writes collapses to its result); a path through an array is cut at
    the array, which is written whole; a path under another changed path is dropped."""
    cut: set[Path] = {(f,) for f in fields}
    for path in changed:
        cut.add(_through_arrays(document, path))
    kept = sorted(cut, key=len)
    chosen: set[Path] = set()
    for path in kept:
        if not any(path[:n] in chosen for n in range(1, len(path))):
            chosen.add(path)
    sets: list[tuple[Path, Any]] = []
    unsets: list[Path] = []
    for path in sorted(chosen):
        found, value = _find(document, path)
        if found:
            sets.append((path, value))
        else:
            unsets.append(path)
    return Patch(tuple(sets), tuple(unsets))


def _through_arrays(document: dict[str, Any], path: Path) -> Path:
    node: Any = document
    for depth, segment in enumerate(path):
        if isinstance(node, list):
            return path[:depth]
        if not isinstance(node, dict) or segment not in node:
            return path[: depth + 1]
        node = node[segment]
    return path


def _find(document: dict[str, Any], path: Path) -> tuple[bool, Any]:
    node: Any = document
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return False, None
        node = node[segment]
    return True, node


@attrs.frozen
class Write:
    """One prepared save: ``text`` is an encoded patch (``compacts`` false) or the whole
    document, to be stored as the new base, dropping the patches (``compacts`` true).

    ``over_patches`` false says the writer knows no patch follows the stored base (it read or
    wrote every version before its own): an adapter may skip looking for patches to drop."""

    text: str
    compacts: bool
    over_patches: bool = True


@attrs.define
class PatchLog:
    """What one writer knows of a key's stored log: the size of the base document and of the
    patches stored after it. An adapter fills it at load and keeps it with :meth:`done`.

    A writer whose compare-and-set succeeds has read, or written, every version before its own,
    so these sizes are exact for it even when several processes share the key."""

    base_bytes: int = 0
    patch_bytes: int = 0
    patches: int = 0

    def loaded(self, base_bytes: int, patch_sizes: Iterable[int]) -> None:
        sizes = list(patch_sizes)
        self.base_bytes, self.patch_bytes, self.patches = base_bytes, sum(sizes), len(sizes)

    @property
    def patching(self) -> bool:
        """Whether the base is big enough for the next write to be a patch (else it is whole)."""
        return self.base_bytes >= MIN_PATCHED_BYTES

    def prepare(self, document: Callable[[], dict[str, Any]], patch: Patch | None, *,
                text: Callable[[], str] | None = None) -> Write:
        """The patch, encoded, while the patches stored stay smaller than the base (so a
        load reads at most twice the document, and the bytes written per commit stay within
        about twice the patch's); otherwise the whole document: ``text()`` where the caller
        has a cheaper way to ``codec.encode(document())``'s text."""
        if patch is not None and self.patching:
            encoded = patch.encode()
            if self.patch_bytes + len(encoded) <= self.base_bytes:
                return Write(encoded, compacts=False)
        whole = text() if text is not None else codec.encode(document())
        return Write(whole, compacts=True, over_patches=self.patches > 0)

    def done(self, write: Write) -> None:
        if write.compacts:
            self.base_bytes, self.patch_bytes, self.patches = len(write.text), 0, 0
        else:
            self.patch_bytes += len(write.text)
            self.patches += 1
