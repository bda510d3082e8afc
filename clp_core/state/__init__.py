"""Deep state: paths, read-only views, owned copies, and in-place writes with an undo log.

The runtime owns one nested ``dict``. A commit writes into it in place, recording how to
undo each write, so its cost follows the paths written, not the size of the state; on any
failure the undo log restores the state exactly. Callers only ever see copies
(:func:`copy_value`) or read-only views (:class:`StateView`).

The parts: :mod:`.paths` (dot paths and their limits), :mod:`.views` (copies and views)
and :mod:`.writer` (:class:`Writer`, :class:`Change`).
"""

from __future__ import annotations

from .paths import MAX_DEPTH, Path, State, array_index, format_path, is_reserved, lookup, parse_path
from .views import MAX_COPY_DEPTH, ListView, StateView, copy_value, plain, view
from .views import _View as _View  # for clp_core.log
from .writer import Change, Writer, changed_paths, touches

__all__ = [
    "MAX_COPY_DEPTH", "MAX_DEPTH", "Change", "ListView", "Path", "State", "StateView", "Writer", "array_index",
    "changed_paths", "copy_value", "format_path", "is_reserved", "lookup", "parse_path", "plain", "touches", "view",
]
