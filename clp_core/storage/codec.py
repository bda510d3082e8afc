"""The stored form: JSON in a versioned envelope, with dates and datetimes tagged."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from ..errors import CorruptStateError

FORMAT = "clp/1"


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"__date__": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not storable")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "__date__" in obj:
            return _dt.date.fromisoformat(obj["__date__"])
        if "__datetime__" in obj:
            return _dt.datetime.fromisoformat(obj["__datetime__"])
    return obj


def encode(document: Any) -> str:
    """Serialise a document in the envelope ``{"format": "clp/1", "data": ...}``."""
    return json.dumps({"format": FORMAT, "data": document}, default=_default, ensure_ascii=False,
                      allow_nan=False, separators=(",", ":"))


def decode(text: str | bytes, *, backend: str, key: str) -> Any:
    """Parse an envelope; anything else is a :class:`CorruptStateError`, never empty state."""
    try:
        envelope = json.loads(text, object_hook=_hook)
    except (ValueError, TypeError) as exc:
        raise CorruptStateError(f"stored value for key {key!r} is not valid JSON: {exc}", backend=backend) from None
    if not isinstance(envelope, dict) or "format" not in envelope or "data" not in envelope:
        raise CorruptStateError(f"stored value for key {key!r} is not a CLP envelope", backend=backend)
    if envelope["format"] != FORMAT:
        raise CorruptStateError(
            f"stored value for key {key!r} has unknown format version {envelope['format']!r} "
            f"(this version of clp-core reads {FORMAT!r})",
            backend=backend,
        )
    return envelope["data"]
