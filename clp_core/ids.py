"""Unique, sortable ids: UUID version 7 (RFC 9562), as strings.

48 bits of Unix milliseconds, then a 12-bit sequence that keeps ids made in the same
millisecond by this process in order, then 62 random bits. The standard library has no
``uuid7`` before Python 3.14, and the core takes no dependency for a dozen lines.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from typing import Any

_last: list[Any] = [0, 0, ""]  # the millisecond, the sequence and the text they start an id with


def _start(ms: int) -> str:
    """The first 15 characters of the ids of millisecond ``ms``: ``tttttttt-tttt-7``."""
    h = f"{ms:012x}"
    return f"{h[:8]}-{h[8:]}-7"


_getrandbits = random.getrandbits
_time_ns = time.time_ns
_VARIANT = 0b10 << 62


def new_id() -> str:
    """A new UUIDv7 string; later calls in this process sort after earlier ones."""
    ms = _time_ns() // 1_000_000
    last = _last
    if ms > last[0]:
        last[0], last[1], last[2] = ms, random.getrandbits(10), _start(ms)  # a random start, room to count up
    else:
        last[1] += 1
        if last[1] > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
            last[0], last[1] = last[0] + 1, 0
            last[2] = _start(last[0])
    # the sequence (3 hex digits after a 0), then the variant and 62 random bits (16 digits);
    # random is reseeded in a forked child, so processes never share a sequence
    digits = ((last[1] << 64) | _getrandbits(62) | _VARIANT).to_bytes(10, "big").hex()
    return f"{last[2]}{digits[1:4]}-{digits[4:8]}-{digits[8:]}"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def compact_id(text: str) -> str:
    """A short form of an id for storage: a canonical (lower-case) UUID string becomes the 22
    characters of its 16 bytes in URL-safe base64; any other id, ``"="`` and its UTF-8 in
    URL-safe base64. Either way only ``[A-Za-z0-9_=-]``: no escaping, no spaces."""
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        digits = text.replace("-", "")
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raw = b""
        if raw.hex() == digits:
            return binascii.b2a_base64(raw, newline=False)[:22].translate(_URLSAFE).decode()
    return "=" + base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _b64(text: str) -> bytes:
    return base64.b64decode(text, altchars=b"-_", validate=True)


def expand_id(short: str) -> str:
    """The id :func:`compact_id` shortened; ``ValueError`` if ``short`` is no such form."""
    try:
        if short.startswith("="):
            body = short[1:]
            return _b64(body + "=" * (-len(body) % 4)).decode("utf-8", "surrogatepass")
        if len(short) != 22:
            raise ValueError(short)
        h = _b64(short + "==").hex()
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError(f"not a stored id: {short[:40]!r}") from None
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
