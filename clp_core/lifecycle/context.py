"""What guards, ``when`` conditions and effects see."""

from __future__ import annotations

import attrs

from ..log import Intent
from ..slots import new, slot_setters
from ..state import State, StateView, _View


@attrs.frozen
class Context:
    """The intent being committed and a read-only view of the state."""

    intent: Intent
    state: StateView


_c_intent, _c_state = slot_setters(Context, "intent state")
_v_data = vars(_View)["_data"].__set__


def context(intent: Intent, state: State) -> Context:
    """``Context(intent, StateView(state))``, made as their ``__init__`` would (attrs frozen
    classes set their fields through ``object.__setattr__``, twice the cost): the commit's
    hot path."""
    view = new(StateView)
    _v_data(view, state)
    ctx = new(Context)
    _c_intent(ctx, intent)
    _c_state(ctx, view)
    return ctx  # type: ignore[no-any-return]
