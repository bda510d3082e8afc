"""What adapters share about stored patches (clp_core.storage.patch): ``patched_document``
loads a base and the patches after it, and ``enveloped`` puts a whole write's text in an
adapter's own envelope without encoding the document again (the FileSystemAdapter's file)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from clp_core import codec
from clp_core.errors import CorruptStateError, StateValueError
from clp_core.storage import FileSystemAdapter
from clp_core.storage.patch import Patch, PatchLog, Write, enveloped, patched_document
from clp_core.testing.patching import big_document


class _Sealing:
    """A toy transform: the text base64-encoded in a sealed envelope."""

    def seal(self, text: str) -> str:
        return json.dumps({"format": codec.SEALED_FORMAT, "kid": "t", "ct": base64.b64encode(text.encode()).decode()})

    def open(self, envelope: Any, *, backend: str, key: str) -> str:
        return base64.b64decode(envelope["ct"]).decode()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_patched_document_applies_the_patches_in_order_and_fills_the_log() -> None:
    base = codec.encode({"state": {"a": 1, "b": [1]}})
    patches = [Patch(((("state", "a"), 2),)).encode(), Patch(((("state", "a"), 3),), (("state", "b"),)).encode()]
    log = PatchLog()
    assert patched_document(base, patches, log, key="k", backend="b") == {"state": {"a": 3}}
    assert (log.base_bytes, log.patch_bytes, log.patches) == (len(base), sum(map(len, patches)), 2)
    given = {"state": {"a": 0}}  # decoded already (the base text holds more than the document)
    assert patched_document(b"{...}", patches[:1], log, key="k", backend="b", document=given) is given
    assert given == {"state": {"a": 2}} and (log.base_bytes, log.patches) == (5, 1)
    with pytest.raises(CorruptStateError, match="'k'"):
        patched_document(base, ["not json"], log, key="k", backend="b")


FIELDS = {"version": 3, "document": None, "key": "k/\u00e9"}


@pytest.mark.parametrize("document", [
    {}, {"state": {}}, {"state": {"a": [1, {"b": None}], "when": dt.date(2024, 1, 2), "s": "}}\u00e9\"{"}},
    big_document(4),
])
@pytest.mark.parametrize("transform", [None, _Sealing()])
def test_enveloped_is_what_encode_writes(document: dict[str, Any], transform: Any) -> None:
    expected = codec.encode({**FIELDS, "document": document})
    with codec.using(transform):
        text = codec.encode(document)  # sealed with a transform: decoded, then encoded
        assert enveloped(text, dict(FIELDS), "document", key="k", backend="b") == codec.encode(
            {**FIELDS, "document": document})
    if transform is None:
        assert enveloped(text, dict(FIELDS), "document", key="k", backend="b") == expected
        with codec.using(_Sealing()):  # a plain text, sealed in its envelope
            sealed = enveloped(text, dict(FIELDS), "document", key="k", backend="b")
            assert codec.decode(sealed, backend="b", key="k") == {**FIELDS, "document": document}


def test_enveloped_refuses_what_encode_refuses_and_reads_what_decode_reads() -> None:
    deep = {"state": {"a": _nested(codec.MAX_NESTING - 3)}}  # fits its text, not one level deeper
    with pytest.raises(StateValueError, match="nests deeper"):
        enveloped(codec.encode(deep), dict(FIELDS), "document", key="k", backend="b")
    with pytest.raises(CorruptStateError, match="not valid JSON"):
        enveloped('{"format":"clp/1","data":{"a":}}', dict(FIELDS), "document", key="k", backend="b")
    spaced = '{"format": "clp/1", "data": {"a": 1}, "extra": 2}'  # not as encode writes it: decoded
    assert codec.decode(enveloped(spaced, dict(FIELDS), "document", key="k", backend="b"), backend="b",
                        key="k") == {**FIELDS, "document": {"a": 1}}


async def test_a_compaction_on_files_encodes_the_document_once(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole write's text goes into the key's file as it is: not encoded again (decoded once, to check it)."""
    adapter = FileSystemAdapter(tmp_path)
    log = PatchLog()
    version = 0
    encode, encoded = codec.encode, []
    monkeypatch.setattr(codec, "encode", lambda value: encoded.append(value) or encode(value))
    for n in (1, 2):  # a new key, then over a base with a patch
        await adapter.load_logged("k", log)
        encoded.clear()
        write = log.prepare(lambda: big_document(n), None)  # noqa: B023 - used at once
        version = await adapter.save_logged("k", write, version)
        assert encoded == [big_document(n)]  # by the patch log, not again by the adapter
        log.done(write)
        assert (tmp_path / "k.json").read_bytes() == encode(
            {"version": version, "document": big_document(n), "key": "k"}).encode()
        version = await adapter.save_logged("k", Write(Patch(((("state", "count"), 9),)).encode(), compacts=False),
                                            version)
        assert await adapter.load_versioned("k") == (big_document(9), version)
    await adapter.close()


async def test_a_compaction_too_deep_for_the_file_is_refused_and_keeps_the_key(tmp_path: Path) -> None:
    adapter = FileSystemAdapter(tmp_path)
    version = await adapter.save_versioned("k", {"state": {"a": 1}}, 0)
    deep = {"state": {"a": _nested(codec.MAX_NESTING - 3)}}
    with pytest.raises(StateValueError, match="nests deeper"):
        await adapter.save_logged("k", Write(codec.encode(deep), compacts=True), version)
    assert await adapter.load_versioned("k") == ({"state": {"a": 1}}, version)
    await adapter.close()


@pytest.mark.parametrize("text", [
    '{"format":"clp/1","data":{"state":{"a":1}},"version":99,"x":{}}',  # ends early, adds fields
    '{"format":"clp/1","data":{"state":{"a":1}},"data":{"state":{"b":2}}}',  # a second data
])
async def test_a_whole_write_not_written_by_the_codec_is_stored_as_it_reads(tmp_path: Path, text: str) -> None:
    adapter = FileSystemAdapter(tmp_path)
    version = await adapter.save_logged("k", Write(text, compacts=True), 0)
    assert version == 1
    assert await adapter.load_versioned("k") == (codec.decode_document(text, backend="t", key="k"), 1)
