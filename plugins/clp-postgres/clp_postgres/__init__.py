"""PostgreSQL storage and event store for CLP, on asyncpg.

``storage="postgresql://user@host/db"`` and ``event_store="postgresql://..."`` resolve to
:class:`PostgresAdapter` and :class:`PostgresEventStore` once this distribution is installed.

The names are imported on first use, so discovering the plugin does not import asyncpg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._common import DEFAULT_DSN, InvalidIdentifierError, check_identifier
    from .adapter import PostgresAdapter
    from .events import PostgresEventStore

from .migrate import migrate  # light: a function named like its module, so bound here, eagerly

__version__ = "0.2.0"

_HOMES = {"DEFAULT_DSN": "_common", "InvalidIdentifierError": "_common", "check_identifier": "_common",
          "PostgresAdapter": "adapter", "PostgresEventStore": "events"}

__all__ = [
    "DEFAULT_DSN",
    "InvalidIdentifierError",
    "PostgresAdapter",
    "PostgresEventStore",
    "check_identifier",
    "migrate",
]


def __getattr__(attribute: str) -> Any:
    home = _HOMES.get(attribute)
    if home is None:
        raise AttributeError(f"module 'clp_postgres' has no attribute {attribute!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), attribute)
