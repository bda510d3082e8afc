"""Unique, sortable ids: UUID version 7 (RFC 9562), as strings.

48 bits of Unix milliseconds, then a 12-bit sequence that keeps ids made in the same
millisecond by this process in order, then 62 random bits. The standard library has no
``uuid7`` before Python 3.14, and the core takes no dependency for a dozen lines.
"""

from __future__ import annotations

import random
import time

_last = [0, 0]  # the millisecond and the sequence of the last id


def new_id() -> str:
    """A new UUIDv7 string; later calls in this process sort after earlier ones."""
    ms = time.time_ns() // 1_000_000
    last = _last
    if ms > last[0]:
        last[0], last[1] = ms, random.getrandbits(10)  # a random start, with room to count up
    else:
        last[1] += 1
        if last[1] > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
            last[0], last[1] = last[0] + 1, 0
    # random is reseeded in a forked child, so processes never share a sequence
    h = f"{(last[0] << 80) | (0x7 << 76) | (last[1] << 64) | (0b10 << 62) | random.getrandbits(62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
