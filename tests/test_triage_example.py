"""examples/triage.py, the support-ticket triage app of the Pythonic API: decorator contract,
pydantic intents, clp-llm proposals, Redis storage. Here the model is llm's scripted test
model (a real ``llm`` model class), and the app is checked to survive a restart."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import uuid
from typing import Any

import pytest

pytest.importorskip("clp_llm")
pytest.importorskip("clp_redis")
pytest.importorskip("clp_pydantic")

from clp_llm.testing import json_reply, scripted_model

from clp_core.testing.pytest_plugin import service_unavailable

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "triage.py"
REDIS = "redis://127.0.0.1:6379/0"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("triage_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


async def test_triage_app_runs_on_redis_with_an_llm_model_and_survives_a_restart(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS)
    try:
        await client.ping()
    except Exception:
        service_unavailable(request.config, f"Redis at {REDIS}")
    prefix = f"test-triage-{uuid.uuid4().hex}:"
    triage = _load()
    assert len(EXAMPLE.read_text().splitlines()) < 80
    try:
        with scripted_model("triage-test", [json_reply({"category": "billing", "priority": "high"})]) as script:
            await triage.main(f"{REDIS}?prefix={prefix}", "triage-test")
        out = capsys.readouterr().out
        assert "proposed: {'category': 'billing', 'priority': 'high'}" in out
        assert "by: triage-test" in out
        assert "denied: Guard unknown_agent denied - suggests {'agent': 'alice'}" in out
        assert ("after restart: {'title': 'I was charged twice in May', 'category': 'billing', "
                "'priority': 'high', 'agent': 'alice'}") in out
        assert len(script.prompts) == 1 and script.systems == ["You triage support tickets."]
        assert script.schemas[0]["properties"]["priority"]["anyOf"][0]["enum"] == ["low", "normal", "high"]
        assert [key async for key in client.scan_iter(match=f"{prefix}*")]  # it really is in Redis
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()
