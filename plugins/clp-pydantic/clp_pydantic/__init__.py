"""clp-pydantic: run-time validation for CLP runtimes, with pydantic.

Installed, it registers the ``"pydantic"`` validator through the ``register_validators``
hook, which is what ``clp.create_runtime(contract, validation={...})`` uses by default::

    runtime = clp.create_runtime(contract, validation={
        "strict": True,                          # raise (False: record and go on)
        "schema": {"increment": IncrementPayload},  # hand-written models, per intent (optional)
        "state": AppState,                       # a model of the whole state (optional)
        "coerce": False,                         # True: pydantic's lax mode
    })

Without models, the contract's type strings and state schema are compiled into pydantic
validators, so ``validation={"strict": True}`` alone checks everything the contract declares.

This module stays light: pydantic is imported when a runtime asks for the validator, not
when CLP discovers its plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clp_core import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .validator import PydanticValidator

__version__ = "0.2.0"
__all__ = ["PydanticValidator", "create_validator", "register_validators"]


def create_validator(contract: Any, options: Any) -> PydanticValidator:
    """The validator factory: ``factory(contract, options)`` as core's ``build_validator`` calls it."""
    from .validator import PydanticValidator

    return PydanticValidator(contract, options)


@hookimpl
def register_validators() -> dict[str, Any]:
    """Contribute the ``"pydantic"`` validator."""
    return {"pydantic": create_validator}


def __getattr__(name: str) -> Any:  # lazy export, so that discovery does not import pydantic
    if name == "PydanticValidator":
        from .validator import PydanticValidator

        return PydanticValidator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
