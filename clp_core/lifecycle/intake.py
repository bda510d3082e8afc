"""What enters a runtime, checked: dispatched payloads, AI proposals, guard suggestions,
accepted payloads, and the state a commit produces."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..contract import CompiledIntent, Contract, Guard
from ..errors import ConfigError, NestingError, ProposalError, UnknownIntentError, ValidationError
from ..log import FrozenDict, Intent, Proposal, Proposed, trusted_intent
from ..state import State, StateView, plain
from ..validation import Validator

AIProvider = Callable[[Intent], Any]


def providers_of(ai_provider: Any, contract: Contract) -> list[AIProvider]:
    """The providers in ``ai_provider``: one callable, or a mapping of intent name to one."""
    if ai_provider is None:
        return []
    providers = dict(ai_provider) if isinstance(ai_provider, Mapping) else {None: ai_provider}
    if not all(callable(p) for p in providers.values()):
        raise ConfigError("ai_provider must be callable (sync or async), a dict of intent name to one, or None")
    unknown = sorted(str(k) for k in set(providers) - {None, *contract.intents})
    if unknown:
        raise ConfigError(f"ai_provider names {unknown}, which are not intents of the contract")
    return list(providers.values())


def is_complete(compiled: CompiledIntent, payload: Mapping[str, Any]) -> bool:
    """0.1's rule: every required input present and not None."""
    return all(payload.get(f) is not None for f in compiled.required)


_KINDS: dict[str, frozenset[type]] = {  # the types a check accepts without looking at the value
    "string": frozenset({str}), "number": frozenset({int}), "integer": frozenset({int}),
    "boolean": frozenset({bool}), "any": frozenset({str, int, bool}),
}


def _scalar_inputs(compiled: CompiledIntent) -> tuple[dict[str, frozenset[type]], tuple[str, ...]]:
    """For :meth:`Intake.intent`'s shortcut: each input's scalar types that need no further
    check (``None`` fits any input), and the required inputs."""
    kinds = {f: _KINDS.get(t.base, frozenset()) | {type(None)} for f, t in compiled.inputs.items()}
    return kinds, compiled.required


def _only_inputs(compiled: CompiledIntent, values: Mapping[str, Any]) -> None:
    for key in values:
        if key not in compiled.inputs:
            raise ProposalError(f"Proposal contains invalid field: {key}")


def _undeclared(where: str, keys: list[str]) -> ValidationError:
    return ValidationError(where, [{"field": str(k), "expected": "a declared input", "got": "undeclared field"}
                                   for k in keys])


class Intake:
    """Checks values against the contract's types, or through ``validator`` (which may coerce).

    A lenient validator's failures do not stop the call: they wait in :attr:`failures` for the
    next log entry.
    """

    def __init__(self, contract: Contract, validator: Validator | None, strict: bool) -> None:
        self.contract, self.validator, self.strict = contract, validator, strict
        self.failures: list[ValidationError] = []
        # intent name -> (input -> the scalar types it takes as they are, required inputs)
        self._scalars: dict[str, tuple[dict[str, frozenset[type]], tuple[str, ...]]] = {}

    def take_failures(self) -> list[ValidationError]:
        failures, self.failures = self.failures, []
        return failures

    def intent(self, name: str, payload: Mapping[str, Any] | None, intent_id: str | None = None) -> Intent:
        """The intent a dispatch makes current; ``intent_id`` names it (a new id by default)."""
        if payload is None:
            payload = {}
        if type(payload) is dict and self.validator is None and (
                intent_id is None or (type(intent_id) is str and 0 < len(intent_id) <= 128)):
            scalars = self._scalars.get(name)
            if scalars is None and (known := self.contract.intent(name)) is not None:
                scalars = self._scalars[name] = _scalar_inputs(known)
            if scalars is not None:  # the usual payload, flat scalars of the declared types
                kinds, required = scalars
                for key, value in payload.items():
                    accepted = kinds.get(key)
                    if accepted is None or type(value) not in accepted:
                        break
                else:
                    complete = True
                    for field in required:
                        if payload.get(field) is None:
                            complete = False
                    return trusted_intent(name, FrozenDict(payload), complete, intent_id)
        compiled = self.contract.intent(name)
        if compiled is None:
            raise UnknownIntentError(name)
        if not isinstance(payload, Mapping):
            raise ValidationError(
                f"payload of {name}", [{"field": "<payload>", "expected": "object", "got": type(payload).__name__}])
        unknown = [k for k in payload if k not in compiled.inputs]
        if unknown:
            raise _undeclared(f"payload of {name}", unknown)
        values = self.values(compiled, payload, f"payload of {name}", complete=is_complete(compiled, payload))
        if intent_id is None:
            return Intent(name, values, is_complete(compiled, values))
        if not isinstance(intent_id, str) or not 0 < len(intent_id) <= 128:
            raise ValidationError(f"intent_id of {name}", [
                {"field": "intent_id", "expected": "a string of 1 to 128 characters", "got": type(intent_id).__name__}])
        return Intent(name, values, is_complete(compiled, values), id=intent_id)

    async def proposal(self, provider: AIProvider, intent: Intent) -> tuple[Proposal, Mapping[str, Any] | None]:
        """Ask ``provider`` for values for ``intent``; they may fill inputs, never override a
        required one the caller gave. Also returns what the provider said of how it made them
        (a :class:`Proposed`'s ``meta``)."""
        try:
            result = provider(intent)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise ProposalError(f"AI provider failed for {intent.name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, Mapping):
            raise ProposalError(f"AI provider returned {type(result).__name__} for {intent.name}, expected a dict")
        compiled = self.contract.intents[intent.name]
        _only_inputs(compiled, result)
        for key in result:
            if key in compiled.required and intent.payload.get(key) is not None:
                raise ProposalError(f"Proposal tries to override required field: {key}")
        meta = result.meta if isinstance(result, Proposed) else None
        return Proposal(self.values(compiled, result, f"proposal for {intent.name}"), "ai"), meta

    def suggestion(self, guard: Guard, intent: Intent, values: Any) -> Proposal | None:
        """A denying guard's correction, to be staged; it may replace any input."""
        if values is None:
            return None
        if not isinstance(values, Mapping):
            raise ProposalError(f"suggestion of guard {guard.name} is {type(values).__name__}, expected a dict")
        compiled = self.contract.intents[intent.name]
        _only_inputs(compiled, values)
        return Proposal(self.values(compiled, values, f"suggestion of guard {guard.name}"), f"guard:{guard.name}")

    def edited(self, intent: Intent, staged: Proposal, edits: Mapping[str, Any], by: str | None) -> Proposal:
        """``staged`` with a person's ``edits`` over it: declared inputs of fitting types."""
        if not isinstance(edits, Mapping):
            raise ValidationError(f"edits of {intent.name}", [
                {"field": "<edits>", "expected": "object", "got": type(edits).__name__}])
        compiled = self.contract.intents[intent.name]
        unknown = [k for k in edits if k not in compiled.inputs]
        if unknown:
            raise _undeclared(f"edits of {intent.name}", unknown)
        checked = self.values(compiled, edits, f"edits of {intent.name}")
        return Proposal({**staged.values, **checked}, f"{staged.source}, edited by {by or 'user'}")

    def accepted(self, intent: Intent, staged: Proposal) -> Intent:
        """``intent`` with the staged values merged into its payload."""
        compiled = self.contract.intents[intent.name]
        merged = plain({**intent.payload, **staged.values})
        payload = self.values(compiled, merged, f"accepted payload of {intent.name}",
                              complete=is_complete(compiled, merged))
        return attrs.evolve(intent, payload=payload, complete=is_complete(compiled, payload), source=staged.source)

    def values(
        self, compiled: CompiledIntent, values: Mapping[str, Any], where: str, *, complete: bool = False
    ) -> dict[str, Any]:
        """The values to use: checked against the declared types, or by the validator."""
        try:
            if self.validator is None:
                self.contract.check_values(compiled, values, where=where)
                return {k: plain(v) for k, v in values.items()}
            try:
                return self.validator.validate_payload(compiled.name, values, complete=complete)
            except ValidationError as exc:
                error = exc if exc.where == where else ValidationError(where, exc.errors)  # say what was checked
                if self.strict:
                    raise error from None
                self.failures.append(error)
                return {k: plain(v) for k, v in values.items()}
        except NestingError:  # a cyclic or absurdly deep value
            raise ValidationError(where, [{"field": "<payload>", "expected": "a finite, reasonably nested value",
                                           "got": "cyclic or too deeply nested"}]) from None

    def check_state(self, state: State) -> None:
        if self.validator is None or not self.validator.checks_state:
            return
        try:
            self.validator.validate_state(StateView(state))
        except ValidationError as exc:
            if self.strict:
                raise
            self.failures.append(exc)
