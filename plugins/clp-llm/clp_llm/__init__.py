"""clp-llm: an AI provider for CLP backed by Simon Willison's ``llm`` library.

::

    provider = LLMProvider("gpt-4o-mini", system="You triage support tickets.")
    runtime = clp.create_runtime(contract, provider)
    provider.bind(runtime)          # the provider asks the runtime for each intent's JSON Schema

The provider proposes only the fields of the current intent that are still missing, checked
against the intent's JSON Schema (used as the model's structured-output schema when the
model supports schemas, written into the prompt otherwise). Malformed or off-schema output
is retried ``retries`` times, then refused with a :class:`clp_core.errors.ProposalError`:
nothing is staged. The answer is a :class:`clp_core.log.Proposed` (a read-only dict of the
values) whose ``meta`` records the model id, prompt, raw responses and token usage, never
the API key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from clp_core.plugin_api import ConfigError, ProposalError, Proposed, compiled, intent_json_schema

__version__ = "0.3.0"

from ._schema import problems

__all__ = ["DEFAULT_SYSTEM", "LLMProvider", "proposal_schema"]

DEFAULT_SYSTEM = (
    "You fill in the missing fields of a request made to an application. Propose values only "
    "for the fields you are asked for, inferred from the values already given; do not invent "
    "facts. For an optional field you cannot infer, use null."
)


def proposal_schema(intent_schema: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a proposal: the intent's fields that ``payload`` does not fill yet
    (required ones stay required), nothing else."""
    properties = intent_schema.get("properties") or {}
    missing = [name for name in properties if payload.get(name) is None]
    schema: dict[str, Any] = {
        "title": intent_schema.get("title", "proposal"),
        "type": "object",
        "properties": {name: properties[name] for name in missing},
        "required": [name for name in intent_schema.get("required", ()) if name in missing],
        "additionalProperties": False,
    }
    for defs in ("$defs", "definitions"):
        if defs in intent_schema:
            schema[defs] = intent_schema[defs]
    return schema


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def _parse(raw: str, schema: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        values = json.loads(_strip_fence(raw))
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(values, dict):
        return None, f"a JSON {type(values).__name__}, not an object"
    found = problems(values, schema)
    if found:
        return None, "; ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
    return {k: v for k, v in values.items() if v is not None}, None


class LLMProvider:
    """An ``ai_provider`` for :func:`clp_core.create_runtime`, backed by an ``llm`` model.

    ``model`` is a model id or alias ``llm`` knows (``"gpt-4o-mini"``; install the llm plugin
    of other vendors) or an ``llm`` model object. ``timeout`` (seconds) bounds a whole
    proposal, retries included; ``retries`` is how many more times a malformed or
    off-schema answer is asked again. ``key`` is passed to ``llm`` (else ``llm``'s own key
    lookup applies: ``llm keys set openai`` or ``OPENAI_API_KEY``); it is never recorded.

    The schema of each intent comes from :meth:`bind` (``runtime.intent_schema``, which
    includes validation models), ``schemas=`` (intent name -> JSON Schema, or a function of
    the intent name), or ``contract=`` (the contract's type strings).
    """

    def __init__(
        self,
        model: Any = "gpt-4o-mini",
        *,
        system: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        schemas: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]] | None = None,
        contract: Any = None,
        key: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise ConfigError("LLMProvider: timeout must be a positive number of seconds")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError("LLMProvider: retries must be a non-negative integer")
        self.model = model
        self.system = DEFAULT_SYSTEM if system is None else system
        self.timeout = float(timeout)
        self.retries = retries
        self.options = dict(options or {})
        self.__key = key
        self._schema_of: Callable[[str], Mapping[str, Any]] | None = None
        if schemas is not None:
            self._schema_of = schemas if callable(schemas) else schemas.__getitem__
        self._intents: Mapping[str, Any] = {}
        if contract is not None:
            self._intents = compiled(contract).intents
            if self._schema_of is None:
                self._schema_of = lambda name: intent_json_schema(self._intents[name])
        self._model: Any = None
        self.last_meta: Mapping[str, Any] | None = None

    def __repr__(self) -> str:  # no key
        return f"LLMProvider(model={self.model_id!r}, timeout={self.timeout}, retries={self.retries})"

    @property
    def model_id(self) -> str:
        return self.model if isinstance(self.model, str) else str(getattr(self.model, "model_id", self.model))

    def bind(self, runtime: Any) -> LLMProvider:
        """Take each intent's JSON Schema from ``runtime.intent_schema``. Returns self."""
        self._schema_of = runtime.intent_schema
        self._intents = compiled(runtime.contract).intents
        return self

    def schema_for(self, intent: str) -> Mapping[str, Any]:
        if self._schema_of is None:
            raise ProposalError(
                "LLMProvider does not know the intents' JSON Schemas: call provider.bind(runtime), or "
                "give LLMProvider(schemas=...) or LLMProvider(contract=...)")
        try:
            return self._schema_of(intent)
        except KeyError:
            raise ProposalError(f"LLMProvider has no JSON Schema for intent {intent!r}") from None

    def _resolve(self) -> Any:
        if self._model is not None:
            return self._model
        if not isinstance(self.model, str):
            self._model = self.model
            return self._model
        import llm

        try:
            self._model = llm.get_async_model(self.model)
        except llm.UnknownModelError:
            try:
                self._model = llm.get_model(self.model)
            except llm.UnknownModelError:
                raise ProposalError(
                    f"llm knows no model {self.model!r} (`llm models` lists them; other vendors' models "
                    "need their llm plugin, e.g. `llm install llm-anthropic`)") from None
        return self._model

    def _prompt(self, intent: Any, schema: Mapping[str, Any], structured: bool) -> str:
        given = {k: v for k, v in intent.payload.items() if v is not None}
        intent_schema = self.schema_for(intent.name)
        lines = [f"Request: {intent.name}"]
        declared = self._intents.get(intent.name)
        description = intent_schema.get("description") or (declared and declared.definition.description)
        if description:
            lines.append(f"Purpose: {description}")
        lines.append(f"Values given: {json.dumps(given, default=str, sort_keys=True)}")
        lines.append(f"Propose values for: {', '.join(schema['properties'])}")
        if structured:
            lines.append("Answer with a JSON object.")
        else:
            lines.append("Answer with only a JSON object (no prose, no code fence) that fits this JSON Schema:")
            lines.append(json.dumps(schema, sort_keys=True))
        return "\n".join(lines)

    async def _ask(self, model: Any, text: str, schema: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = dict(self.options)
        if schema is not None:
            kwargs["schema"] = dict(schema)
        if self.__key is not None:
            kwargs["key"] = self.__key
        response = model.prompt(text, system=self.system, **kwargs)
        if hasattr(response, "__await__"):  # an llm AsyncResponse
            raw = await response.text()
            usage = await response.usage()
        else:  # a sync model: run it off the event loop

            def run() -> tuple[str, Any]:
                return response.text(), response.usage()

            raw, usage = await asyncio.to_thread(run)
        return raw, {"input": usage.input, "output": usage.output, "details": usage.details}

    async def __call__(self, intent: Any) -> Proposed:
        schema = proposal_schema(self.schema_for(intent.name), intent.payload)
        meta: dict[str, Any] = {"provider": "clp-llm", "model": self.model_id, "intent": intent.name}
        if not schema["properties"]:
            meta["skipped"] = "every field is given"
            self.last_meta = meta
            return Proposed({}, meta)
        model = self._resolve()
        meta["model"] = str(getattr(model, "model_id", self.model_id))
        structured = bool(getattr(model, "supports_schema", False))
        prompt = self._prompt(intent, schema, structured)
        meta.update({"schema_mode": "structured" if structured else "prompt", "system": self.system,
                     "prompt": prompt, "schema": schema, "attempts": []})
        started = time.monotonic()
        deadline = started + self.timeout
        text = prompt
        problem = ""
        try:
            for _ in range(self.retries + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    raw, usage = await asyncio.wait_for(self._ask(model, text, schema if structured else None),
                                                        remaining)
                except TimeoutError:
                    raise
                except Exception as exc:
                    meta["error"] = f"{type(exc).__name__}: {exc}"
                    raise ProposalError(f"model {meta['model']} failed for {intent.name}: {meta['error']}") from exc
                values, found = _parse(raw, schema)
                meta["attempts"].append({"response": raw, "usage": usage, "problem": found})
                meta["response"], meta["usage"] = raw, usage
                if values is not None:
                    meta["duration_ms"] = round((time.monotonic() - started) * 1000)
                    self.last_meta = meta
                    return Proposed(values, meta)
                problem = found or ""
                text = (f"{prompt}\n\nYour previous answer was rejected: {problem}. Answer again with only a "
                        "JSON object that fits the schema.")
        except TimeoutError:
            meta["error"] = f"timeout after {self.timeout:g}s"
            self.last_meta = meta
            raise ProposalError(
                f"model {meta['model']} did not answer within {self.timeout:g}s for {intent.name}") from None
        finally:
            meta["duration_ms"] = round((time.monotonic() - started) * 1000)
            self.last_meta = meta
        attempts = self.retries + 1
        raise ProposalError(f"model {meta['model']} gave no valid proposal for {intent.name} in {attempts} "
                            f"attempt{'s' if attempts > 1 else ''}: {problem}")
