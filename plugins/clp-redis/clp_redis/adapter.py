"""``RedisAdapter``: CLP documents in Redis hashes, with compare-and-set saves in one round trip.

Each key is one hash, ``<prefix><key>``, with fields

* ``d``: the base document in clp-core's JSON envelope (``{"format": "clp/1", "data": ...}``);
* ``b``: the base's version;
* ``p:<n>``: the patch (see ``clp_core.storage.patch``) that version ``n`` wrote, for each
  ``n`` from ``b + 1`` to ``v``: a commit appends one field, leaving ``d`` untouched;
* ``v``: the version, an integer that every save increments (1 after the first save);
* ``t``: a random token naming the save that wrote the current version.

A versioned save is one ``EVALSHA`` of :data:`SAVE_VERSIONED`: the script compares ``v`` with
the expected version and only if they match either appends a patch (``HSET`` of ``p:<v+1>``,
``v`` and ``t``) or writes a new base (the hash is replaced by ``d``, ``b``, ``v`` and ``t``,
dropping the patches), so two processes sharing a key never lose an update. The token makes
the save idempotent: when a reply is lost (the connection dropped after Redis wrote) and the
client resends the command, the script recognises its own write and reports success instead
of a conflict, so a commit is never applied twice. A load is one ``HGETALL``: the base and its
patches, read in one step. A hash without ``b`` (written before patches) is a base alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import redis.asyncio as aioredis

from clp_core import codec
from clp_core.plugin_api import (
    ConfigError,
    ConflictError,
    CorruptStateError,
    PatchLog,
    Write,
    patched_document,
    refuse_writes,
)

from ._client import (
    DEFAULT_URL,
    TIMEOUT_OPTIONS,
    LoopGuard,
    Timeouts,
    call,
    close_client,
    decode_key,
    describe,
    direct_scripts,
    encode_key,
    make_client,
    mode_read_only,
    split_url,
)

Document = dict[str, Any]

#: KEYS[1] the hash; ARGV: expected version, text, token, TTL in ms ("" = none), and ``patch``
#: to append the text as the patch of the next version (anything else, or nothing, writes it as
#: the new base, dropping the patches). Returns {1, new version}, {0, current version} (a
#: conflict) or {-1, 0} (a patch for a key that holds no document).
SAVE_VERSIONED = """
local cur = redis.call('HMGET', KEYS[1], 'v', 't', 'b')
local version = 0
if cur[1] then
  version = tonumber(cur[1])
  if not version or version % 1 ~= 0 then return redis.error_reply('CLP_CORRUPT stored version is not a number') end
end
local expected = tonumber(ARGV[1])
if version ~= expected then
  if version == expected + 1 and cur[2] == ARGV[3] then return {1, version} end
  return {0, version}
end
local new = string.format('%d', version + 1)
if ARGV[5] == 'patch' then
  if not cur[1] then return {-1, 0} end
  if cur[3] then
    local base = tonumber(cur[3])
    if not base or base % 1 ~= 0 or base < 0 or base > version then
      return redis.error_reply('CLP_CORRUPT stored base version is not a number from 0 to the version')
    end
    redis.call('HSET', KEYS[1], 'p:' .. new, ARGV[2], 'v', new, 't', ARGV[3])
  else
    redis.call('HSET', KEYS[1], 'p:' .. new, ARGV[2], 'v', new, 't', ARGV[3], 'b', cur[1])
  end
else
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'd', ARGV[2], 'b', new, 'v', new, 't', ARGV[3])
end
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
return {1, version + 1}
"""

#: KEYS[1] the hash; ARGV: envelope, token, TTL in ms ("" = none). Returns the new version.
#: An unreadable version is replaced (a plain save overwrites whatever was there, patches
#: included); a key of another type is left alone (WRONGTYPE): it is not ours to clobber.
SAVE = """
local cur = redis.call('HMGET', KEYS[1], 'v', 't')
if cur[2] == ARGV[2] then return tonumber(cur[1]) end
local version = tonumber(cur[1]) or 0
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version + 1, 'b', version + 1, 'd', ARGV[1], 't', ARGV[2])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
return version + 1
"""


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _ttl_ms(ttl: float | None) -> str:
    if ttl is None:
        return ""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ConfigError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return str(max(1, math.ceil(ttl * 1000)))


class RedisAdapter:
    """CLP storage in Redis (``redis.asyncio``, a connection pool per adapter).

    ``url`` is a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; its query may also
    set ``prefix``, ``ttl``, the time limits ``timeout``, ``connect_timeout``, ``retries`` and
    ``operation_timeout`` (see :class:`clp_redis._client.Timeouts`; the defaults bound one
    failed operation to 5 s), and any redis-py connection option.
    Keys are stored as ``prefix + key``, so any string is a valid key. With ``ttl``
    (seconds) every save (re)sets the key's expiry; without it saved keys never expire.

    Pass ``client`` to share a ``redis.asyncio.Redis`` you own (created with
    ``decode_responses=False``); the adapter then does not close it. Other keyword
    arguments go to ``redis.asyncio.from_url``.
    """

    name = "redis"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str | None = None,
        ttl: float | None = None,
        client: aioredis.Redis | None = None,
        read_only: bool = False,
        **client_options: Any,
    ) -> None:
        url, from_url = split_url(url, ("prefix", "ttl", "mode"))
        timeouts = Timeouts.from_options({**from_url, **{k: client_options.pop(k) for k in TIMEOUT_OPTIONS
                                                          if k in client_options}})
        if prefix is None:
            prefix = from_url.get("prefix", "clp:")
        if ttl is None and from_url.get("ttl"):
            try:
                ttl = float(from_url["ttl"])
            except ValueError:
                raise ConfigError(f"ttl in the Redis URL must be a number of seconds, not {from_url['ttl']!r}")
        if not isinstance(prefix, str):
            raise ConfigError("prefix must be a string")
        self.prefix = prefix
        self.ttl = ttl
        self._ttl_ms = _ttl_ms(ttl)
        self._owns_client = client is None
        if client is None:
            client, timeouts = make_client(url, client_options, timeouts)
        else:
            timeouts = attrs.evolve(timeouts, own_retries=False)
        self.client: aioredis.Redis = client
        self.timeouts = timeouts
        self._where = describe(self.client)
        self._save_versioned = self.client.register_script(SAVE_VERSIONED)
        self._save = self.client.register_script(SAVE)
        self._direct = direct_scripts(self.client, timeouts)
        self._loop_guard = LoopGuard(self.client, self._direct) if self._owns_client else None
        self._closed = False
        self.read_only = read_only or mode_read_only(from_url.get("mode"))
        if self.read_only:  # reads create nothing anyway; writes are refused before sending
            refuse_writes(self, f"{self._where} (prefix {self.prefix!r})")

    def __repr__(self) -> str:
        return f"RedisAdapter({self._where!r}, prefix={self.prefix!r}, ttl={self.ttl!r})"

    def redis_key(self, key: str) -> bytes:
        """The Redis key that holds ``key``'s document."""
        return encode_key(self.prefix + key)

    async def _call(self, factory: Callable[[], Awaitable[Any]], what: str, key: str) -> Any:
        if self._loop_guard is not None:
            self._loop_guard.check()
        return await call(factory, backend=self.name, where=self._where, what=what, key=key, timeouts=self.timeouts)

    # -- StorageAdapter ----------------------------------------------------------------
    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def save(self, key: str, document: Document) -> None:
        encoded = codec.encode(document).encode("utf-8")
        token = os.urandom(16).hex()
        await self._call(lambda: self._save(keys=[self.redis_key(key)], args=[encoded, token, self._ttl_ms]),
                         "save", key)

    async def delete(self, key: str) -> None:
        await self._call(lambda: self.client.delete(self.redis_key(key)), "delete", key)

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys that start with ``prefix``, sorted: ``SCAN`` of this adapter's
        hashes (``TYPE hash``, so an event store sharing the prefix is left out). SCAN walks
        the whole keyspace in pages; it may miss keys written or deleted meanwhile."""
        pattern = _glob_escape(self.prefix + prefix).encode("utf-8", "surrogatepass") + b"*"
        found: set[str] = set()
        cursor: Any = 0
        while True:
            cursor, batch = await self._call(
                lambda at=cursor: self.client.scan(at, match=pattern, count=1000, _type="hash"), "scan", prefix)
            for raw in batch:
                key = decode_key(raw)
                if key.startswith(self.prefix + prefix):
                    found.add(key[len(self.prefix):])
            if int(cursor) == 0:
                return sorted(found)

    async def close(self) -> None:
        """Close the connection pool (unless the client was passed in). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._loop_guard is not None:
            self._loop_guard.check()  # connections of a loop that is gone are forgotten, not closed from here
        if self._direct is not None:
            await self._direct.release()
        if self._owns_client:
            await close_client(self.client)

    # -- VersionedStorage, PatchingStorage -----------------------------------------------
    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        return await self.load_logged(key, PatchLog())

    async def load_logged(self, key: str, log: PatchLog) -> tuple[Document | None, int]:
        fields = await self._call(lambda: self.client.hgetall(self.redis_key(key)), "load", key)
        if not fields:
            log.loaded(0, ())
            return None, 0
        version, data = fields.get(b"v"), fields.get(b"d")
        if version is None or data is None:
            raise CorruptStateError(f"stored value for key {key!r} lacks its {'version' if data else 'data'}",
                                    backend=self.name)
        number = self._number(key, "version", version)
        base = fields.get(b"b")
        base_number = number if base is None else self._number(key, "base version", base)
        if not 0 <= base_number <= number:
            raise CorruptStateError(f"stored base version of key {key!r} ({base_number}) is not between 0 and "
                                    f"its version ({number})", backend=self.name)
        patches: list[str] = []
        for at in range(base_number + 1, number + 1):
            patch = fields.get(b"p:%d" % at)
            if patch is None:
                raise CorruptStateError(f"stored value for key {key!r} lacks the patch of version {at}",
                                        backend=self.name)
            patches.append(self._text(key, patch))
        return patched_document(self._text(key, data), patches, log, key=key, backend=self.name), number

    def _number(self, key: str, what: str, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise CorruptStateError(f"stored {what} of key {key!r} is not a number: {raw[:40]!r}",
                                    backend=self.name) from None

    def _text(self, key: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptStateError(f"stored value for key {key!r} is not UTF-8", backend=self.name) from None

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        return await self.save_logged(key, Write(codec.encode(document), compacts=True), expected_version)

    async def save_logged(self, key: str, write: Write, expected_version: int) -> int:
        # the token: 128 random bits in 32 hex digits (os.urandom: as random as uuid4, cheaper)
        args: list[Any] = [int(expected_version), write.text.encode("utf-8"), os.urandom(16).hex(), self._ttl_ms,
                           "base" if write.compacts else "patch"]
        keys, script = [self.redis_key(key)], self._save_versioned
        if self._direct is not None:
            run = self._direct.run
            ok, version = await self._call(lambda: run(script, keys, args), "versioned save", key)
        else:
            ok, version = await self._call(lambda: script(keys=keys, args=args), "versioned save", key)
        if ok == -1:
            raise ConflictError(f"key {key!r} has no stored document to patch", backend=self.name)
        if not ok:
            raise ConflictError(f"key {key!r} is at version {version}, not {expected_version}", backend=self.name)
        return int(version)
