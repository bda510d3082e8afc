"""The decorator form of a contract, :class:`ContractBuilder` (what ``clp.Contract()``
returns), and :func:`compiled`, the frozen contract of either form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from ..errors import ConfigError, ContractError
from .compile import create_contract
from .inputs import _is_model, inputs_from_class
from .model import CompiledIntent, Contract, Guard, IntentDef, Predicate, Transition, _ContractType

F = TypeVar("F", bound=Callable[..., Any])  # a decorated function, returned unchanged

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
        if inputs is None and description is None and self.sealed:  # a lookup (Contract.intent)
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

    @overload
    def guard(self, deny: F, /, *, name: str | None = None, on: str | Iterable[str] | None = None,
              suggest: Callable[[Any], Any] | None = None) -> F: ...

    @overload
    def guard(self, deny: None = None, /, *, name: str | None = None, on: str | Iterable[str] | None = None,
              suggest: Callable[[Any], Any] | None = None) -> Callable[[F], F]: ...

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

    @overload
    def transition(self, effects: F, /, *, name: str | None = None, on: str | Iterable[str] | None = None,
                   when: Predicate | None = None, timeout: float | None = None,
                   idempotency_key: Callable[[Any], Any] | None = None,
                   emit: Callable[[Any], Any] | None = None) -> F: ...

    @overload
    def transition(self, effects: None = None, /, *, name: str | None = None, on: str | Iterable[str] | None = None,
                   when: Predicate | None = None, timeout: float | None = None,
                   idempotency_key: Callable[[Any], Any] | None = None,
                   emit: Callable[[Any], Any] | None = None) -> Callable[[F], F]: ...

    def transition(
        self, effects: Callable[[Any], Any] | None = None, /, *, name: str | None = None,
        on: str | Iterable[str] | None = None, when: Predicate | None = None, timeout: float | None = None,
        idempotency_key: Callable[[Any], Any] | None = None, emit: Callable[[Any], Any] | None = None,
    ) -> Any:
        """``@contract.transition(on=..., when=..., timeout=..., idempotency_key=..., emit=...)``
        on the effects function (sync or ``async``), named after it unless ``name=`` is given.
        Returns the function unchanged."""

        def declare(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
            transition_name = name if name is not None else getattr(func, "__name__", None)
            decl = self._open(f"transitions[{transition_name!r}]")
            if transition_name in decl["transitions"]:
                raise ContractError(f"transitions[{transition_name!r}]", "is declared twice")
            decl["transitions"][transition_name] = Transition(
                effects=func, when=when, timeout=timeout, idempotency_key=idempotency_key, on=on, emit=emit)
            return func

        return declare(effects) if effects is not None else declare


_ContractType._builder = ContractBuilder  # ``Contract()`` with no arguments makes one


def _first_line(doc: str | None, cls: type) -> str | None:
    if not doc:
        return None
    for base in cls.__mro__[1:]:  # an inherited docstring (BaseModel's) is not a description
        if getattr(base, "__doc__", None) == doc:
            return None
    return doc.strip().splitlines()[0].strip() or None


def compiled(contract: object) -> Contract:
    """The frozen :class:`Contract` of a contract made by :func:`create_contract` or
    ``clp.Contract()`` (compiling a builder, which seals it). What ``create_runtime`` uses."""
    if isinstance(contract, ContractBuilder):
        return contract.compile()
    if isinstance(contract, Contract):
        return contract
    raise ConfigError("create_runtime needs a contract made by create_contract() or clp.Contract()")
