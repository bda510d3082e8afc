"""State paths: parsing and formatting dot paths, their limits (:data:`MAX_DEPTH`), array
indices, and reading the value at a path.
"""

from __future__ import annotations

from typing import Any

from ..errors import PathError

Path = tuple[str, ...]
State = dict[str, Any]


#: The deepest a value may sit in state: a path has at most ``MAX_DEPTH`` segments, and no
#: value written at a path of ``n`` segments may nest more than ``MAX_DEPTH - n`` levels of
#: containers. Checked at write time (paths, effect results, ``ops``, replayed changes), so
#: whatever commits can be stored and read back (see :data:`clp_core.codec.MAX_NESTING`).
MAX_DEPTH = 100


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def is_reserved(segment: str) -> bool:
    return segment.startswith("__") and segment.endswith("__")


def parse_path(text: object) -> Path:
    """``"a.b.0"`` -> ``("a", "b", "0")``; rejects empty and dunder segments, and paths of
    more than :data:`MAX_DEPTH` segments."""
    if not isinstance(text, str) or not text:
        raise PathError(_short(str(text)), "a path must be a non-empty string")
    if text.count(".") >= MAX_DEPTH:
        raise PathError(_short(text), f"more than {MAX_DEPTH} segments (MAX_DEPTH)")
    path = tuple(text.split("."))
    for segment in path:
        if not segment:
            raise PathError(text, "empty segment")
        if is_reserved(segment):
            raise PathError(text, f"segment {segment!r} is reserved")
    return path


def format_path(path: Path) -> str:
    return ".".join(path)


def array_index(segment: str) -> int | None:
    """The array index a segment names: a canonical non-negative integer (``"0"``, ``"12"``;
    not ``"01"``, ``"+1"``, ``"-1"`` or an Arabic-Indic digit), else ``None``. Under an object every segment
    is a key, so ``"01"`` is the key ``"01"``."""
    if segment == "0":
        return 0
    if segment[:1] in "123456789" and segment[:1] and segment.isascii() and segment.isdigit():
        return int(segment)
    return None


def lookup(root: Any, path: Path) -> Any:
    """The value at ``path``, or ``None`` when any part of it is missing."""
    node = root
    for segment in path:
        if isinstance(node, dict):
            node = node.get(segment)
        elif isinstance(node, list):
            index = array_index(segment)
            if index is None or index >= len(node):
                return None
            node = node[index]
        else:
            return None
    return node
