"""``MongoAdapter``: CLP documents in a MongoDB collection, one document per key."""

from __future__ import annotations

import re
from typing import Any

from clp_core import codec
from clp_core.plugin_api import ConflictError, CorruptStateError, Document

from ._common import DEFAULT_URL, MongoBase, is_duplicate_key


class MongoAdapter(MongoBase):
    """Storage adapter on MongoDB (PyMongo's async API).

    Each key is one document ``{_id: key, version: n, data: "<CLP envelope JSON>"}`` in
    ``database.collection``. ``data`` is the same JSON envelope every CLP adapter stores, kept
    as a string so that dates, integer/float types, key order and keys MongoDB cannot hold as
    field names (``"a.b"``, ``"$x"``, ``"\\x00"``) all survive.

    Versioned saves are one conditional write: ``insert_one`` when the caller read no document
    (version 0; a duplicate ``_id`` means someone else created it first), otherwise
    ``update_one({"_id": key, "version": expected}, {"$set": ..., "$inc": {"version": 1}})``,
    which matches nothing if anyone wrote since the read. Either way the loser gets
    :class:`~clp_core.errors.ConflictError`; no update is lost across processes.

    ``database`` defaults to the URL's database (``mongodb://host/app``), else ``"clp"``.
    ``client`` may be a :class:`pymongo.AsyncMongoClient`, a Motor client, or any client with
    the same async collection API; the adapter then uses it and never closes it. Otherwise a
    client for ``url`` is made on first use (extra keyword arguments go to it, for example
    ``serverSelectionTimeoutMS=5000``) and closed by :meth:`close`.
    """

    name = "mongodb"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        database: str | None = None,
        collection: str = "clp_state",
        *,
        client: Any = None,
        read_only: bool = False,
        **client_options: Any,
    ) -> None:
        super().__init__(url, database, client, client_options, read_only)
        self.collection_name = collection

    def get_collection(self) -> Any:
        """The driver's collection object (made on first use)."""
        return self._collection(self.collection_name)

    # -- reading -------------------------------------------------------------------------
    async def load(self, key: str) -> Document | None:
        return (await self.load_versioned(key))[0]

    async def load_versioned(self, key: str) -> tuple[Document | None, int]:
        with self._errors(f"loading key {key!r}"):
            found = await self.get_collection().find_one({"_id": key})
        if found is None:
            return None, 0
        data = found.get("data")
        if not isinstance(data, str | bytes):  # bytes: a BSON binary someone else wrote
            raise CorruptStateError(
                f"stored value for key {key!r} has no string 'data' field (got {type(data).__name__})",
                backend=self.name)
        document = codec.decode_document(data, backend=self.name, key=key)
        return document, self._version(key, found.get("version"))

    def _version(self, key: str, version: Any) -> int:
        if isinstance(version, float) and version.is_integer():
            version = int(version)  # a document written from the mongo shell, where 1 is a double
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStateError(f"stored value for key {key!r} has a malformed version {version!r}",
                                    backend=self.name)
        return version

    # -- writing -------------------------------------------------------------------------
    async def save(self, key: str, document: Document) -> None:
        encoded = codec.encode(document)
        collection = self.get_collection()
        with self._errors(f"saving key {key!r}"):
            for attempt in range(2):
                try:
                    await collection.update_one(
                        {"_id": key}, {"$set": {"data": encoded}, "$inc": {"version": 1}}, upsert=True)
                    return
                except Exception as exc:
                    # two upserts of a new key raced and the server did not retry: the
                    # document exists now, so a second try updates it
                    if attempt or not is_duplicate_key(exc):
                        raise

    async def save_versioned(self, key: str, document: Document, expected_version: int) -> int:
        encoded = codec.encode(document)
        collection = self.get_collection()
        with self._errors(f"saving key {key!r}"):
            if expected_version == 0:
                try:
                    await collection.insert_one({"_id": key, "version": 1, "data": encoded})
                except Exception as exc:
                    if not is_duplicate_key(exc):
                        raise
                    raise ConflictError(f"key {key!r} was created by another writer", backend=self.name) from None
            else:
                result = await collection.update_one(
                    {"_id": key, "version": expected_version},
                    {"$set": {"data": encoded}, "$inc": {"version": 1}},
                )
                if result.matched_count != 1:
                    raise ConflictError(f"key {key!r} changed since version {expected_version}", backend=self.name)
        return expected_version + 1

    async def delete(self, key: str) -> None:
        with self._errors(f"deleting key {key!r}"):
            await self.get_collection().delete_one({"_id": key})

    async def keys(self, prefix: str = "") -> list[str]:
        """The stored keys (``_id``) that start with ``prefix``, sorted: an anchored, escaped
        ``$regex`` (an index prefix scan on a server)."""
        query = {"_id": {"$regex": "^" + re.escape(prefix)}} if prefix else {}
        with self._errors(f"listing keys under {prefix!r}"):
            found = [d["_id"] async for d in self.get_collection().find(query, projection={"_id": 1})]
        return sorted(k for k in found if isinstance(k, str) and k.startswith(prefix))
