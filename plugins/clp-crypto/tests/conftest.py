"""Fixtures of clp-crypto's tests: keys, an installed encryption (removed afterwards), a
contract whose state and payloads hold a distinctive secret, and raw readers of backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clp_crypto import Encryption, generate_key

import clp_core as clp
from clp_core import codec

SECRET = "TOPSECRET-7f3a9c-plaintext"


@pytest.fixture
def keys() -> dict[str, str]:
    return {"k1": generate_key(), "k2": generate_key()}


@pytest.fixture
def encrypted(keys: dict[str, str]) -> Iterator[Encryption]:
    """Encryption under k2 (k1 listed too) installed for the test, then the previous codec back."""
    encryption = Encryption(keys=keys, current="k2")
    with codec.using(encryption):
        yield encryption


@pytest.fixture(autouse=True)
def _codec_restored() -> Iterator[None]:
    previous = codec.current()
    yield
    codec.use(previous)


def notes() -> clp.Contract:
    return clp.create_contract(
        intents={"write": {"inputs": {"note": "string"}}},
        state={"note": "string", "count": "number"},
        transitions={"write": {"effects": lambda ctx: {
            "note": ctx.intent.payload["note"], "count": (ctx.state.get("count") or 0) + 1}}},
    )


async def write_notes(times: int = 3, **options: Any) -> dict[str, Any]:
    async with clp.create_runtime(notes(), **options) as runtime:
        for i in range(times):
            await runtime.execute("write", {"note": f"{SECRET}-{i}"})
        return dict(runtime.get_state())


async def read_back(**options: Any) -> dict[str, Any]:
    async with clp.create_runtime(notes(), **options) as runtime:
        return dict(runtime.get_state())
