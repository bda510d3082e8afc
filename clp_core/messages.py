"""Messages a transition emits (transition key ``emit``): written atomically with the state
change, delivered after the commit, at least once, each with a stable id."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import EffectError
from .ids import new_id
from .state import copy_value


@attrs.frozen
class Message:
    """One message for the handlers of ``topic``; receivers de-duplicate by ``id``."""

    topic: str
    payload: Mapping[str, Any] = attrs.field(factory=dict)
    id: str = attrs.field(factory=new_id)
    intent_id: str | None = None
    aggregate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As stored in an outbox. The payload is shared, not copied: a message's payload is
        its own copy (``collect`` makes it), never changed after."""
        return {"id": self.id, "topic": self.topic, "payload": self.payload,
                "intent_id": self.intent_id, "aggregate": self.aggregate}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        return cls(topic=data["topic"], payload=data.get("payload") or {}, id=data["id"],
                   intent_id=data.get("intent_id"), aggregate=data.get("aggregate"))


def collect(emitted: Any, *, transition: str, intent_id: str, aggregate: str) -> tuple[Message, ...]:
    """What ``emit(ctx)`` returned (``Message`` values or ``(topic, payload)`` pairs), as
    messages of this commit; anything else is an :class:`EffectError`."""
    if emitted is None:
        return ()
    if type(emitted) is not list:  # a list (the usual) needs none of these checks
        if isinstance(emitted, (Message, tuple)) and not _is_pairs(emitted):
            emitted = [emitted]
        if not isinstance(emitted, Iterable) or isinstance(emitted, (str, bytes, Mapping)):
            raise EffectError(f"emit of {transition} returned {type(emitted).__name__}, expected messages",
                              where=transition)
    messages = []
    for item in emitted:
        if isinstance(item, Message):
            topic, payload = item.topic, item.payload
        elif isinstance(item, tuple) and len(item) == 2:
            topic, payload = item
        else:
            raise EffectError(f"emit of {transition} gave {item!r}: expected clp.Message or (topic, payload)",
                              where=transition)
        if not isinstance(topic, str) or not topic:
            raise EffectError(f"emit of {transition}: a message topic must be a non-empty string", where=transition)
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise EffectError(f"emit of {transition}: the payload of {topic!r} must be a dict", where=transition)
        messages.append(Message(topic, copy_value(payload, "message " + topic, depth=1),
                                id=item.id if isinstance(item, Message) else new_id(),
                                intent_id=intent_id, aggregate=aggregate))
    return tuple(messages)


def _is_pairs(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(i, (tuple, Message)) for i in value)
