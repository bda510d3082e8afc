"""Every error CLP raises is a :class:`ClpError`.

The messages of the 0.1 runtime are kept word for word (``Unknown intent <name>``,
``Guard <name> denied``...); the classes let callers catch one kind of failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ClpError(Exception):
    """Base class of every error raised by CLP."""


class ContractError(ClpError):
    """A contract is malformed; ``field`` names the offending part (``guards[1].deny``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class UnknownIntentError(ClpError):
    """``dispatch`` of a name the contract does not declare."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown intent {name}")
        self.intent = name


class ValidationError(ClpError):
    """Values that do not fit their declared types.

    ``errors`` is a list of ``{"field", "expected", "got"}`` dicts; ``got`` is the *type*
    of the offending value, never the value itself (payloads may hold secrets).
    """

    def __init__(self, where: str, errors: Sequence[Mapping[str, Any]]) -> None:
        self.where = where
        self.errors = [dict(e) for e in errors]
        details = "; ".join(
            f"{e['field']}: expected {e['expected']}, got {e['got']}" for e in self.errors
        )
        super().__init__(f"Invalid {where}: {details}")


class ProposalError(ClpError):
    """A proposal (from the AI provider or a guard) was refused, or the provider failed."""


class LifecycleError(ClpError):
    """A lifecycle call made out of order (nothing to accept, nothing to commit...)."""


class NoMatchingIntentError(LifecycleError):
    def __init__(self) -> None:
        super().__init__("No matching intent")


class NoStagedProposalError(LifecycleError):
    def __init__(self, action: str = "accept") -> None:
        super().__init__(f"No staged proposal to {action}")


class NoIntentError(LifecycleError):
    def __init__(self) -> None:
        super().__init__("No intent to commit")


class UnacceptedProposalError(LifecycleError):
    def __init__(self) -> None:
        super().__init__("Unaccepted AI proposal present")


class IncompleteIntentError(LifecycleError):
    def __init__(self) -> None:
        super().__init__("Intent is incomplete")


class GuardDeniedError(ClpError):
    """A guard denied the commit. ``suggestion`` is the staged correction, if any."""

    def __init__(self, guard: str, suggestion: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"Guard {guard} denied")
        self.guard = guard
        self.suggestion = dict(suggestion) if suggestion is not None else None


class TransitionError(ClpError):
    """No single transition could be chosen."""


class NoMatchingTransitionError(TransitionError):
    def __init__(self, name: str | None = None) -> None:
        super().__init__("No matching transition")
        self.transition = name


class AmbiguousTransitionError(TransitionError):
    def __init__(self, found: int) -> None:
        super().__init__(f"Expected exactly one matching transition, found {found}")
        self.found = found


class UserCodeError(ClpError):
    """User code (a guard, a ``when``, an effect, a provider) raised; ``__cause__`` is it."""

    def __init__(self, message: str, *, where: str) -> None:
        super().__init__(message)
        self.where = where


class GuardError(UserCodeError):
    """A guard's ``deny`` or ``suggest`` raised."""


class ConditionError(UserCodeError):
    """A transition's ``when`` raised."""


class EffectError(UserCodeError):
    """A transition's effects raised; nothing was changed."""


class EffectTimeoutError(EffectError):
    """An async effect ran past its transition's ``timeout``; nothing was changed."""


class PathError(ClpError):
    """A state path is malformed or cannot be written (crosses a non-container...)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"Path {path!r}: {problem}")
        self.path = path
        self.problem = problem


class StateValueError(ClpError):
    """A value written to state cannot be stored (not JSON-like, not a date)."""


class NestingError(StateValueError, RecursionError):
    """A value is cyclic or nested too deeply to copy. Also a ``RecursionError``, which is what
    copying such a value used to raise, so callers catching that keep working."""


#: ``StorageError.outcome`` values: the request may have reached the server and been applied
#: (a timeout, a connection lost after sending), or the backend proves it was not applied.
OUTCOME_UNKNOWN = "unknown"
OUTCOME_NOT_APPLIED = "not_applied"
OUTCOMES = (OUTCOME_UNKNOWN, OUTCOME_NOT_APPLIED)


class StorageError(ClpError):
    """A storage backend failed; ``backend`` names it. The in-memory state is unchanged.

    ``outcome`` says what became of the write on the server: ``"unknown"`` (the default: it
    may have been applied, e.g. a timeout after sending) or ``"not_applied"`` (the backend
    proves it was not: refused before sending, a conflict, a decode failure).
    """

    def __init__(self, message: str, *, backend: str, outcome: str = OUTCOME_UNKNOWN) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        super().__init__(f"[{backend}] {message}")
        self.backend = backend
        self.outcome = outcome


class CorruptStateError(StorageError):
    """Stored data could not be decoded, or has an unknown format version."""

    def __init__(self, message: str, *, backend: str, outcome: str = OUTCOME_NOT_APPLIED) -> None:
        super().__init__(message, backend=backend, outcome=outcome)


class ConflictError(StorageError):
    """A versioned save found that someone else wrote first (nothing was applied).

    ``tries`` is how many saves were attempted when retries ran out (see :meth:`exhausted`),
    ``None`` for a single conflict.
    """

    def __init__(self, message: str, *, backend: str, outcome: str = OUTCOME_NOT_APPLIED,
                 tries: int | None = None) -> None:
        super().__init__(message, backend=backend, outcome=outcome)
        self.tries = tries

    @classmethod
    def exhausted(cls, tries: int, cause: ConflictError) -> ConflictError:
        """The error for a commit that conflicted ``tries`` times in a row and gave up;
        raise it ``from cause`` (the last conflict)."""
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise ValueError(f"tries must be a positive integer, not {tries!r}")
        message = str(cause)
        prefix = f"[{cause.backend}] "
        if message.startswith(prefix):
            message = message[len(prefix):]
        error = cls(f"gave up after {tries} conflicting {'try' if tries == 1 else 'tries'}: {message}",
                    backend=cause.backend, tries=tries)
        error.__cause__ = cause
        return error


class ConfigError(ClpError):
    """An option of ``create_runtime`` (or plugin configuration) is invalid."""


class HistoryError(ClpError):
    """A point in an event stream that does not exist (``state_at(99)`` of 10 events)."""


class PluginError(ClpError):
    """A plugin failed to load or to configure; ``plugin`` names it."""

    def __init__(self, plugin: str, cause: str) -> None:
        super().__init__(f"Plugin {plugin}: {cause}")
        self.plugin = plugin
        self.cause = cause


class HookError(ClpError):
    """A hook implementation raised; ``hook`` and ``plugin`` name it."""

    def __init__(self, hook: str, plugin: str) -> None:
        super().__init__(f"Hook {hook} of plugin {plugin} failed")
        self.hook = hook
        self.plugin = plugin


class DeliveryError(ClpError):
    """An emitted message could not be delivered (no handler, or every attempt failed); it
    stays in the outbox (``clp outbox URL KEY`` lists it) and is tried again after a restart."""


__all__ = [name for name, value in globals().items() if isinstance(value, type) and issubclass(value, ClpError)]
__all__ += ["OUTCOMES", "OUTCOME_NOT_APPLIED", "OUTCOME_UNKNOWN"]
