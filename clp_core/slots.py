"""Trusted construction of frozen attrs classes on the hot path: an instance made with
``object.__new__`` and its slots written once through their setters, as the class's
``__init__`` would, without its validators and converters (the caller vouches for the
values). The classes stay what users see; only the runtime's own code builds them so."""

from __future__ import annotations

from typing import Any

import attrs

new = object.__new__


def slot_setters(cls: type, names: str) -> tuple[Any, ...]:
    """The setters of the slots of ``cls``, whose fields are ``names`` in order (checked, so
    a field added to the class must be added at the caller too)."""
    if names.split() != [a.name for a in attrs.fields(cls)]:
        raise AssertionError(f"the fields of {cls.__name__} are not {names}")
    return tuple(vars(cls)[name].__set__ for name in names.split())
