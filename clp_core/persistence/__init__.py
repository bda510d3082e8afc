"""Where a runtime's state lives between runs, behind one protocol (:class:`Persistence`):
a document per storage key (:mod:`.document`) or an event stream (:mod:`.eventsourced`)."""

from __future__ import annotations

from .base import Persistence
from .document import DocumentPersistence
from .eventsourced import EventPersistence
from .records import Records

__all__ = ["DocumentPersistence", "EventPersistence", "Persistence", "Records"]
