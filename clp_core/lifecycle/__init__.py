"""The lifecycle: :mod:`.runtime` (the public calls) runs each call as a :mod:`.phase`,
checks what comes in with :mod:`.intake`, commits with :mod:`.commit`, and leaves what is
owed after the lock to :mod:`.outbox`. State is kept by :mod:`clp_core.persistence`."""

from __future__ import annotations

from .context import Context
from .runtime import Runtime, create_runtime

__all__ = ["Context", "Runtime", "create_runtime"]
