"""The AES-256-GCM codec transform (:class:`Encryption`) and what configuration builds."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clp_core.plugin_api import ConfigError, CorruptStateError, codec

ALGORITHM = "AES-256-GCM"
_NONCE = 12  # bytes, GCM's standard nonce


def generate_key() -> str:
    """A fresh random 256-bit key, base64 (what ``CLP_KEY_*`` variables hold)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


def load_key(kid: str, value: bytes | str) -> bytes:
    """The 32 key bytes of ``value``: bytes as they are, or a base64 text (standard or
    URL-safe), or ``"env:NAME"``: the base64 text in environment variable ``NAME``."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if not found:
            raise ConfigError(f"clp-crypto: key {kid!r} comes from environment variable {name}, which is not set")
        value = found
    if isinstance(value, str):
        text = value.strip()
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"clp-crypto: key {kid!r} is not base64") from None
    else:
        raw = bytes(value)
    if len(raw) != 32:
        raise ConfigError(f"clp-crypto: key {kid!r} has {len(raw)} bytes; AES-256 needs 32")
    return raw


def _associated(kid: str) -> bytes:
    # bound to the ciphertext: changing the format, the algorithm or the key id is tampering
    return f"{codec.SEALED_FORMAT}|{ALGORITHM}|{kid}".encode()


class Encryption:
    """A :class:`clp_core.codec.Transform` sealing stored text with AES-256-GCM.

    ``keys`` maps key ids to keys (32 bytes, base64 text, or ``"env:NAME"``); ``current`` is
    the id new writes use (the only key when there is one). Any listed key opens data sealed
    under it, so rotating is: add the new key, make it current, keep the old one listed while
    data sealed under it remains.
    """

    alg = ALGORITHM

    def __init__(self, keys: Mapping[str, bytes | str], current: str | None = None) -> None:
        if not keys:
            raise ConfigError("clp-crypto: no keys given")
        if current is None:
            if len(keys) != 1:
                raise ConfigError(f"clp-crypto: several keys {sorted(keys)}; say which is current")
            current = next(iter(keys))
        if current not in keys:
            raise ConfigError(f"clp-crypto: current key {current!r} is not among the keys {sorted(keys)}")
        self.current = current
        self._ciphers = {str(kid): AESGCM(load_key(str(kid), value)) for kid, value in keys.items()}
        self._aad = {kid: _associated(kid) for kid in self._ciphers}
        self._seal_cipher = self._ciphers[current]
        self._seal_aad = self._aad[current]
        self._prefix = ('{"format":' + json.dumps(codec.SEALED_FORMAT) + ',"kid":' + json.dumps(current)
                        + ',"alg":' + json.dumps(ALGORITHM) + ',"nonce":"')

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    def __repr__(self) -> str:
        return f"Encryption(alg={ALGORITHM!r}, current={self.current!r}, keys={self.key_ids!r})"

    def seal(self, text: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._seal_cipher.encrypt(nonce, text.encode("utf-8"), self._seal_aad)
        return (self._prefix + base64.b64encode(nonce).decode("ascii") + '","ct":"'
                + base64.b64encode(sealed).decode("ascii") + '"}')

    def open(self, envelope: Mapping[str, Any], *, backend: str, key: str) -> str:
        kid = envelope.get("kid")
        where = f"stored value for key {key!r}"
        if envelope.get("alg") != ALGORITHM:
            raise CorruptStateError(f"{where} is sealed with {envelope.get('alg')!r} under key id {kid!r}; "
                                    f"clp-crypto reads {ALGORITHM!r}", backend=backend)
        cipher = self._ciphers.get(kid) if isinstance(kid, str) else None
        if cipher is None or not isinstance(kid, str):
            raise CorruptStateError(f"{where} is encrypted under key id {kid!r}, which is not among the "
                                    f"configured keys {self.key_ids}", backend=backend)
        try:
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            sealed = base64.b64decode(envelope["ct"], validate=True)
            if len(nonce) != _NONCE:
                raise ValueError("bad nonce")
            return cipher.decrypt(nonce, sealed, self._aad[kid]).decode("utf-8")
        except (KeyError, TypeError, ValueError, binascii.Error, InvalidTag):
            raise CorruptStateError(f"{where} failed to decrypt under key id {kid!r}: wrong key for that id, "
                                    "or the data was tampered with", backend=backend) from None


class Refusing:
    """What configuration installs when ``[plugins.clp-crypto]`` asks for encryption but its
    keys cannot be loaded: writes and encrypted reads fail (nothing is written in clear)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<clp-crypto refusing: {self.reason}>"

    def seal(self, text: str) -> str:
        raise ConfigError(f"clp-crypto is configured but cannot encrypt: {self.reason}")

    def open(self, envelope: Mapping[str, Any], *, backend: str, key: str) -> str:
        raise CorruptStateError(f"stored value for key {key!r} is encrypted under key id {envelope.get('kid')!r} "
                                f"and clp-crypto cannot decrypt: {self.reason}", backend=backend)
