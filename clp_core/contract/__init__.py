"""The contract: intents, state schema, guards and transitions, checked when created.

Two ways to write one, compiled by the same checks into the same frozen :class:`Contract`:
the dict form (:func:`create_contract`) and the decorator builder (``clp.Contract()``, see
:class:`ContractBuilder`). :func:`compiled` gives the frozen contract of either.

The parts: :mod:`.model` (the frozen contract and what it holds), :mod:`.scope` (``on=``),
:mod:`.compile` (the checks, :func:`create_contract`), :mod:`.inputs` (inputs from Python
classes) and :mod:`.builder` (the decorator form).
"""

from __future__ import annotations

from .builder import ContractBuilder, compiled
from .compile import create_contract
from .inputs import inputs_from_class
from .model import CompiledIntent, Contract, Ctx, Guard, IntentDef, IntentOf, P, Predicate, Transition, path

__all__ = [
    "CompiledIntent", "Contract", "ContractBuilder", "Ctx", "Guard", "IntentDef", "IntentOf", "P", "Predicate",
    "Transition", "compiled", "create_contract", "inputs_from_class", "path",
]
