"""A deterministic ``llm`` model for tests and examples: no network, scripted answers.

It is a real ``llm`` model (``llm.Model`` and ``llm.AsyncModel`` subclasses) registered
through llm's plugin hook ``register_models``, so ``llm.get_async_model(model_id)`` and
:class:`clp_llm.LLMProvider` find it as they find any model::

    with scripted_model("triage-bot", ['{"priority": "high"}']) as script:
        provider = LLMProvider("triage-bot", contract=contract)
        ...
        script.prompts   # what the model was asked
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import llm

Reply = str | Callable[[Any], str]


class Script:
    """The answers of a scripted model, in order (the last one repeats), and its calls."""

    def __init__(self, model_id: str, replies: Sequence[Reply], *, supports_schema: bool, delay: float,
                 needs_key: bool = False) -> None:
        self.model_id = model_id
        self.needs_key = needs_key
        self.replies = list(replies) or ["{}"]
        self.supports_schema = supports_schema
        self.delay = delay
        self.prompts: list[str] = []
        self.systems: list[str | None] = []
        self.schemas: list[Any] = []
        self.keys: list[str | None] = []

    def answer(self, prompt: Any) -> str:
        self.prompts.append(prompt.prompt)
        self.systems.append(prompt.system)
        self.schemas.append(prompt.schema)
        reply = self.replies[min(len(self.prompts) - 1, len(self.replies) - 1)]
        return reply(prompt) if callable(reply) else reply


def _usage(response: Any, prompt: Any, text: str) -> None:
    response.set_usage(input=len((prompt.prompt or "").split()), output=len(text.split()),
                       details={"scripted": True})


class _Scripted:
    """What the sync and the async scripted models share: their id, schema support and key
    from the :class:`Script`."""

    needs_key: str | None = None
    key_env_var: str | None = None
    can_stream = False

    def __init__(self, script: Script) -> None:
        self.script = script
        self.model_id = script.model_id
        self.supports_schema = script.supports_schema
        if script.needs_key:  # llm then resolves a key: key=..., `llm keys set scripted`, or the env var
            self.needs_key = "scripted"
            self.key_env_var = "CLP_LLM_SCRIPTED_KEY"


class ScriptedModel(_Scripted, llm.KeyModel):
    def execute(  # type: ignore[override]
        self, prompt: Any, stream: bool, response: Any, conversation: Any, key: str | None = None
    ) -> Iterator[str]:
        self.script.keys.append(key)
        time.sleep(self.script.delay)
        text = self.script.answer(prompt)
        _usage(response, prompt, text)
        yield text


class AsyncScriptedModel(_Scripted, llm.AsyncKeyModel):
    async def execute(  # type: ignore[override]
        self, prompt: Any, stream: bool, response: Any, conversation: Any, key: str | None = None
    ) -> AsyncIterator[str]:
        self.script.keys.append(key)
        await asyncio.sleep(self.script.delay)
        text = self.script.answer(prompt)
        _usage(response, prompt, text)
        yield text


class _Plugin:
    def __init__(self, script: Script, *, async_model: bool) -> None:
        self.script = script
        self.async_model = async_model

    @llm.hookimpl
    def register_models(self, register: Any) -> None:
        register(ScriptedModel(self.script), AsyncScriptedModel(self.script) if self.async_model else None)


@contextlib.contextmanager
def scripted_model(model_id: str, replies: Sequence[Reply], *, supports_schema: bool = True, delay: float = 0.0,
                   async_model: bool = True, needs_key: bool = False) -> Iterator[Script]:
    """Register a scripted model with ``llm`` for the duration of the block.

    ``replies`` are answer texts (or functions of llm's ``Prompt``); ``supports_schema``
    says whether the model takes a structured-output schema; ``delay`` (seconds) is how
    long each answer takes; ``async_model=False`` registers only the sync model;
    ``needs_key=True`` makes llm require an API key, as hosted models do.
    """
    script = Script(model_id, replies, supports_schema=supports_schema, delay=delay, needs_key=needs_key)
    name = f"clp-llm-scripted:{model_id}:{id(script)}"
    llm.plugins.pm.register(_Plugin(script, async_model=async_model), name=name)
    try:
        yield script
    finally:
        llm.plugins.pm.unregister(name=name)


def json_reply(values: Any) -> str:
    return json.dumps(values)
