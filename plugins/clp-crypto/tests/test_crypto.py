"""clp-crypto on the codec and on the local backends (SQLite, files): sealed envelopes, no
plaintext in the raw bytes, clear errors for a missing or wrong key and for tampering, key
rotation, old plain data still readable, and configuration by name."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from clp_crypto import Encryption, Refusing, generate_key
from clp_crypto import plugin as crypto_plugin

import clp_core as clp
from clp_core import codec
from clp_core.plugin_api import (
    ConfigError,
    CorruptStateError,
    Event,
    Inactive,
    Snapshot,
    event_from_json,
    event_to_json,
    snapshot_from_json,
    snapshot_to_json,
)

from .conftest import SECRET, notes, read_back, write_notes


# -- the codec ------------------------------------------------------------------------------------
def test_a_sealed_envelope_is_json_and_hides_the_document(encrypted: Encryption) -> None:
    text = codec.encode({"note": SECRET})
    envelope = json.loads(text)
    assert envelope["format"] == "clp/1+enc" and envelope["kid"] == "k2" and envelope["alg"] == "AES-256-GCM"
    assert set(envelope) == {"format", "kid", "alg", "nonce", "ct"}
    assert SECRET not in text
    assert codec.decode_document(text, backend="t", key="doc") == {"note": SECRET}
    assert codec.encode({"note": SECRET}) != text  # a fresh nonce each time


def test_events_and_snapshots_are_sealed(encrypted: Encryption) -> None:
    event = Event(aggregate_id="a", seq=1, kind="write", data={"note": SECRET})
    text = event_to_json(event)
    assert SECRET not in text and json.loads(text)["format"] == "clp/1+enc"
    assert event_from_json(text, backend="t") == event
    snapshot = Snapshot(seq=1, state={"note": SECRET})
    text = snapshot_to_json(snapshot)
    assert SECRET not in text and json.loads(text)["format"] == "clp/1+enc"
    assert snapshot_from_json(text, backend="t").state == {"note": SECRET}


def test_plain_envelopes_stay_readable(encrypted: Encryption) -> None:
    with codec.using(None):
        plain = codec.encode({"note": "old"})
    assert codec.decode_document(plain, backend="t", key="doc") == {"note": "old"}


def test_no_transform_installed_is_a_clear_error(encrypted: Encryption) -> None:
    text = codec.encode({"note": SECRET})
    with codec.using(None), pytest.raises(CorruptStateError, match=r"key id 'k2'.*no codec transform"):
        codec.decode_document(text, backend="t", key="doc")


def test_an_unknown_key_id_is_a_clear_error(keys: dict[str, str]) -> None:
    with codec.using(Encryption(keys=keys, current="k2")):
        text = codec.encode({"note": SECRET})
    with codec.using(Encryption(keys={"k1": keys["k1"]})), \
            pytest.raises(CorruptStateError, match=r"key id 'k2', which is not among the configured keys \['k1'\]"):
        codec.decode_document(text, backend="t", key="doc")


def test_a_wrong_key_under_the_same_id_is_a_clear_error(keys: dict[str, str]) -> None:
    with codec.using(Encryption(keys={"k2": keys["k2"]})):
        text = codec.encode({"note": SECRET})
    with codec.using(Encryption(keys={"k2": generate_key()})), \
            pytest.raises(CorruptStateError, match="failed to decrypt under key id 'k2'"):
        codec.decode_document(text, backend="t", key="doc")


@pytest.mark.parametrize("field", ["ct", "nonce", "kid", "alg", "format"])
def test_tampering_is_detected(encrypted: Encryption, field: str) -> None:
    envelope = json.loads(codec.encode({"note": SECRET}))
    if field in ("ct", "nonce"):
        raw = bytearray(base64.b64decode(envelope[field]))
        raw[0] ^= 1
        envelope[field] = base64.b64encode(bytes(raw)).decode()
    else:
        envelope[field] = {"kid": "k1", "alg": "AES-128-GCM", "format": "clp/1"}[field]
    with pytest.raises(CorruptStateError):
        codec.decode_document(json.dumps(envelope), backend="t", key="doc")


def test_a_sealed_envelope_inside_a_sealed_one_is_refused(encrypted: Encryption) -> None:
    twice = encrypted.seal(codec.encode({"note": SECRET}))
    with pytest.raises(CorruptStateError, match="not a CLP envelope"):
        codec.decode_document(twice, backend="t", key="doc")


def test_using_restores_the_previous_transform(keys: dict[str, str]) -> None:
    first, second = Encryption(keys=keys, current="k1"), Encryption(keys=keys, current="k2")
    codec.use(first)
    with codec.using(second):
        assert codec.current() is second
    assert codec.current() is first


@pytest.mark.parametrize(("keys", "current", "message"), [
    ({}, None, "no keys"),
    ({"k1": base64.b64encode(b"short").decode()}, None, "has 5 bytes"),
    ({"k1": "not base64!"}, None, "not base64"),
    ({"k1": generate_key(), "k2": generate_key()}, None, "say which is current"),
    ({"k1": generate_key()}, "k9", "not among the keys"),
])
def test_bad_keys_are_config_errors(keys: dict[str, str], current: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Encryption(keys=keys, current=current)


# -- local backends: the raw bytes ------------------------------------------------------------------
def _sqlite_dump(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [repr(row) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"')]
    finally:
        connection.close()
    assert rows, "nothing was stored"
    return "\n".join(rows)


def _files_dump(directory: Path) -> bytes:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files, "nothing was stored"
    return b"\n".join(p.read_bytes() for p in files)


async def test_sqlite_storage_holds_no_plaintext(encrypted: Encryption, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    state = await write_notes(storage=url, storage_key="doc")
    assert state["note"] == f"{SECRET}-2"
    raw = _sqlite_dump(tmp_path / "state.db")
    assert SECRET not in raw and "clp/1+enc" in raw
    assert await read_back(storage=url, storage_key="doc") == state


async def test_sqlite_event_store_and_snapshots_hold_no_plaintext(encrypted: Encryption, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    state = await write_notes(5, event_store=url, storage_key="stream", snapshot_every=2)
    raw = _sqlite_dump(tmp_path / "events.db")
    assert SECRET not in raw and "clp/1+enc" in raw
    async with clp.create_runtime(notes(), event_store=url, storage_key="stream") as runtime:
        assert dict(runtime.get_state()) == state
        snapshot = await runtime.event_store.load_snapshot("stream")
        assert snapshot is not None and snapshot.state["note"].startswith(SECRET)


async def test_files_storage_holds_no_plaintext(encrypted: Encryption, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'state'}"
    state = await write_notes(storage=url, storage_key="doc")
    raw = _files_dump(tmp_path / "state")
    assert SECRET.encode() not in raw and b"clp/1+enc" in raw
    assert await read_back(storage=url, storage_key="doc") == state


async def test_a_missing_key_is_an_error_never_an_empty_state(encrypted: Encryption, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    await write_notes(storage=url, storage_key="doc")
    codec.use(None)
    with pytest.raises(CorruptStateError, match="key id 'k2'"):
        await read_back(storage=url, storage_key="doc")
    codec.use(Encryption(keys={"k2": generate_key()}))
    with pytest.raises(CorruptStateError, match="failed to decrypt under key id 'k2'"):
        await read_back(storage=url, storage_key="doc")


async def test_rotation_reads_old_data_and_writes_under_the_current_key(keys: dict[str, str],
                                                                        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    codec.use(Encryption(keys={"k1": keys["k1"]}))
    await write_notes(1, storage=url, storage_key="old")
    await write_notes(1, storage=url, storage_key="both")
    codec.use(Encryption(keys=keys, current="k2"))
    assert (await read_back(storage=url, storage_key="old"))["note"] == f"{SECRET}-0"
    await write_notes(2, storage=url, storage_key="both")
    kids = {json.loads(row[0])["kid"] for row in _rows(tmp_path / "state.db")}
    assert kids == {"k1", "k2"}
    codec.use(Encryption(keys={"k2": keys["k2"]}))  # k1 retired: what is still under k1 says so
    assert (await read_back(storage=url, storage_key="both"))["count"] == 3
    with pytest.raises(CorruptStateError, match="key id 'k1'"):
        await read_back(storage=url, storage_key="old")


def _rows(path: Path) -> list[tuple[str]]:
    connection = sqlite3.connect(path)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                found += [(cell,) for cell in row if isinstance(cell, str) and cell.startswith('{"format"')]
        return found
    finally:
        connection.close()


async def test_plain_data_is_migrated_by_writing(encrypted: Encryption, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with codec.using(None):
        await write_notes(1, storage=url, storage_key="doc")
    assert SECRET in _sqlite_dump(tmp_path / "state.db")
    await write_notes(1, storage=url, storage_key="doc")  # read plain, written sealed
    assert SECRET not in _sqlite_dump(tmp_path / "state.db")
    assert (await read_back(storage=url, storage_key="doc"))["count"] == 2


# -- configuration by name --------------------------------------------------------------------------
async def test_configured_by_name_from_environment_variables(keys: dict[str, str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLP_TEST_CRYPTO_K1", keys["k1"])
    monkeypatch.setenv("CLP_TEST_CRYPTO_K2", keys["k2"])
    config = {"plugins": {"clp-crypto": {"keys": {"k1": "env:CLP_TEST_CRYPTO_K1", "k2": "env:CLP_TEST_CRYPTO_K2"},
                                         "current": "k2"}}}
    codec.use(None)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    await write_notes(storage=url, storage_key="doc", config=config)
    installed = codec.current()
    assert isinstance(installed, Encryption) and installed.current == "k2"
    raw = _sqlite_dump(tmp_path / "state.db")
    assert SECRET not in raw and '"kid":"k2"' in raw


def test_configure_without_keys_is_inactive() -> None:
    codec.use(None)
    assert isinstance(crypto_plugin.configure({}), Inactive)
    assert codec.current() is None


def test_configure_with_a_missing_variable_refuses_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLP_TEST_CRYPTO_UNSET", raising=False)
    codec.use(None)
    with pytest.raises(ConfigError, match="CLP_TEST_CRYPTO_UNSET, which is not set"):
        crypto_plugin.configure({"keys": {"k1": "env:CLP_TEST_CRYPTO_UNSET"}})
    assert isinstance(codec.current(), Refusing)
    with pytest.raises(ConfigError, match="cannot encrypt"):
        codec.encode({"note": SECRET})


def test_the_command_line_reads_an_encrypted_store_with_the_configured_keys(
        keys: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``clp state`` configures the plugins before it opens the store, as a runtime does."""
    pytest.importorskip("typer")
    import asyncio
    import json

    from typer.testing import CliRunner

    from clp_core.cli import build_app
    from clp_core.plugins import process_config

    monkeypatch.setenv("CLP_TEST_CRYPTO_K1", keys["k1"])
    (tmp_path / "clp.toml").write_text('[plugins.clp-crypto]\nkeys = {k1 = "env:CLP_TEST_CRYPTO_K1"}\n')
    monkeypatch.setenv("CLP_CONFIG", str(tmp_path / "clp.toml"))
    process_config(refresh=True)
    try:
        url = f"sqlite:///{tmp_path / 'events.db'}"
        asyncio.run(write_notes(event_store=url, storage_key="doc"))
        assert SECRET not in _sqlite_dump(tmp_path / "events.db")
        codec.use(None)  # as in a new process: nothing installed, no manager configured yet
        process_config(refresh=True)
        result = CliRunner().invoke(build_app(), ["state", url, "doc", "--json"])
        assert result.exit_code == 0, result.output
        assert SECRET in json.dumps(json.loads(result.output))
    finally:
        monkeypatch.delenv("CLP_CONFIG")  # the next tests' configuration has no keys
        process_config(refresh=True)
