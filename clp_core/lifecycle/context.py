"""What guards, ``when`` conditions and effects see."""

from __future__ import annotations

import attrs

from ..log import Intent
from ..state import StateView


@attrs.frozen
class Context:
    """The intent being committed and a read-only view of the state."""

    intent: Intent
    state: StateView
