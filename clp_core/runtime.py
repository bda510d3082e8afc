"""Kept for imports written against 0.2 (``from clp_core.runtime import Runtime, Context``):
the runtime lives in :mod:`clp_core.lifecycle`."""

from .lifecycle import Context, Runtime, create_runtime

__all__ = ["Context", "Runtime", "create_runtime"]
