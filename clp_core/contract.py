"""The contract: intents, state schema, guards and transitions, checked when created.

Two ways to write one, compiled by the same checks into the same frozen :class:`Contract`:
the dict form (:func:`create_contract`) and the decorator builder (``clp.Contract()``, see
:class:`ContractBuilder`). :func:`compiled` gives the frozen contract of either.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import attrs

from .errors import ConfigError, ContractError, PathError, ValidationError
from .state import StateView, is_reserved
from .types import FieldType, type_name

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


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


@attrs.frozen
class IntentDef:
    """An intent's declared inputs: field name -> type string (``"number?"``)."""

    inputs: Mapping[str, str] = attrs.field(factory=dict)
    description: str | None = None
    model: Any = None  # a pydantic model class the inputs came from (used by clp-pydantic)


def _to_on(value: Any) -> Any:
    """``on=``: one intent name or several -> a frozenset; ``None`` (every intent) kept.
    Other values are kept as given, for the compile step to report."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return frozenset(items)
    return value


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

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Contract and not args and set(kwargs) <= {"state"}:
            return ContractBuilder(**kwargs)
        return super().__call__(*args, **kwargs)


def _scoped(items: Iterable[Any], intent: str) -> list[Any]:
    return [item for item in items if item.on is None or intent in item.on]


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

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_guards_by_intent", MappingProxyType(
            {name: tuple(_scoped(self.guards, name)) for name in self.intents}))
        object.__setattr__(self, "_transitions_by_intent", MappingProxyType({
            name: MappingProxyType({t.name if t.name is not None else key: t
                                    for key, t in self.transitions.items() if t.on is None or name in t.on})
            for name in self.intents}))

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


def _compile_intent(name: object, spec: object) -> CompiledIntent:
    where = f"intents[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ContractError(where, "intent name must be a non-empty string")
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"inputs", "description", "model"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        try:
            spec = IntentDef(**spec)
        except TypeError as exc:
            raise ContractError(where, str(exc)) from None
    if not isinstance(spec, IntentDef):
        raise ContractError(where, f"must be a dict or IntentDef, got {type(spec).__name__}")
    if not isinstance(spec.inputs, Mapping):
        raise ContractError(f"{where}.inputs", "must be a mapping of field name to type string")
    if spec.model is not None and not isinstance(spec.model, type):
        raise ContractError(f"{where}.model", f"must be a model class, got {type(spec.model).__name__}")
    inputs: dict[str, FieldType] = {}
    for field, text in spec.inputs.items():
        fwhere = f"{where}.inputs[{field!r}]"
        if not isinstance(field, str) or not field or _is_dunder(field):
            raise ContractError(fwhere, "field name must be a non-empty string, not a dunder name")
        inputs[field] = FieldType.parse(text, field=fwhere)
    required = tuple(f for f, t in inputs.items() if not t.optional)
    return CompiledIntent(name, MappingProxyType(inputs), required, spec)


def _check_state_schema(schema: object, where: str) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        raise ContractError(where, f"must be a mapping, got {type(schema).__name__}")
    checked: dict[str, Any] = {}
    for key, value in schema.items():
        kwhere = f"{where}[{key!r}]"
        if not isinstance(key, str) or not key or "." in key or _is_dunder(key):
            raise ContractError(kwhere, "state keys must be non-empty strings without '.', not dunder names")
        if isinstance(value, Mapping):
            checked[key] = _check_state_schema(value, kwhere)
        else:
            checked[key] = FieldType.parse(value, field=kwhere)
    return MappingProxyType(checked)


def _check_on(on: Any, where: str, intents: Mapping[str, Any]) -> None:
    if on is None:
        return
    if not isinstance(on, frozenset):
        raise ContractError(where, f"must be an intent name or a list of intent names, got {type(on).__name__}")
    if not on:
        raise ContractError(where, "names no intent (leave it out to apply to every intent)")
    unknown = sorted(name for name in on if name not in intents)
    if unknown:
        raise ContractError(where, f"unknown intent {', '.join(map(repr, unknown))} (intents: {sorted(intents)})")


def _compile_guard(index: int, spec: object, seen: set[str], intents: Mapping[str, Any]) -> Guard:
    where = f"guards[{index}]"
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "deny", "suggest", "on"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        if "name" not in spec:
            raise ContractError(f"{where}.name", "is required")
        if "deny" not in spec:
            raise ContractError(f"{where}.deny", "is required")
        spec = Guard(**spec)
    if not isinstance(spec, Guard):
        raise ContractError(where, f"must be a dict or Guard, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name:
        raise ContractError(f"{where}.name", "must be a non-empty string")
    if spec.name in seen:
        raise ContractError(f"{where}.name", f"duplicate guard name {spec.name!r}")
    if not callable(spec.deny):
        raise ContractError(f"{where}.deny", "must be callable")
    if spec.suggest is not None and not callable(spec.suggest):
        raise ContractError(f"{where}.suggest", "must be callable")
    _check_on(spec.on, f"{where}.on", intents)
    seen.add(spec.name)
    return spec


def _compile_transition(name: object, spec: object, intents: Mapping[str, Any]) -> Transition:
    where = f"transitions[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ContractError(where, "transition name must be a non-empty string")
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"when", "effects", "timeout", "idempotency_key", "on", "emit"}
        if unknown:
            raise ContractError(where, f"unknown keys {sorted(unknown)}")
        if "effects" not in spec:
            raise ContractError(f"{where}.effects", "is required")
        spec = Transition(**spec)
    if not isinstance(spec, Transition):
        raise ContractError(where, f"must be a dict or Transition, got {type(spec).__name__}")
    if spec.effects is None or not callable(spec.effects):
        raise ContractError(f"{where}.effects", "must be callable")
    if spec.when is not None and not callable(spec.when):
        raise ContractError(f"{where}.when", "must be callable")
    if spec.idempotency_key is not None and not callable(spec.idempotency_key):
        raise ContractError(f"{where}.idempotency_key", "must be callable")
    if spec.emit is not None and not callable(spec.emit):
        raise ContractError(f"{where}.emit", "must be callable")
    if spec.timeout is not None:
        number = isinstance(spec.timeout, (int, float)) and not isinstance(spec.timeout, bool)
        if not number or not math.isfinite(spec.timeout) or spec.timeout <= 0:
            raise ContractError(f"{where}.timeout", "must be a positive number of seconds")
    _check_on(spec.on, f"{where}.on", intents)
    return attrs.evolve(spec, name=name)


def create_contract(
    spec: Mapping[str, Any] | None = None,
    *,
    intents: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    guards: Any = None,
    transitions: Mapping[str, Any] | None = None,
) -> Contract:
    """Check and freeze a contract, given as keyword arguments or as one dict (0.1 style).

    Raises :class:`ContractError` naming the offending field.
    """
    if spec is not None:
        if not isinstance(spec, Mapping):
            raise ContractError("contract", f"must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"intents", "state", "guards", "transitions"}
        if unknown:
            raise ContractError("contract", f"unknown keys {sorted(unknown)}")
        intents = spec.get("intents", intents)
        state = spec.get("state", state)
        guards = spec.get("guards", guards)
        transitions = spec.get("transitions", transitions)
    intents = {} if intents is None else intents
    transitions = {} if transitions is None else transitions
    guards = [] if guards is None else guards
    if not isinstance(intents, Mapping):
        raise ContractError("intents", "must be a mapping of intent name to definition")
    if not isinstance(transitions, Mapping):
        raise ContractError("transitions", "must be a mapping of transition name to definition")
    if isinstance(guards, (str, bytes, Mapping)) or not hasattr(guards, "__iter__"):
        raise ContractError("guards", "must be a list of guards")
    seen: set[str] = set()
    compiled_intents = MappingProxyType({n: _compile_intent(n, s) for n, s in intents.items()})
    return Contract(
        intents=compiled_intents,
        state=_check_state_schema({} if state is None else state, "state"),
        guards=tuple(_compile_guard(i, g, seen, compiled_intents) for i, g in enumerate(guards)),
        transitions=MappingProxyType(
            {n: _compile_transition(n, s, compiled_intents) for n, s in transitions.items()}),
    )


# -- the decorator builder ----------------------------------------------------------------

def _base_type(annotation: Any) -> tuple[str, bool]:
    """The type string base of a Python annotation, and whether it admits ``None``."""
    import datetime as _dt
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return "any", True
    if origin is typing.Annotated:
        return _base_type(args[0])
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        base = _base_type(rest[0])[0] if len(rest) == 1 else "any"
        return base, len(rest) != len(args)
    if origin is typing.Literal:
        kinds = {type(a) for a in args if a is not None}
        names = {str: "string", bool: "boolean", int: "integer"}
        if len(kinds) == 1 and next(iter(kinds)) in names:
            base = names[next(iter(kinds))]
        elif kinds <= {int, float}:
            base = "number"
        else:
            base = "any"
        return base, None in args
    target = origin if origin is not None else annotation
    if not isinstance(target, type):
        return "any", False
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number"),
                       (_dt.datetime, "datetime"), (_dt.date, "date"), (list, "array"), (tuple, "array"),
                       (set, "array"), (frozenset, "array"), (dict, "object")):
        if issubclass(target, kind):
            return name, False
    import collections.abc as cabc

    if issubclass(target, cabc.Mapping) or typing.is_typeddict(target) or hasattr(target, "model_fields"):
        return "object", False
    if issubclass(target, cabc.Sequence):
        return "array", False
    return "any", False


def inputs_from_class(cls: type) -> dict[str, str]:
    """Type strings of a class's fields: a pydantic model (duck-typed: ``model_fields``, with
    string aliases as payload keys), a ``TypedDict``, or an annotated class. A field is
    optional (``?``) when it has a default, is not required, or admits ``None``."""
    import typing

    inputs: dict[str, str] = {}
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, Mapping):
        for name, info in fields.items():
            alias = getattr(info, "validation_alias", None) or getattr(info, "alias", None)
            key = alias if isinstance(alias, str) else name
            base, nullable = _base_type(info.annotation)
            inputs[key] = base + ("?" if nullable or not info.is_required() else "")
        return inputs
    hints = typing.get_type_hints(cls, include_extras=True)
    required_keys = getattr(cls, "__required_keys__", None)
    for name, annotation in hints.items():
        if name.startswith("_") or typing.get_origin(annotation) is typing.ClassVar:
            continue
        base, nullable = _base_type(annotation)
        required = name in required_keys if required_keys is not None else not hasattr(cls, name)
        inputs[name] = base + ("?" if nullable or not required else "")
    return inputs


def _is_model(cls: Any) -> bool:
    return isinstance(cls, type) and isinstance(getattr(cls, "model_fields", None), Mapping) and hasattr(
        cls, "model_json_schema")


class ContractBuilder(Contract):
    """The decorator form of a contract (what ``clp.Contract()`` returns)::

        contract = clp.Contract()

        @contract.intent("open_ticket")
        class OpenTicket(BaseModel):
            title: str

        @contract.guard(on="open_ticket")
        def empty_title(ctx) -> bool:
            return not ctx.intent.payload["title"].strip()

        @contract.transition(on="open_ticket")
        def open_ticket(ctx) -> dict:
            return {"tickets": ops.push(ctx.intent.payload["title"])}

    Declarations are collected, then compiled by :func:`create_contract`'s checks on first
    use (a runtime reading it, :meth:`compile`, :func:`compiled`); after that the builder is
    sealed: declaring more raises :class:`ContractError`. It is a :class:`Contract` whose
    fields are those of its compiled contract.
    """

    _decl: dict[str, Any]
    _compiled: Contract | None

    def __init__(self, *, state: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_decl", {"intents": {}, "state": state, "guards": [], "transitions": {}})
        object.__setattr__(self, "_compiled", None)

    # -- compiling ------------------------------------------------------------------------
    def compile(self) -> Contract:
        """Check the declarations and return the frozen :class:`Contract` (once; cached)."""
        done: Contract | None = self._compiled
        if done is None:
            decl = self._decl
            done = create_contract(intents=decl["intents"], state=decl["state"], guards=decl["guards"],
                                   transitions=decl["transitions"])
            object.__setattr__(self, "_compiled", done)
        return done

    @property
    def sealed(self) -> bool:
        return self._compiled is not None

    def _open(self, what: str) -> dict[str, Any]:
        if self._compiled is not None:
            raise ContractError(what, "the contract is already compiled (in use by a runtime); declare "
                                "everything before creating the runtime")
        return self._decl

    @property  # type: ignore[override]
    def intents(self) -> Mapping[str, CompiledIntent]:
        return self.compile().intents

    @property  # type: ignore[override]
    def state(self) -> Mapping[str, Any]:
        return self.compile().state

    @property  # type: ignore[override]
    def guards(self) -> tuple[Guard, ...]:
        return self.compile().guards

    @property  # type: ignore[override]
    def transitions(self) -> Mapping[str, Transition]:
        return self.compile().transitions

    def guards_for(self, intent: str) -> tuple[Guard, ...]:
        return self.compile().guards_for(intent)

    def transitions_for(self, intent: str) -> Mapping[str, Transition]:
        return self.compile().transitions_for(intent)

    def __repr__(self) -> str:
        decl = self._decl
        return (f"<clp.Contract builder: intents {sorted(decl['intents'])}, {len(decl['guards'])} guards, "
                f"transitions {list(decl['transitions'])}{', compiled' if self.sealed else ''}>")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    # -- declaring ------------------------------------------------------------------------
    def intent(  # type: ignore[override]
        self, name: str, inputs: Mapping[str, str] | None = None, *, description: str | None = None
    ) -> Any:
        """Declare intent ``name``.

        ``contract.intent(name, inputs={...})`` declares it from type strings at once;
        ``@contract.intent(name)`` on a class declares it from the class's fields (a pydantic
        model is also recorded as the intent's ``model``, which clp-pydantic validates with);
        the class is returned unchanged. Once compiled, ``contract.intent(name)`` looks the
        compiled intent up (or ``None``), as :meth:`Contract.intent` does.
        """
        if inputs is None and description is None and (self.sealed or _called_by_runtime()):
            # lookup (Contract.intent): the runtime asks; TODO remove the caller check once
            # create_runtime calls compiled()
            return self.compile().intent(name)
        decl = self._open(f"intents[{name!r}]")
        if name in decl["intents"]:
            raise ContractError(f"intents[{name!r}]", "is declared twice")
        if inputs is not None:
            decl["intents"][name] = IntentDef(inputs=inputs, description=description)
            return decl["intents"][name]

        def declare(cls: Any) -> Any:
            decl = self._open(f"intents[{name!r}]")
            if name in decl["intents"]:
                raise ContractError(f"intents[{name!r}]", "is declared twice")
            if not isinstance(cls, type):
                raise ContractError(f"intents[{name!r}]", f"@intent decorates a class, got {type(cls).__name__}")
            doc = description if description is not None else _first_line(cls.__doc__, cls)
            decl["intents"][name] = IntentDef(inputs=inputs_from_class(cls), description=doc,
                                              model=cls if _is_model(cls) else None)
            return cls

        return declare

    def guard(
        self, deny: Predicate | None = None, /, *, name: str | None = None, on: str | Iterable[str] | None = None,
        suggest: Callable[[Any], Any] | None = None,
    ) -> Any:
        """``@contract.guard(on=..., suggest=...)`` on a function ``deny(ctx) -> bool`` (true
        denies the commit). The guard is named after the function unless ``name=`` is given.
        Guards run in declaration order. Returns the function unchanged."""

        def declare(func: Predicate) -> Predicate:
            guard_name = name if name is not None else getattr(func, "__name__", None)
            self._open(f"guards[{guard_name!r}]")["guards"].append(
                Guard(name=guard_name, deny=func, suggest=suggest, on=on))  # type: ignore[arg-type]
            return func

        return declare(deny) if deny is not None else declare

    def transition(
        self, effects: Callable[[Any], Any] | None = None, /, *, name: str | None = None,
        on: str | Iterable[str] | None = None, when: Predicate | None = None, timeout: float | None = None,
        idempotency_key: Callable[[Any], Any] | None = None,
    ) -> Any:
        """``@contract.transition(on=..., when=..., timeout=..., idempotency_key=...)`` on the
        effects function (sync or ``async``), named after it unless ``name=`` is given.
        Returns the function unchanged."""

        def declare(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            transition_name = name if name is not None else getattr(func, "__name__", None)
            decl = self._open(f"transitions[{transition_name!r}]")
            if transition_name in decl["transitions"]:
                raise ContractError(f"transitions[{transition_name!r}]", "is declared twice")
            decl["transitions"][transition_name] = Transition(
                effects=func, when=when, timeout=timeout, idempotency_key=idempotency_key, on=on)
            return func

        return declare(effects) if effects is not None else declare


def _first_line(doc: str | None, cls: type) -> str | None:
    if not doc:
        return None
    for base in cls.__mro__[1:]:  # an inherited docstring (BaseModel's) is not a description
        if getattr(base, "__doc__", None) == doc:
            return None
    return doc.strip().splitlines()[0].strip() or None


def _called_by_runtime() -> bool:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", "")).startswith("clp_core.")  # the runtime looks up


def compiled(contract: object) -> Contract:
    """The frozen :class:`Contract` of a contract made by :func:`create_contract` or
    ``clp.Contract()`` (compiling a builder, which seals it). What ``create_runtime`` uses."""
    if isinstance(contract, ContractBuilder):
        return contract.compile()
    if isinstance(contract, Contract):
        return contract
    raise ConfigError("create_runtime needs a contract made by create_contract() or clp.Contract()")
