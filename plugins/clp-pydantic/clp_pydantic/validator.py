"""The pydantic validator of one runtime (what ``validation={...}`` builds).

Everything is compiled once, when the runtime is created: one pydantic-core validator per
intent and completeness (from type strings), or the intent's model and a partial variant of
it, and the state validator. A call only runs the compiled validators.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, RootModel, create_model, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import SchemaValidator

from clp_core.plugin_api import (
    CompiledIntent,
    ConfigError,
    Contract,
    UnknownIntentError,
    ValidationError,
    intent_json_schema,
    plain,
    type_name,
)

from ._errors import convert
from ._types import MAX_DEPTH, TooDeep, owned_copy, payload_validator, state_validator

OPTIONS = frozenset({"strict", "schema", "state", "coerce", "validator"})
PAYLOAD = "<payload>"
STATE = "<state>"


def _unreadable(root: str, value: Any, exc: BaseException) -> list[dict[str, str]]:
    """The error reported when validating raised something else than a validation error
    (a validator with a bug, a value whose methods raise). Only the exception's class is
    named: its message may quote the value."""
    return [{"field": root, "expected": f"a value the validators can check ({type(exc).__name__} raised)",
             "got": type_name(value)}]


def _too_deep(field: str, value: Any) -> dict[str, str]:
    return {"field": field, "expected": f"at most {MAX_DEPTH} levels of nesting", "got": type_name(value)}


def _as_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return values if type(values) is dict else dict(values)


def _check_model(model: Any, where: str) -> type[BaseModel]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or issubclass(model, RootModel):
        raise ConfigError(f"{where} must be a pydantic model class (a BaseModel subclass), got {model!r}")
    if not model.__pydantic_complete__:
        try:
            model.model_rebuild()
        except Exception as exc:
            raise ConfigError(f"{where}: {model.__name__} is not fully defined: {exc}") from None
    return model


def _partial_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with every field optional (default None, never validated) and no
    model-level validators: what a partial payload is checked with. Field constraints,
    aliases, discriminators, the model's config and its field validators are kept."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        options: dict[str, Any] = {"default": None, "validate_default": False}
        if info.alias is not None:
            options["alias"] = info.alias
        if info.validation_alias is not None:
            options["validation_alias"] = info.validation_alias
        if info.discriminator is not None:
            options["discriminator"] = info.discriminator
        fields[name] = (annotation, Field(**options))
    validators: dict[str, Any] = {}
    for name, decorator in model.__pydantic_decorators__.field_validators.items():
        func: Any = decorator.func  # bound to the model class when it is a classmethod
        func = classmethod(func.__func__) if inspect.ismethod(func) else staticmethod(func)
        validators[name] = field_validator(*decorator.info.fields, mode=decorator.info.mode,
                                           check_fields=False)(func)
    return create_model(  # type: ignore[no-any-return, call-overload]
        f"{model.__name__}Partial", __config__=model.model_config, __validators__=validators,
        __module__=model.__module__, **fields,
    )


class _TypeStrings:
    """An intent checked against its type strings."""

    def __init__(self, intent: CompiledIntent, strict: bool | None) -> None:
        self.where = f"payload of {intent.name}"
        self.strict = strict
        self.partial = payload_validator(intent.inputs, complete=False)
        self.full = payload_validator(intent.inputs, complete=True)
        self.intent = intent

    def validate(self, values: Mapping[str, Any], complete: bool) -> dict[str, Any]:
        validator = self.full if complete else self.partial
        data: Any = values
        try:
            data = _as_dict(values)
            return validator.validate_python(data, strict=self.strict)  # type: ignore[no-any-return]
        except PydanticValidationError as exc:
            errors = convert(exc, data, root=PAYLOAD)
        except Exception as exc:
            errors = _unreadable(PAYLOAD, values, exc)
        # Raised outside the handler, so pydantic's error (it quotes values) is not chained.
        raise ValidationError(self.where, errors)

    def json_schema(self) -> dict[str, Any]:
        schema = intent_json_schema(self.intent)
        if self.intent.definition.description:
            schema["description"] = self.intent.definition.description
        return schema


class _Model:
    """An intent checked with a hand-written model; inputs the model does not declare are
    checked against their type strings."""

    def __init__(self, intent: CompiledIntent, model: type[BaseModel], strict: bool | None) -> None:
        where = f"validation['schema'][{intent.name!r}]"
        self.where = f"payload of {intent.name}"
        self.strict = strict
        self.intent = intent
        self.model = model
        self.key_of: dict[str, str] = {}  # model field name -> payload key
        for name, info in model.model_fields.items():
            alias = info.validation_alias if info.validation_alias is not None else info.alias
            if alias is not None and not isinstance(alias, str):
                raise ConfigError(f"{where}: field {name!r} of {model.__name__} has a {type(alias).__name__} "
                                  "alias; only plain string aliases can name a payload key")
            self.key_of[name] = alias if alias is not None else name
        self.field_of = {key: name for name, key in self.key_of.items()}
        unknown = [key for name, key in self.key_of.items()
                   if model.model_fields[name].is_required() and key not in intent.inputs]
        if unknown:
            raise ConfigError(f"{where}: {model.__name__} requires {unknown}, which intent {intent.name!r} "
                              f"does not declare (its inputs: {sorted(intent.inputs)})")
        # Values holding all of these (not None) are a whole payload on their own: the whole
        # model checks them, even when the runtime says the payload may be partial (a dispatch).
        self.whole = tuple(dict.fromkeys([
            *intent.required, *(key for name, key in self.key_of.items() if model.model_fields[name].is_required())]))
        self.rest = {key: ftype for key, ftype in intent.inputs.items() if key not in self.field_of}
        self.rest_partial = payload_validator(self.rest, complete=False)
        self.rest_full = payload_validator(self.rest, complete=True)
        try:
            self.partial = _partial_model(model)
        except Exception as exc:
            raise ConfigError(f"{where}: cannot derive a partial model from {model.__name__} "
                              f"(to check payloads before they are complete): {type(exc).__name__}: {exc}") from None
        self._schema: dict[str, Any] | None = None

    def validate(self, values: Mapping[str, Any], complete: bool) -> dict[str, Any]:
        try:
            return self._validate(values, complete)
        except ValidationError:
            raise
        except Exception as exc:
            errors = _unreadable(PAYLOAD, values, exc)
        raise ValidationError(self.where, errors)  # outside the handler: nothing chained

    def _validate(self, values: Mapping[str, Any], complete: bool) -> dict[str, Any]:
        if not complete and all(values.get(key) is not None for key in self.whole):
            complete = True
        model_in: dict[str, Any] = {}
        rest_in: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        for key, value in values.items():
            if value is None:  # None is "not filled yet", as everywhere in CLP
                continue
            if key in self.field_of:
                try:
                    model_in[key] = owned_copy(value)
                except (TooDeep, RecursionError):
                    errors.append(_too_deep(str(key), value))
            else:
                rest_in[key] = value
        checked: dict[str, Any] = {}
        if not errors and (model_in or complete):
            model = self.model if complete else self.partial
            try:
                instance = model.__pydantic_validator__.validate_python(model_in, strict=self.strict)
            except PydanticValidationError as exc:
                found = convert(exc, model_in, root=PAYLOAD, names=self.key_of)
                for error in found:  # a key given as None is not missing: it is None
                    if error["got"] == "missing" and error["field"] in values:
                        error["got"] = "NoneType"
                errors.extend(found)
            else:
                given = instance.model_fields_set
                dumped = instance.model_dump(include=set(given))
                for name in given:  # a field the dump leaves out (exclude=True...) keeps its value
                    if name in self.key_of:
                        checked[self.key_of[name]] = dumped[name] if name in dumped else getattr(instance, name)
        if rest_in or (complete and self.rest):
            validator = self.rest_full if complete else self.rest_partial
            rest_all = {key: values[key] for key in self.rest if key in values} if complete else rest_in
            try:
                checked.update(validator.validate_python(rest_all, strict=self.strict))
            except PydanticValidationError as exc:
                errors.extend(convert(exc, rest_all, root=PAYLOAD))
        if errors:
            raise ValidationError(self.where, errors)
        out = {key: checked.get(key) for key in values}  # None stays None, order kept
        for key, value in checked.items():  # set by a model validator, and a declared input
            if key not in out and key in self.intent.inputs:
                out[key] = value
        return out

    def json_schema(self) -> dict[str, Any]:
        if self._schema is None:
            try:
                schema = self.model.model_json_schema(by_alias=True)
            except Exception as exc:
                raise ConfigError(f"no JSON Schema for {self.model.__name__}: {type(exc).__name__}: {exc}") from None
            properties = schema.setdefault("properties", {})
            required = list(schema.get("required", []))
            extra = intent_json_schema(self.intent)
            for key in self.rest:
                properties[key] = extra["properties"][key]
            for key in self.intent.required:
                if key not in required:
                    required.append(key)
            schema["required"] = required
            schema["additionalProperties"] = False  # the runtime refuses undeclared keys
            if self.intent.definition.description and "description" not in schema:
                schema["description"] = self.intent.definition.description
            self._schema = schema
        return copy.deepcopy(self._schema)


class PydanticValidator:
    """A :class:`clp_core.validation.Validator` built on pydantic.

    ``options`` are the runtime's ``validation={...}``: ``schema`` (intent name -> model),
    ``state`` (a model of the whole state), ``coerce`` (pydantic's lax mode), and ``strict``
    and ``validator``, which the runtime handles.
    """

    def __init__(self, contract: Contract, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = set(options) - OPTIONS
        if unknown:
            raise ConfigError(f"validation: unknown options {sorted(unknown)} (expected {sorted(OPTIONS)})")
        coerce = options.get("coerce", False)
        if not isinstance(coerce, bool):
            raise ConfigError(f"validation['coerce'] must be True or False, got {type(coerce).__name__}")
        # strict=True: nothing converted, whatever the models say. strict=None (coerce): the
        # models' own config and fields decide, lax by default (pydantic's default).
        self.coerce = coerce
        self.strict: bool | None = None if coerce else True
        models = options.get("schema") or {}
        if not isinstance(models, Mapping):
            raise ConfigError("validation['schema'] must map intent names to pydantic models")
        for name in models:
            if name not in contract.intents:
                raise ConfigError(f"validation['schema'] names intent {name!r}, which the contract does not "
                                  f"declare (intents: {sorted(contract.intents)})")
        self._plans: dict[str, _TypeStrings | _Model] = {}
        for name, intent in contract.intents.items():
            declared = getattr(intent.definition, "model", None)  # @contract.intent on a model
            if name in models or declared is not None:
                where = f"validation['schema'][{name!r}]" if name in models else f"intents[{name!r}].model"
                model = _check_model(models[name] if name in models else declared, where)
                self._plans[name] = _Model(intent, model, self.strict)
            else:
                self._plans[name] = _TypeStrings(intent, self.strict)
        state_model = options.get("state")
        self._state_model: type[BaseModel] | None = None
        self._state: SchemaValidator | None = None
        if state_model is not None:
            self._state_model = _check_model(state_model, "validation['state']")
            self._state = self._state_model.__pydantic_validator__  # type: ignore[assignment]
        elif contract.state:
            self._state = state_validator(contract.state)
        self.checks_state = self._state is not None

    # -- the Validator protocol ---------------------------------------------------------
    def validate_payload(self, intent: str, values: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        plan = self._plans.get(intent)
        if plan is None:
            raise UnknownIntentError(intent)
        return plan.validate(values, complete)

    def validate_state(self, state: Mapping[str, Any]) -> None:
        if self._state is None:
            return
        data: Any = getattr(state, "_data", None)  # a StateView: check the dict it wraps, no copy
        if type(data) is not dict:
            data = state if type(state) is dict else plain(dict(state))
        try:
            self._state.validate_python(data, strict=self.strict)
            return
        except PydanticValidationError as exc:
            errors = convert(exc, data, root=STATE)
        except Exception as exc:
            errors = _unreadable(STATE, state, exc)
        raise ValidationError("state", errors)  # outside the handler: nothing chained

    def intent_schema(self, intent: str) -> dict[str, Any]:
        plan = self._plans.get(intent)
        if plan is None:
            raise UnknownIntentError(intent)
        return plan.json_schema()

    # -- extras -------------------------------------------------------------------------
    def state_schema(self) -> dict[str, Any] | None:
        """JSON Schema of the state model, when one was given."""
        return None if self._state_model is None else self._state_model.model_json_schema(by_alias=True)

    def __repr__(self) -> str:
        return (f"PydanticValidator(intents={sorted(self._plans)}, coerce={self.coerce}, "
                f"checks_state={self.checks_state})")
