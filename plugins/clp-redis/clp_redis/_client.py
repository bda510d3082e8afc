"""What the adapter and the event store share: the client, URL options, error translation."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from clp_core.errors import ConfigError, CorruptStateError, StorageError

T = TypeVar("T")

DEFAULT_URL = "redis://127.0.0.1:6379/0"

#: Client options used unless the caller (or the URL's query) says otherwise. redis-py's own
#: default retries a dead server ten times with backoff; a commit should fail in well under a
#: second instead. Retrying is safe: every write this package sends is idempotent (see the
#: scripts), so a command resent after a lost reply cannot apply twice.
DEFAULT_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
}


def default_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)


def split_url(url: str, ours: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Take this package's own query parameters (``prefix``, ``ttl``) out of ``url``; the rest
    of the query (``socket_timeout``, ``ssl_cert_reqs``...) is left for redis-py."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a Redis URL (redis://, rediss:// or unix://): {_safe(url)}")
    kept: list[tuple[str, str]] = []
    options: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name in ours:
            options[name] = value
        else:
            kept.append((name, value))
    clean = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return clean, options


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def make_client(url: str, options: dict[str, Any]) -> aioredis.Redis:
    merged = {**DEFAULT_CLIENT_OPTIONS, **options}
    merged.setdefault("retry", default_retry())
    merged["decode_responses"] = False  # values are bytes; this package decodes them
    return aioredis.from_url(url, **merged)


def describe(client: aioredis.Redis) -> str:
    """``host:port/db`` of a client, for error messages (never the password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def encode_key(text: str) -> bytes:
    """A Redis key for ``text``: its UTF-8 bytes, so any string is a distinct key."""
    return text.encode("utf-8", "surrogatepass")


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


async def call(awaitable: Awaitable[T], *, backend: str, where: str, what: str, key: str) -> T:
    """Await a redis-py call; whatever goes wrong comes out as a :class:`StorageError` (or a
    :class:`CorruptStateError` when the stored value is not what this package writes)."""
    try:
        return await awaitable
    except ResponseError as exc:
        text = str(exc)
        if "WRONGTYPE" in text or "CLP_CORRUPT" in text:
            raise CorruptStateError(
                f"stored value for key {key!r} is not a CLP value: {text}", backend=backend) from None
        raise StorageError(f"{what} of {key!r} at {where} failed: {text}", backend=backend) from exc
    except (RedisError, OSError) as exc:
        raise StorageError(
            f"{what} of {key!r} at {where} failed: {type(exc).__name__}: {exc}", backend=backend) from exc


async def close_client(client: aioredis.Redis) -> None:
    aclose = getattr(client, "aclose", None)  # redis-py >= 5.0.1
    if aclose is not None:
        await aclose(close_connection_pool=True)
    else:  # pragma: no cover - redis 5.0.0
        await client.close(close_connection_pool=True)
