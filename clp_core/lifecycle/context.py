"""What guards, ``when`` conditions and effects see."""

from __future__ import annotations

import attrs

from ..log import Intent
from ..slots import new, slot_setters
from ..state import StateView


@attrs.frozen
class Context:
    """The intent being committed and a read-only view of the state."""

    intent: Intent
    state: StateView


_c_intent, _c_state = slot_setters(Context, "intent state")


def context(intent: Intent, state: StateView) -> Context:
    """``Context(intent, state)``, made as its ``__init__`` would (attrs frozen classes set
    their fields through ``object.__setattr__``, twice the cost): the commit's hot path."""
    ctx = new(Context)
    _c_intent(ctx, intent)
    _c_state(ctx, state)
    return ctx  # type: ignore[no-any-return]
