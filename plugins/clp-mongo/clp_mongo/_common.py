"""What the adapter and the event store share: URLs, the client (made on first use, or given),
and backend failures reported as :class:`clp_core.errors.StorageError`."""

from __future__ import annotations

import contextlib
import inspect
import urllib.parse
from collections.abc import Iterator
from typing import Any

from bson.errors import BSONError
from pymongo.errors import DuplicateKeyError, PyMongoError

from clp_core.plugin_api import ClpError, ConfigError, StorageError, refuse_writes

DEFAULT_URL = "mongodb://127.0.0.1:27017"
DEFAULT_DATABASE = "clp"
SCHEMES = ("mongodb", "mongodb+srv")
_DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and test output)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def database_from_url(url: str) -> str | None:
    """The database named in the URL's path (``mongodb://host/app`` -> ``"app"``), if any.

    Parsed without the driver, so a ``mongodb+srv://`` URL is not resolved through DNS here.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise StorageError(f"not a MongoDB URL (mongodb:// or mongodb+srv://): {redact(url)!r}", backend="mongodb")
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    return name or None


def take_mode(url: str) -> tuple[str, bool]:
    """``url`` without the option ``mode`` (``mode=ro``: read-only; ``mode=rw``: the default),
    and whether it asked for read-only."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    modes = [v for k, v in query if k == "mode"]
    if any(m not in ("ro", "rw") for m in modes):
        raise ConfigError(f"mode={modes[0]!r} in the URL: use mode=ro (read-only) or mode=rw")
    if not modes:
        return url, False
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "mode"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), "ro" in modes


def is_duplicate_key(exc: BaseException) -> bool:
    """A write refused by a unique index (``_id`` or another)."""
    return isinstance(exc, DuplicateKeyError) or getattr(exc, "code", None) in _DUPLICATE_KEY_CODES


class MongoBase:
    """A collection source: the client given as ``client=`` (never closed by us), or a
    :class:`pymongo.AsyncMongoClient` for ``url`` made on first use and closed by ``close()``."""

    name = "mongodb"

    def __init__(self, url: str, database: str | None, client: Any, client_options: dict[str, Any],
                 read_only: bool = False) -> None:
        url, url_read_only = take_mode(url)
        self.url = url
        self.database = database or database_from_url(url) or DEFAULT_DATABASE
        self._client = client
        self._owns_client = False
        self._client_options = client_options
        self.read_only = read_only or url_read_only
        if self.read_only:  # reads create nothing; writes are refused before sending
            refuse_writes(self, f"{redact(self.url)} ({self.database})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r}, database={self.database!r})"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Driver and BSON failures (and OSError) become StorageError naming this backend."""
        try:
            yield
        except ClpError:
            raise
        except (PyMongoError, BSONError, OSError) as exc:
            raise StorageError(f"{action} in {self.database!r} failed: {type(exc).__name__}: {exc}",
                               backend=self.name) from exc

    @property
    def client(self) -> Any:
        """The client in use; for a URL, a :class:`pymongo.AsyncMongoClient` made now if not yet."""
        if self._client is None:
            from pymongo import AsyncMongoClient

            options = {"appname": "clp-mongo", **self._client_options}
            with self._errors(f"connecting to {redact(self.url)!r}"):
                self._client = AsyncMongoClient(self.url, **options)
            self._owns_client = True
        return self._client

    def _collection(self, name: str) -> Any:
        return self.client[self.database][name]

    async def close(self) -> None:
        """Close the client if this object made it (a client passed as ``client=`` stays
        open: its owner closes it). Safe to call twice; a later call reconnects."""
        client, owned = self._client, self._owns_client
        if not owned or client is None:
            return
        self._client, self._owns_client = None, False
        with self._errors("closing the client"):
            result = client.close()  # a coroutine for AsyncMongoClient, a plain call for Motor
            if inspect.isawaitable(result):
                await result
