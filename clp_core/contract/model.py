"""The contract's model: intents, guards, transitions and the frozen :class:`Contract`.

Also the types that guards and effects are written against (:class:`Ctx`) and
:func:`path`, which builds a dot path from segments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import attrs

from ..errors import PathError, ValidationError
from ..state import StateView, is_reserved
from ..types import FieldType, type_name
from .scope import _scoped, _to_on

Predicate = Callable[[Any], Any]

P = TypeVar("P", bound=Mapping[str, Any], covariant=True)


class IntentOf(Protocol[P]):
    """What ``ctx.intent`` offers, typed by its payload (a ``TypedDict`` gives key completion)."""

    @property
    def name(self) -> str: ...
    @property
    def payload(self) -> P: ...
    @property
    def complete(self) -> bool: ...
    @property
    def source(self) -> str: ...


class Ctx(Protocol[P]):
    """The type of what guards, ``when``, ``suggest`` and effects receive (``clp.Context`` at
    run time): ``def deny(ctx: clp.Ctx[AssignPayload]) -> bool``."""

    @property
    def intent(self) -> IntentOf[P]: ...
    @property
    def state(self) -> StateView: ...


def path(*segments: str | int) -> str:
    """A dot path from segments, e.g. ``clp.path("tickets", ticket_id, "tags", 0)``.

    A segment is a non-empty string without ``.`` and not a dunder name, or a non-negative
    ``int`` (an array index). Anything else raises :class:`PathError` naming the segment:
    an id that contains a dot is refused, never split into two levels.
    """
    if not segments:
        raise PathError("", "clp.path() needs at least one segment")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if isinstance(segment, bool):
            raise PathError(repr(segment), f"segment {index} is a bool, not a key or an index")
        if isinstance(segment, int):
            if segment < 0:
                raise PathError(str(segment), f"segment {index} is a negative index ({segment})")
            parts.append(str(segment))
            continue
        if not isinstance(segment, str):
            raise PathError(repr(segment), f"segment {index} is a {type(segment).__name__}, not a str or int")
        if not segment:
            raise PathError(".".join(parts) + ".", f"segment {index} is empty")
        if "." in segment:
            raise PathError(segment, f"segment {index} ({segment!r}) contains '.', which separates path segments")
        if is_reserved(segment):
            raise PathError(segment, f"segment {index} ({segment!r}) is reserved (dunder name)")
        parts.append(segment)
    return ".".join(parts)


@attrs.frozen
class IntentDef:
    """An intent's declared inputs: field name -> type string (``"number?"``)."""

    inputs: Mapping[str, str] = attrs.field(factory=dict)
    description: str | None = None
    model: Any = None  # a pydantic model class the inputs came from (used by clp-pydantic)


@attrs.frozen
class Guard:
    """A named check run before every commit. ``deny(ctx)`` true stops the commit;
    ``suggest(ctx)`` may return a correction, staged as a proposal awaiting acceptance."""

    name: str
    deny: Predicate
    suggest: Callable[[Any], Any] | None = None
    on: frozenset[str] | None = attrs.field(default=None, converter=_to_on)  # None: every intent


@attrs.frozen
class Transition:
    """``effects(ctx)`` returns the state changes (sync or ``async``) when ``when(ctx)`` holds.

    ``timeout`` (seconds) bounds an async effect; ``idempotency_key(ctx)`` names a commit
    so that doing it twice runs the effects once.
    """

    effects: Callable[[Any], Any]
    when: Predicate | None = None
    timeout: float | None = None
    idempotency_key: Callable[[Any], Any] | None = None
    name: str | None = None
    on: frozenset[str] | None = attrs.field(default=None, converter=_to_on)  # None: every intent
    emit: Callable[[Any], Any] | None = None  # emit(ctx after effects) -> messages, delivered after commit


@attrs.frozen
class CompiledIntent:
    name: str
    inputs: Mapping[str, FieldType]
    required: tuple[str, ...]
    definition: IntentDef


class _ContractType(type):
    """``Contract()`` with no arguments (or only ``state=``) is the decorator builder."""

    #: :class:`~clp_core.contract.builder.ContractBuilder`, set where it is defined (it
    #: subclasses :class:`Contract`, so this module cannot import it).
    _builder: Any = None

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Contract and not args and set(kwargs) <= {"state"}:
            return _ContractType._builder(**kwargs)
        return super().__call__(*args, **kwargs)


@attrs.frozen
class Contract(metaclass=_ContractType):
    """A checked, frozen contract, made by :func:`create_contract`.

    ``clp.Contract()`` (no arguments) makes a :class:`ContractBuilder` instead, for the
    decorator API; it is a ``Contract`` too, compiled on first use.
    """

    intents: Mapping[str, CompiledIntent]
    state: Mapping[str, Any]
    guards: tuple[Guard, ...]
    transitions: Mapping[str, Transition]
    _guards_by_intent: Mapping[str, tuple[Guard, ...]] = attrs.field(init=False, repr=False, eq=False)
    _transitions_by_intent: Mapping[str, Mapping[str, Transition]] = attrs.field(init=False, repr=False, eq=False)
    keyed: bool = attrs.field(init=False, repr=False, eq=False)  # some transition has an idempotency_key

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_guards_by_intent", MappingProxyType(
            {name: tuple(_scoped(self.guards, name)) for name in self.intents}))
        object.__setattr__(self, "_transitions_by_intent", MappingProxyType({
            name: MappingProxyType({t.name if t.name is not None else key: t
                                    for key, t in self.transitions.items() if t.on is None or name in t.on})
            for name in self.intents}))
        object.__setattr__(self, "keyed", any(t.idempotency_key is not None for t in self.transitions.values()))

    def intent(self, name: str) -> CompiledIntent | None:
        return self.intents.get(name)

    def guards_for(self, intent: str) -> tuple[Guard, ...]:
        """The guards that run for a commit of ``intent``, in contract order (computed once)."""
        found = self._guards_by_intent.get(intent)
        return found if found is not None else tuple(g for g in self.guards if g.on is None)

    def transitions_for(self, intent: str) -> Mapping[str, Transition]:
        """The transitions a commit of ``intent`` may choose from, by name (computed once)."""
        found = self._transitions_by_intent.get(intent)
        if found is not None:
            return found
        return MappingProxyType({k: t for k, t in self.transitions.items() if t.on is None})

    def check_values(
        self, intent: CompiledIntent, values: Mapping[str, Any], *, where: str
    ) -> None:
        """Raise :class:`ValidationError` if a value does not fit its declared type.

        Keys must be declared inputs (the caller reports unknown keys its own way).
        """
        errors = []
        for field, value in values.items():
            ftype = intent.inputs[field]
            if not ftype.accepts(value):
                got = type_name(value)
                if isinstance(value, str) and ftype.base in ("date", "datetime"):
                    got = f"str (not an ISO 8601 {ftype.base})"
                errors.append({"field": field, "expected": str(ftype), "got": got})
        if errors:
            raise ValidationError(where, errors)
