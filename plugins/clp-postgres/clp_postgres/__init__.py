"""PostgreSQL storage and event store for CLP, on asyncpg.

``storage="postgresql://user@host/db"`` and ``event_store="postgresql://..."`` resolve to
:class:`PostgresAdapter` and :class:`PostgresEventStore` once this distribution is installed.
"""

from __future__ import annotations

from ._common import DEFAULT_DSN, InvalidIdentifierError, check_identifier
from .adapter import PostgresAdapter
from .events import PostgresEventStore
from .migrate import migrate

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_DSN",
    "InvalidIdentifierError",
    "PostgresAdapter",
    "PostgresEventStore",
    "check_identifier",
    "migrate",
]
