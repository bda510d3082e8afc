"""clp_core.codec: strict decoding and the document check every adapter shares."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from clp_core import codec
from clp_core.errors import CorruptStateError, StateValueError


@pytest.mark.parametrize(
    "text",
    [
        '{"format":"clp/1","data":{"x":NaN}}',
        '{"format":"clp/1","data":{"x":Infinity}}',
        '{"format":"clp/1","data":{"x":-Infinity}}',
        '{"format":"clp/1","data":{"x":1e999}}',
    ],
    ids=["nan", "infinity", "minus-infinity", "overflow"],
)
def test_non_finite_numbers_are_corrupt(text: str) -> None:
    with pytest.raises(CorruptStateError, match="'k'"):
        codec.decode(text, backend="test", key="k")


@pytest.mark.parametrize("depth", [codec.MAX_NESTING, 10_000, 100_000])
def test_over_deep_json_is_corrupt_not_recursion_error(depth: int) -> None:
    text = '{"format":"clp/1","data":' + "[" * depth + "]" * depth + "}"
    with pytest.raises(CorruptStateError, match="nests deeper"):
        codec.decode(text, backend="test", key="k")


def test_nesting_up_to_the_limit_decodes() -> None:
    depth = codec.MAX_NESTING - 1  # the envelope is one level
    text = '{"format":"clp/1","data":' + "[" * depth + "]" * depth + "}"
    assert codec.decode(text, backend="test", key="k") is not None


@pytest.mark.parametrize("data", ["null", "[]", "1", '"text"', "true"])
def test_check_document_refuses_what_is_not_an_object(data: str) -> None:
    text = '{"format":"clp/1","data":' + data + "}"
    with pytest.raises(CorruptStateError, match=r"\[test\].*'k'.*not an object"):
        codec.decode_document(text, backend="test", key="k")
    with pytest.raises(CorruptStateError):
        codec.check_document(codec.decode(text, backend="test", key="k"), key="k", backend="test")


def test_check_document_returns_the_document() -> None:
    document = {"state": {"d": dt.date(2024, 1, 2)}}
    assert codec.check_document(document, key="k", backend="t") is document
    assert codec.decode_document(codec.encode(document), backend="t", key="k") == document


@pytest.mark.parametrize(
    "document",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": object()},
        {"x": "lone \ud800 surrogate"},
        {"x": {1, 2}},
    ],
    ids=["nan", "inf", "object", "surrogate", "set"],
)
def test_encode_refuses_what_cannot_be_stored(document: dict[str, object]) -> None:
    with pytest.raises(StateValueError, match="cannot be stored"):
        codec.encode(document)


@pytest.mark.parametrize("document", [
    {}, {"a": 1}, {"s": "é \u2028 \"quoted\" \\ \n", "f": [0.1, -2.5e-300, 1e300, 3.0], "n": None, "b": [True, False]},
    {"when": dt.date(2026, 12, 7), "at": dt.datetime(2026, 12, 7, 1, 2, 3, tzinfo=dt.UTC)},
    {"deep": {"a": [{"b": [[], {}]}]}, "big": 2 ** 80, "emoji": "\U0001f600"},
])
def test_the_reused_encoder_writes_what_json_encoder_writes(document: dict[str, object]) -> None:
    assert codec._encode_chunks is not None  # CPython: the C encoder is reused
    envelope = {"format": codec.FORMAT, "data": document}
    assert codec._json(envelope) == codec._ENCODER.encode(envelope)
    assert codec.encode(document) == codec._ENCODER.encode(envelope)


def test_encode_refuses_a_cycle() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(StateValueError):
        codec.encode({"x": cyclic})


def test_encode_refuses_over_deep_documents() -> None:
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(StateValueError, match="deeper"):
        codec.encode({"x": deep})


# -- the transform extension point (clp-crypto's Encryption is one; this one is a toy) ------------
class _Rot:
    """A stand-in transform: the text base64-encoded in a sealed envelope under key id ``kid``."""

    def __init__(self, kid: str = "t1") -> None:
        self.kid = kid

    def seal(self, text: str) -> str:
        import base64

        return json.dumps({"format": codec.SEALED_FORMAT, "kid": self.kid, "alg": "toy",
                           "ct": base64.b64encode(text.encode()).decode()})

    def open(self, envelope: Any, *, backend: str, key: str) -> str:
        import base64

        if envelope.get("kid") != self.kid:
            raise CorruptStateError(f"key id {envelope.get('kid')!r} unknown", backend=backend)
        return base64.b64decode(envelope["ct"]).decode()


def test_no_transform_by_default() -> None:
    assert codec.current() is None
    assert json.loads(codec.encode({"a": 1}))["format"] == codec.FORMAT


def test_a_transform_seals_writes_and_opens_reads() -> None:
    with codec.using(_Rot()) as installed:
        assert codec.current() is installed
        text = codec.encode({"secret": "s3cr3t", "when": dt.date(2024, 1, 2)})
        assert "s3cr3t" not in text and json.loads(text)["kid"] == "t1"
        assert codec.decode_document(text, backend="b", key="k") == {"secret": "s3cr3t", "when": dt.date(2024, 1, 2)}
        plain = json.dumps({"format": codec.FORMAT, "data": {"old": True}})
        assert codec.decode_document(plain, backend="b", key="k") == {"old": True}  # old data stays readable
    assert codec.current() is None


def test_a_sealed_value_without_a_transform_names_its_key_id() -> None:
    with codec.using(_Rot("k7")):
        text = codec.encode({"a": 1})
    with pytest.raises(CorruptStateError, match=r"encrypted \(key id 'k7'\) and no codec transform is installed"):
        codec.decode_document(text, backend="b", key="doc")


def test_the_transform_s_errors_reach_the_caller() -> None:
    with codec.using(_Rot("k1")):
        text = codec.encode({"a": 1})
    with codec.using(_Rot("k2")), pytest.raises(CorruptStateError, match="key id 'k1' unknown"):
        codec.decode_document(text, backend="b", key="doc")


def test_use_returns_the_previous_transform() -> None:
    first, second = _Rot(), _Rot()
    assert codec.use(first) is None
    try:
        assert codec.use(second) is first
    finally:
        codec.use(None)
